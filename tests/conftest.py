"""Shared fixtures: a tiny real CLIP model on disk, test images, the shared data folder, and
helpers that run the real ``comclip`` command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from comclip.cli import use_process_environment

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# No test may reach for the network: the Hub is unreachable here and in CI.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# As the command line sets them for itself, before torch loads (importing the command line
# does not load it): test workers share two cores, where spinning OpenMP threads burn what
# they wait for.
use_process_environment()
# The persistent embedding cache goes to a fresh folder, never the user's.
os.environ.setdefault("COMCLIP_CACHE", tempfile.mkdtemp(prefix="comclip-test-cache-"))


def pytest_configure(config) -> None:
    """A run cut short by a time limit (SIGTERM, as ``timeout`` and CI runners send) ends as on
    Ctrl-C: pytest stops and still prints its counts. In the controlling process only (the
    workers are stopped by it)."""
    if not hasattr(config, "workerinput"):
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data, skipping the test with a clear reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared evaluation data not found at {path} (expected ../shared/data beside the project)")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny randomly initialised transformers CLIP written by comclip.testing.make_tiny_clip."""
    from comclip.testing import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip"), seed=0)


@pytest.fixture(scope="session")
def tiny_backbone(tiny_model_dir):
    from comclip.backbones import create_backbone

    return create_backbone(str(tiny_model_dir), device="cpu", batch_size=4)


@pytest.fixture(scope="session")
def rgb_image_path(tmp_path_factory) -> Path:
    """A 64x48 image: red left half, blue right half."""
    path = tmp_path_factory.mktemp("img") / "halves.png"
    img = Image.new("RGB", (64, 48), (255, 0, 0))
    img.paste((0, 0, 255), (32, 0, 64, 48))
    img.save(path)
    return path


@pytest.fixture(scope="session")
def four_examples(tmp_path_factory) -> Path:
    """A JSONL dataset of four examples, two of them sharing the id 'dup'."""
    folder = tmp_path_factory.mktemp("faults")
    for n, colour in enumerate([(200, 30, 30), (30, 30, 200), (30, 200, 30)]):
        Image.new("RGB", (48, 40), colour).save(folder / f"{n}.png")
    rows = [
        {"id": "dup", "image": "0.png", "positive": "a red square", "negatives": ["a blue square"]},
        {"id": "dup", "image": "1.png", "positive": "a blue square", "negatives": ["a red square"]},
        {"id": "c", "image": "2.png", "positive": "a green square", "negatives": ["a red circle"]},
        {"id": "d", "image": "0.png", "positive": "a red thing", "negatives": ["a green thing"]},
    ]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "data.jsonl"


@pytest.fixture
def jsonl_data(tmp_path):
    """A JSONL dataset of four examples in two subsets; example c's image is missing."""
    Image.new("RGB", (40, 30), (200, 20, 20)).save(tmp_path / "red.png")
    rows = [
        {"id": "a", "image": "red.png", "positive": "a red square", "negatives": ["a blue square"], "subset": "colour"},
        {"id": "b", "image": "red.png", "positive": "a square", "negatives": ["a circle", "a dog"], "subset": "shape"},
        {"id": "c", "image": "missing.png", "positive": "a square", "negatives": ["a circle"], "subset": "shape"},
        {"id": "d", "image": "red.png", "positive": "a red thing", "negatives": ["a green thing"], "subset": "colour"},
    ]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def run_cli_inprocess(args: list[str], capsys) -> tuple[int, str, str]:
    """Run ``comclip ARGS`` through its real entry point in this process."""
    from comclip.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_cli_here(args: list, env: dict | None = None) -> subprocess.CompletedProcess:
    """``comclip ARGS`` through its real entry point in this process, with ``env`` added to the
    environment for the call, returned as :func:`run_cli` returns a process: for checks of
    validation and errors, where a separate process would only add its start (#34)."""
    import contextlib
    import io

    from comclip.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def run_cli(args: list[str], timeout: int = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python -m comclip ARGS`` as a separate process, as a user would."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "default"}
    env.update(kwargs.pop("env", {}))
    return subprocess.run(
        [sys.executable, "-m", "comclip", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kwargs,
    )


@pytest.fixture
def cli(capsys):
    def call(*args):
        return run_cli_inprocess(list(args), capsys)

    return call


def load_json_lines(text: str) -> list:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_ranked_boxes_inside(ranked, width: int, height: int) -> None:
    """Each query's detections are sorted best first, with one box inside the image."""
    for detections in ranked:
        scores = [d.score for d in detections]
        assert scores == sorted(scores, reverse=True)
        for detection in detections:
            (box,) = detection.boxes
            assert 0 <= box.x1 < box.x2 <= width and 0 <= box.y1 < box.y2 <= height
