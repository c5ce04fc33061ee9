"""A newcomer's first minutes (#27): the right model by default, messages that fit the
situation, one warning where there were fifty, and a Python API that fails as loudly as the
command line."""

from __future__ import annotations

import json
import logging

from PIL import Image

from .conftest import run_cli


def test_the_sandbox_is_evaluated_with_the_sandbox_model_when_none_is_named(cli, tmp_path):
    out = tmp_path / "sandbox"
    args = ["eval", "sandbox", "--task", "binding", "--n", "3", "--method", "clip", "--no-cache", "--bootstrap", "0"]
    code, _, err = cli(*args, "--out", out)
    assert code == 0, err
    assert json.loads((out / "report.json").read_text())["model"] == "comclip/sandbox"
    assert f"wrote {out / 'report.md'}" in err  # eval ends by saying where it wrote
    # comclip's lines have a handler of their own: none on the root logger, where a hub client's
    # retry warnings would be printed a second time beside its own handler's copy
    assert not [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]


def test_a_model_that_cannot_load_is_one_fitting_line_and_leaves_no_folder(tmp_path, rgb_image_path):
    """Offline, a hub id not in the cache: the advice is the hub client's real command, it does
    not ask to set what is set, the line is whole, and the output folder made for the run (and
    its new parents) is gone."""
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"id": "a", "image": str(rgb_image_path), "positive": "a dog", "negatives": ["a cat"]}) + "\n")
    out = tmp_path / "new" / "run"
    result = run_cli(["eval", "jsonl", "--data", data, "--model", "openai/clip-vit-base-patch32", "--out", out])
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "hf download openai/clip-vit-base-patch32" in line and "huggingface-cli" not in line
    assert "HF_HUB_OFFLINE=1 forbids" in line and "Set HF_HUB_OFFLINE" not in line
    assert not (tmp_path / "new").exists()


def test_over_long_captions_are_one_warning_per_run_the_same_cold_and_warm(cli, tiny_model_dir, tmp_path):
    """Three examples with captions past the 77-token context: one warning naming how many and
    the first example ids, on a first run and on a repeat that reads every embedding from the
    cache; the report counts them."""
    Image.new("RGB", (40, 30), (200, 20, 20)).save(tmp_path / "red.png")
    long = "a very small red dog sitting next to a big blue square " * 9
    rows = [{"id": f"long{k}", "image": "red.png", "positive": long + str(k), "negatives": ["a blue square"]} for k in range(3)]
    rows.append({"id": "short", "image": "red.png", "positive": "a red square", "negatives": ["a blue square"]})
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cache = tmp_path / "cache.sqlite"
    for run in ("cold", "warm"):
        out = tmp_path / run
        code, _, err = cli("eval", "jsonl", "--data", data, "--model", tiny_model_dir, "--out", out, "--cache", cache,
                           "--method", "clip", "--bootstrap", "0")  # fmt: skip
        assert code == 0, err
        warned = [line for line in err.splitlines() if "truncated" in line]
        assert len(warned) == 1, err
        assert "3 captions in 3 examples (long0, long1, long2)" in warned[0] and "context of 77" in warned[0]
        counted = json.loads((out / "report.json").read_text())["truncated_captions"]
        assert counted["n_captions"] == 3 and counted["examples"] == ["long0", "long1", "long2"]


def test_progress_in_a_log_is_a_line_at_the_start_each_tenth_and_the_end():
    """stderr not a terminal (a batch job's log): plain lines, never a bar's redraws."""
    import io

    from comclip.eval.runs.progress import LogLines, progress

    log = io.StringIO()
    with progress(25, "scoring", "example", file=log) as shown:
        assert isinstance(shown, LogLines)
        for _ in range(25):
            shown.update(1)
    lines = log.getvalue().splitlines()
    assert lines[0] == "scoring: 25 examples to do"
    assert [line.split("(")[1] for line in lines[1:-1]] == [f"{p}%)" for p in (12, 20, 32, 40, 52, 60, 72, 80, 92)]
    assert lines[-1].startswith("scoring: 25/25 examples in ") and lines[-1].endswith("examples/s)")
    silent = io.StringIO()
    with progress(25, "scoring", "example", show=False, file=silent) as shown:
        shown.update(25)
    assert silent.getvalue() == ""  # progress=False: nothing at all


def test_the_end_line_counts_failed_scores_and_gives_no_rate_when_all_failed():
    import io

    from comclip.eval.runs.progress import ScoreCounts, progress

    for statuses, ending in (
        (["ok", "failed", "ok"], "examples/s); 1 of 3 scores failed"),
        (["failed", "failed"], "; every score failed (the report says why)"),
    ):
        log, counts = io.StringIO(), ScoreCounts()
        with progress(len(statuses), "scoring", "example", file=log) as shown:
            for status in statuses:
                counts.add([{"status": status}], shown)
                shown.update(1)
        assert log.getvalue().splitlines()[-1].endswith(ending), log.getvalue()
    assert "examples/s" not in log.getvalue()


def test_eval_in_a_log_says_it_started_how_far_it_is_and_how_fast_it_was(cli, tmp_path):
    code, _, err = cli("eval", "sandbox", "--task", "binding", "--n", "10", "--method", "clip", "--no-cache",
                       "--bootstrap", "0", "--out", tmp_path / "o")  # fmt: skip
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("scoring:")]
    assert lines[0] == "scoring: 10 examples to do" and "examples/s" in lines[-1], err


def test_the_demo_figure_shows_a_pair_clip_gets_wrong_and_comclip_plus_right(tmp_path):
    from types import SimpleNamespace

    from comclip.sandbox.demo import PLUS, contrast_example

    def record(method, example_id, scores):
        return json.dumps({"method": method, "id": example_id, "status": "ok", "scores": scores}) + "\n"

    right, wrong_on_image_1 = [[0.9, 0.1], [0.1, 0.9]], [[0.9, 0.1], [0.8, 0.2]]
    (tmp_path / "per_example.jsonl").write_text(
        record("clip", "a", right) + record(PLUS, "a", right)
        + record("clip", "b", wrong_on_image_1) + record(PLUS, "b", wrong_on_image_1)  # both wrong: not the one
        + record("clip", "c", wrong_on_image_1) + record(PLUS, "c", right)
    )  # fmt: skip
    dataset = SimpleNamespace(examples=[SimpleNamespace(id=i) for i in "abc"])
    example, image = contrast_example(tmp_path, dataset)
    assert (example.id, image) == ("c", 1)
    (tmp_path / "per_example.jsonl").write_text(record("clip", "b", wrong_on_image_1) + record(PLUS, "b", wrong_on_image_1))
    assert [(e.id, i) for e, i in [contrast_example(tmp_path, dataset)]] == [("b", 1)]  # no win to show: CLIP's miss


def test_a_composed_score_is_labelled_with_what_it_adds():
    from comclip.explain import score_label
    from comclip.results import ComCLIPResult

    plain = ComCLIPResult("i", "t", clip=0.7, score=0.65, parts=[], graph=None, composed=0.65)  # type: ignore[arg-type]
    evidence = ComCLIPResult("i", "t", clip=0.7, score=1.29, parts=[], graph=None, composed=0.66)  # type: ignore[arg-type]
    assert score_label(plain, "comclip") == "comclip score 0.650 (composed cosine)"
    assert score_label(evidence, "comclip-plus") == "comclip-plus score 1.290 = composed cosine 0.660 + evidence 0.630"
    from comclip.config import PipelineConfig

    checked = ComCLIPResult(
        "i", "t", clip=0.7, score=1.39, parts=[], graph=None, composed=0.66,  # type: ignore[arg-type]
        config=PipelineConfig(relation_check="geometry", relation_weight=1.0), spatial=((0, "left of", 1, 0.6, "boxes"),),
    )  # fmt: skip
    label = score_label(checked, "comclip-plus")  # the relation check's term is its own, not folded into evidence
    assert label == "comclip-plus score 1.390 = composed cosine 0.660 + evidence 0.630 + relations (boxes) 0.100", label


def test_a_figure_prints_numbers_that_differ_apart():
    from comclip.explain import telling_digits

    assert telling_digits([0.74496, 0.74457]) == 4 and telling_digits([0.7, 0.2]) == 3 and telling_digits([0.5, 0.5]) == 3


def test_an_unreachable_hub_is_one_line_in_seconds(monkeypatch):
    """No network and no HF_HUB_OFFLINE: the Hub's client is not left to retry for half a
    minute; the model is looked for in the cache alone and the line says why it is missing."""
    import time

    import pytest
    from huggingface_hub import constants

    from comclip.backbones import create_backbone, hf
    from comclip.errors import ModelNotFoundError

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf, "hub_reachable", lambda: False)
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError, match="cannot be reached from this machine") as caught:
        create_backbone("openai/clip-vit-base-patch32", device="cpu")
    assert time.monotonic() - start < 10 and "\n" not in str(caught.value)
    assert constants.HF_HUB_OFFLINE is False  # put back as it was


def test_a_broken_optional_package_breaks_nothing(tmp_path, rgb_image_path):
    """A torchvision that is installed but cannot load (built for another torch) is hidden:
    the shipped models score, `comclip models` says open_clip is not usable, and asking for an
    open_clip model is one line. A real process: the import system is what is tested."""
    stand_in = tmp_path / "site"
    (stand_in / "torchvision").mkdir(parents=True)
    (stand_in / "torchvision" / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    (stand_in / "torchvision-0.28.0.dist-info").mkdir()
    (stand_in / "torchvision-0.28.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: torchvision\nVersion: 0.28.0\n"
    )
    env = {"PYTHONPATH": str(stand_in)}
    scored = run_cli(["score", rgb_image_path, "a red square", "--model", "comclip/sandbox", "--method", "comclip"], env=env)
    assert scored.returncode == 0 and "Traceback" not in scored.stderr and "comclip" in scored.stdout, scored.stderr
    models = run_cli(["models"], env=env)
    assert models.returncode == 0 and "(installed)" not in next(
        line for line in models.stdout.splitlines() if "open_clip:" in line
    )
    refused = run_cli(["score", rgb_image_path, "a red square", "--model", "open_clip:ViT-B-32/openai"], env=env)
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr  # as a missing extra
    assert "constraints" in refused.stderr and "Traceback" not in refused.stderr


def test_an_over_long_caption_gets_comclips_warning_alone(rgb_image_path):
    """transformers' "will result in indexing errors" (counting tokens is not running them)
    no longer precedes comclip's own line saying the caption was cut."""
    caption = "a red circle and " * 20 + "a dog"
    result = run_cli(["score", rgb_image_path, caption, "--model", "comclip/sandbox"])
    assert result.returncode == 0 and "truncated" in result.stderr and "indexing errors" not in result.stderr, result.stderr


def test_help_and_version_load_no_model_library():
    """``comclip --help`` and ``--version`` declare only the command named (none): torch,
    transformers and spaCy stay unloaded, so they answer at once."""
    import subprocess
    import sys

    probe = (
        "import sys, contextlib, io\n"
        "from comclip.cli import main\n"
        "for argv in (['--help'], ['--version']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main(argv)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'spacy', 'scipy') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr
