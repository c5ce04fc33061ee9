"""Fault injection through the real command line, as a separate process, as a user would meet
each fault: the exit code, one line naming the input and the problem (never a traceback),
and the user's files byte-identical before and after."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from .conftest import run_cli


def _hash(path: Path) -> str:
    path = Path(path)
    if path.is_dir():
        return hashlib.sha256(b"".join(p.name.encode() + _hash(p).encode() for p in sorted(path.iterdir()))).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if "error:" in line]


def assert_user_error(result: subprocess.CompletedProcess, *words: str, code: int = 2) -> None:
    """Exit ``code``, no traceback, exactly one error line, and it names every word given."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = _error_lines(result)
    assert len(lines) == 1, result.stderr
    for word in words:
        assert str(word) in lines[0], lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
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


def _eval(model, data, out, *extra, cache=None, env=None):
    cache_args = ["--cache", cache] if cache is not None else ["--no-cache"]
    return run_cli(
        ["eval", "jsonl", "--data", data, "--model", model, "--out", out, "--workers", "0", *cache_args, *extra], env=env or {}
    )


# --- the cache never touches what is not its own -------------------------------------------
def test_a_folder_given_as_the_cache_is_never_renamed(tiny_model_dir, data, tmp_path):
    folder = tmp_path / "my-cache"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert run_cli(["cache", "clear", "--cache", folder]).returncode == 0
    assert _eval(tiny_model_dir, data, tmp_path / "out", cache=folder).returncode == 0
    assert folder.is_dir() and (folder / "notes.txt").read_text() == "mine" and (folder / "embeddings.sqlite").is_file()
    assert not list(tmp_path.glob("my-cache.broken-*"))


def test_another_programs_database_is_refused_and_left_byte_identical(tiny_model_dir, data, tmp_path):
    other = tmp_path / "photos.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE photos (id INTEGER, path TEXT)")
    db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    db.execute("INSERT INTO meta VALUES ('format', 'lightroom')")
    db.commit()
    db.close()
    before = _hash(other)
    assert_user_error(run_cli(["cache", "info", "--cache", other]), str(other), "not a comclip embedding cache")
    assert_user_error(_eval(tiny_model_dir, data, tmp_path / "out", cache=other), str(other))
    assert _hash(other) == before and not (tmp_path / "out" / "per_example.jsonl").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "photos.db"]  # no -wal, no -shm, nothing moved


def test_a_read_only_cache_is_used_and_not_written(tiny_model_dir, data, tmp_path):
    cache = tmp_path / "c.sqlite"
    assert _eval(tiny_model_dir, data, tmp_path / "first", "--method", "clip", cache=cache).returncode == 0
    con = sqlite3.connect(cache)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    cache.chmod(0o444)
    before = _hash(cache)
    try:
        result = _eval(tiny_model_dir, data, tmp_path / "second", cache=cache)
        assert result.returncode == 0 and "read-only" in result.stderr and "Traceback" not in result.stderr
        assert _hash(cache) == before
    finally:
        cache.chmod(0o644)


def test_a_busy_cache_is_waited_for_then_skipped_never_moved(tiny_model_dir, data, tmp_path):
    cache = tmp_path / "c.sqlite"
    assert run_cli(["cache", "info", "--cache", cache]).returncode == 0
    holder = sqlite3.connect(cache, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = _eval(tiny_model_dir, data, tmp_path / "out", cache=cache, env={"COMCLIP_CACHE_TIMEOUT": "0.5"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 0 and result.stderr.count("not used for the rest of this run") == 1, result.stderr
    assert cache.exists() and not list(tmp_path.glob("c.sqlite.broken-*"))


def test_an_impossible_cache_path_is_one_line(tiny_model_dir):
    assert_user_error(run_cli(["cache", "info", "--cache", "/proc/nope/c.sqlite"]), "/proc/nope/c.sqlite")


# --- runs are never mixed, examples never dropped ------------------------------------------
def test_resume_with_anything_different_is_refused_listing_it(tiny_model_dir, data, tmp_path):
    out = tmp_path / "run"
    assert _eval(tiny_model_dir, data, out, "--limit", "2").returncode == 0
    before = _hash(out / "per_example.jsonl")
    assert_user_error(
        _eval(tiny_model_dir, data, out, "--limit", "2", "--resume", "--weighting", "softmax"), "cannot resume", "weighting"
    )
    other_model = Path(shutil.copytree(tiny_model_dir, tmp_path / "other-model"))
    from comclip.testing import make_tiny_clip

    make_tiny_clip(other_model, seed=5)  # other weights in a folder of the same kind
    assert_user_error(_eval(other_model, data, out, "--limit", "2", "--resume"), "cannot resume", "model")
    assert _hash(out / "per_example.jsonl") == before


def test_resume_to_a_larger_limit_continues_and_duplicate_ids_are_kept(tiny_model_dir, data, tmp_path):
    out = tmp_path / "run"
    assert _eval(tiny_model_dir, data, out, "--limit", "2").returncode == 0
    result = _eval(tiny_model_dir, data, out, "--resume", "--limit", "4")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    for run in report["runs"]:
        assert run["n_examples"] == 4 and run["n_scored"] == 4  # 4 examples in, 4 scored: the repeated id is kept
    assert report["renamed_ids"] == 1
    ids = {json.loads(line)["id"] for line in (out / "per_example.jsonl").read_text().splitlines()}
    assert ids == {"dup", "dup#2", "c", "d"}
    again = _eval(tiny_model_dir, data, out, "--resume", "--limit", "4")
    assert again.returncode == 0 and "already finished" in again.stderr


@pytest.mark.parametrize(
    "option, value, words",
    [
        ("--limit", "0", ["--limit", "at least 1"]),
        ("--limit", "-1", ["--limit"]),
        ("--bootstrap", "-1", ["--bootstrap"]),
        ("--temperature", "nan", ["--temperature", "finite"]),
        ("--evidence-weight", "nan", ["--evidence-weight"]),
        ("--union-margin", "-0.5", ["union_margin"]),
        ("--precision", "half", ["precision"]),
    ],
)
def test_bad_options_are_one_line_before_any_work(tiny_model_dir, data, tmp_path, option, value, words):
    assert_user_error(_eval(tiny_model_dir, data, tmp_path / "out", option, value), *words)
    assert not (tmp_path / "out" / "per_example.jsonl").exists()


def test_no_bootstrap_means_no_intervals(tiny_model_dir, data, tmp_path):
    assert _eval(tiny_model_dir, data, tmp_path / "out", "--bootstrap", "0").returncode == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert all(m["ci95"] is None for run in report["runs"] for m in run["metrics"].values())


def test_output_paths_are_checked_first(tiny_model_dir, data, rgb_image_path, tmp_path):
    a_file = tmp_path / "results.txt"
    a_file.write_text("mine")
    assert_user_error(_eval(tiny_model_dir, data, a_file), str(a_file), "is a file")
    assert a_file.read_text() == "mine"
    assert_user_error(_eval(tiny_model_dir, data, "/proc/nope/out"), "/proc/nope/out")
    explain = ["explain", rgb_image_path, "a red square", "--model", tiny_model_dir]
    assert_user_error(run_cli([*explain, "--out", tmp_path]), str(tmp_path), "folder")
    assert_user_error(run_cli([*explain, "--out", "/proc/nope/fig.png"]), "/proc/nope")


def test_an_empty_caption_is_found_before_the_model_loads(rgb_image_path, tmp_path):
    result = run_cli(["explain", rgb_image_path, "  ", "--model", tmp_path / "no-such-model", "--json"])
    assert_user_error(result, "caption")


def test_a_malformed_dataset_is_one_line(tiny_model_dir, tmp_path):
    bad = tmp_path / "sc.json"
    bad.write_text('{"x": 5}')
    result = run_cli(["eval", "sugarcrepe", "--data", bad, "--model", tiny_model_dir, "--out", tmp_path / "o"])
    assert_user_error(result, str(bad), "'x'")


# --- broken model folders --------------------------------------------------------------------
def test_a_corrupt_weights_file_is_one_line(tiny_model_dir, rgb_image_path, tmp_path):
    broken = Path(shutil.copytree(tiny_model_dir, tmp_path / "broken"))
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    before = _hash(broken)
    assert_user_error(run_cli(["score", rgb_image_path, "a red square", "--model", broken]), str(broken))
    assert _hash(broken) == before


def test_a_model_without_its_tokenizer_files_is_refused(tiny_model_dir, rgb_image_path, tmp_path):
    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "no-tokenizer"))
    for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    result = run_cli(["score", rgb_image_path, "a red square", "a blue circle", "--model", folder])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(_error_lines(result)) == 1 and str(folder) in _error_lines(result)[0]


# --- a run that scored nothing, and an interrupted one -----------------------------------------
def test_a_method_that_scored_nothing_exits_1_after_writing_its_report(tiny_model_dir, tmp_path):
    out = tmp_path / "given"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "red.png")
    rows = [
        {"image": str(tmp_path / "red.png"), "positive": f"a red square number {n}", "negatives": ["a blue square"]}
        for n in range(3)
    ]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_cli(
        [
            "eval",
            "jsonl",
            "--data",
            tmp_path / "data.jsonl",
            "--parser",
            "given",
            "--model",
            tiny_model_dir,
            "--out",
            out,
            "--no-cache",
            "--workers",
            "0",
        ]
    )
    assert_user_error(result, "method comclip", "scored none", "no given scene graph", code=1)
    report = json.loads((out / "report.json").read_text())
    assert [run["n_scored"] for run in report["runs"]] == [3, 0]


def test_ctrl_c_exits_130_and_says_how_to_resume(tiny_model_dir, tmp_path):
    out = tmp_path / "long"
    args = [
        sys.executable,
        "-m",
        "comclip",
        "eval",
        "sandbox",
        "--n",
        "100",
        "--model",
        tiny_model_dir,
        "--out",
        out,
        "--no-cache",
        "--workers",
        "0",
    ]
    # A foreground process at a terminal: Ctrl-C's default action, even where this test runs
    # in a background job (which starts its children with SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: the run would finish and exit 0).
    process = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    log = out / "per_example.jsonl"
    while time.monotonic() < deadline and not (log.exists() and log.stat().st_size):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr.splitlines()[-1]
    scored = len(log.read_text().splitlines())
    assert 0 < scored < 2 * 400
    resumed = run_cli([*map(str, args[3:]), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert all(run["n_scored"] == 400 for run in json.loads((out / "report.json").read_text())["runs"])
