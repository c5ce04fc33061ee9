"""Fault injection through the real command line (its entry point in this process, or a separate
process where a real one is what is tested: Ctrl-C, a FIFO, libtiff writing to fd 2), as a user would meet
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

from .conftest import run_cli, run_cli_here


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


def assert_inprocess_error(result: tuple[int, str, str], *words: str) -> None:
    """:func:`assert_user_error` for a command run in this process (``cli``)."""
    code, _, err = result
    assert code == 2 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and all(str(word) in lines[0] for word in words), err


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


def _eval_args(model, data, out, *extra, cache=None) -> list:
    cache_args = ["--cache", cache] if cache is not None else ["--no-cache"]
    return ["eval", "jsonl", "--data", data, "--model", model, "--out", out, "--workers", "0", *cache_args, *extra]


def _eval(model, data, out, *extra, cache=None, env=None):
    return run_cli_here(_eval_args(model, data, out, *extra, cache=cache), env=env or {})


# --- the cache never touches what is not its own -------------------------------------------
def test_a_folder_given_as_the_cache_is_never_renamed(tiny_model_dir, data, tmp_path):
    folder = tmp_path / "my-cache"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert run_cli_here(["cache", "clear", "--cache", folder]).returncode == 0
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
    assert_user_error(run_cli_here(["cache", "info", "--cache", other]), str(other), "not a comclip embedding cache")
    assert_user_error(_eval(tiny_model_dir, data, tmp_path / "out", cache=other), str(other))
    assert _hash(other) == before and not (tmp_path / "out" / "per_example.jsonl").exists()
    # no -wal, no -shm, nothing moved; the output folder made for the run is gone with it (#27)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos.db"]


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
    assert run_cli_here(["cache", "info", "--cache", cache]).returncode == 0
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
    assert_user_error(run_cli_here(["cache", "info", "--cache", "/proc/nope/c.sqlite"]), "/proc/nope/c.sqlite")


# --- runs are never mixed, examples never dropped ------------------------------------------
def test_resume_with_anything_different_is_refused_listing_it(cli, tiny_model_dir, data, tmp_path):
    out = tmp_path / "run"
    assert cli(*_eval_args(tiny_model_dir, data, out, "--limit", "2"))[0] == 0
    before = _hash(out / "per_example.jsonl")
    changed = cli(*_eval_args(tiny_model_dir, data, out, "--limit", "2", "--resume", "--weighting", "softmax"))
    assert_inprocess_error(changed, "cannot resume", "weighting")
    other_model = Path(shutil.copytree(tiny_model_dir, tmp_path / "other-model"))
    from comclip.testing import make_tiny_clip

    make_tiny_clip(other_model, seed=5)  # other weights in a folder of the same kind
    assert_inprocess_error(cli(*_eval_args(other_model, data, out, "--limit", "2", "--resume")), "cannot resume", "model")
    assert _hash(out / "per_example.jsonl") == before


def test_resume_to_a_larger_limit_continues_and_duplicate_ids_are_kept(cli, tiny_model_dir, data, tmp_path):
    out = tmp_path / "run"
    assert cli(*_eval_args(tiny_model_dir, data, out, "--limit", "2"))[0] == 0
    code, _, err = cli(*_eval_args(tiny_model_dir, data, out, "--resume", "--limit", "4"))
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    for run in report["runs"]:
        assert run["n_examples"] == 4 and run["n_scored"] == 4  # 4 examples in, 4 scored: the repeated id is kept
    assert report["renamed_ids"] == 1
    ids = {json.loads(line)["id"] for line in (out / "per_example.jsonl").read_text().splitlines()}
    assert ids == {"dup", "dup#2", "c", "d"}
    code, _, err = cli(*_eval_args(tiny_model_dir, data, out, "--resume", "--limit", "4"))
    assert code == 0 and "already finished" in err


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
    assert_user_error(run_cli_here([*explain, "--out", tmp_path]), str(tmp_path), "folder")
    assert_user_error(run_cli_here([*explain, "--out", "/proc/nope/fig.png"]), "/proc/nope")


def test_an_empty_caption_is_found_before_the_model_loads(rgb_image_path, tmp_path):
    result = run_cli_here(["explain", rgb_image_path, "  ", "--model", tmp_path / "no-such-model", "--json"])
    assert_user_error(result, "caption")


def test_a_malformed_dataset_is_one_line(tiny_model_dir, tmp_path):
    bad = tmp_path / "sc.json"
    bad.write_text('{"x": 5}')
    result = run_cli_here(["eval", "sugarcrepe", "--data", bad, "--model", tiny_model_dir, "--out", tmp_path / "o"])
    assert_user_error(result, str(bad), "'x'")


# --- broken model folders --------------------------------------------------------------------
def test_a_corrupt_weights_file_is_one_line(tiny_model_dir, rgb_image_path, tmp_path):
    broken = Path(shutil.copytree(tiny_model_dir, tmp_path / "broken"))
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    before = _hash(broken)
    assert_user_error(run_cli_here(["score", rgb_image_path, "a red square", "--model", broken]), str(broken))
    assert _hash(broken) == before


def test_a_model_without_its_tokenizer_files_is_refused(tiny_model_dir, rgb_image_path, tmp_path):
    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "no-tokenizer"))
    for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    result = run_cli_here(["score", rgb_image_path, "a red square", "a blue circle", "--model", folder])
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
    result = run_cli_here(
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


def _sandbox_eval_process(model, out: Path, n: int) -> subprocess.Popen:
    """``comclip eval sandbox --n N`` as its own process, with Ctrl-C's default action (see
    :func:`_long_run_scoring`)."""
    args = [sys.executable, "-m", "comclip", "eval", "sandbox", "--n", str(n), "--model", model, "--out", out,
            "--no-cache", "--workers", "0"]  # fmt: skip
    return subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


#: Sandbox items per task of the long run: 4 tasks x 2 methods x LONG_N records.
LONG_N = 40


def _long_run_scoring(model, out: Path) -> subprocess.Popen:
    """``comclip eval sandbox`` of 8 x LONG_N records into ``out``, as its own process, returned once it
    has written its first record. It starts as a foreground process at a terminal would, with
    Ctrl-C's default action, even where the tests run in a background job (which starts its
    children with SIGINT ignored, and Python then installs no KeyboardInterrupt handler)."""
    process = _sandbox_eval_process(model, out, LONG_N)
    deadline = time.monotonic() + 120
    log = out / "per_example.jsonl"
    while time.monotonic() < deadline and not (log.exists() and log.stat().st_size):
        time.sleep(0.2)
    return process


def test_ctrl_c_exits_130_and_says_how_to_resume(tiny_model_dir, tmp_path):
    out = tmp_path / "long"
    log = out / "per_example.jsonl"
    process = _long_run_scoring(tiny_model_dir, out)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr.splitlines()[-1]
    scored = len(log.read_text().splitlines())
    assert 0 < scored < 8 * LONG_N
    resumed = run_cli_here([*map(str, process.args[3:]), "--resume"])  # the same command, resumed
    assert resumed.returncode == 0, resumed.stderr
    assert all(run["n_scored"] == 4 * LONG_N for run in json.loads((out / "report.json").read_text())["runs"])


# --- files written whole, runs finished only when their report is whole (#26) ---------------
def test_a_full_disk_at_the_report_leaves_no_half_file_and_resume_rebuilds_it(cli, tiny_model_dir, data, tmp_path, monkeypatch):
    """ENOSPC at the report's write (simulated at the rename): one line, exit 1, no report.json
    and no partial file; ``--resume`` then writes the report; a report cut short or a missing
    report.md is rebuilt by ``--resume``, never taken for a finished run."""
    import errno

    out = tmp_path / "run"
    args = ["eval", "jsonl", "--data", data, "--model", tiny_model_dir, "--out", out, "--workers", "0", "--no-cache"]
    rename = os.replace

    def disk_full(source, target):
        if str(target).endswith("report.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return rename(source, target)

    monkeypatch.setattr(os, "replace", disk_full)
    code, _, err = cli(*args)
    assert code == 1 and "cannot write" in err and "report.json: No space left on device" in err, err
    assert not (out / "report.json").exists() and not list(out.glob(".*.partial"))
    monkeypatch.setattr(os, "replace", rename)
    code, _, err = cli(*args, "--resume")
    assert code == 0, err
    whole = json.loads((out / "report.json").read_text())
    (out / "report.json").write_text((out / "report.json").read_text()[:100])  # a report cut short
    code, _, err = cli(*args, "--resume")
    assert code == 0 and "already finished" not in err and json.loads((out / "report.json").read_text()) == whole
    (out / "report.md").unlink()
    code, _, err = cli(*args, "--resume")
    assert code == 0 and (out / "report.md").exists()
    code, _, err = cli(*args, "--resume")
    assert code == 0 and "already finished" in err


def test_a_folder_holding_a_report_without_records_is_not_overwritten(cli, tiny_model_dir, data, tmp_path):
    out = tmp_path / "run"
    args = ["eval", "jsonl", "--data", data, "--model", tiny_model_dir, "--out", out, "--workers", "0", "--no-cache"]
    assert cli(*args)[0] == 0
    (out / "per_example.jsonl").unlink()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = cli(*args)
    assert code == 2 and "already holds results" in err and "--resume" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_files_with_a_utf8_byte_order_mark_load(tmp_path, data):
    """JSON, JSONL and CSV written by tools that add a BOM read as without one."""
    from comclip.eval.benchmarks.datasets import load_dataset

    rows = data.read_text()
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + rows.encode())
    for n in range(3):
        shutil.copy(data.parent / f"{n}.png", tmp_path / f"{n}.png")
    assert len(load_dataset("jsonl", bom).examples) == 4
    csv = tmp_path / "pairs.csv"
    csv.write_bytes(b"\xef\xbb\xbfimage_0,image_1,caption_0,caption_1\n0.png,1.png,a red square,a blue square\n")
    assert load_dataset("minimal_pairs", csv).examples[0].texts == ["a red square", "a blue square"]
    captions = tmp_path / "captions.json"
    captions.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"image": "0.png", "captions": ["a red square"]}]).encode())
    assert load_dataset("retrieval", captions).captions == ["a red square"]


def test_every_transformers_load_refuses_a_model_folders_own_code(cli, tiny_model_dir, rgb_image_path, monkeypatch):
    """A model folder never runs its Python: every load passes ``trust_remote_code=False``, so
    transformers' remote-code prompt cannot be answered "y" on a terminal."""
    import transformers

    seen: list[tuple[str, object]] = []

    def recording(owner, name):
        original = owner.from_pretrained.__func__

        def load(cls, *args, **kwargs):
            seen.append((name, kwargs.get("trust_remote_code", "not passed")))
            return original(cls, *args, **kwargs)

        monkeypatch.setattr(owner, "from_pretrained", classmethod(load))

    for name in ("AutoConfig", "AutoProcessor", "AutoModel", "CLIPModel"):
        recording(getattr(transformers, name), name)
    code, _, err = cli("score", rgb_image_path, "a red square", "--model", tiny_model_dir)
    assert code == 0, err
    assert seen and all(value is False for _, value in seen), seen


def test_a_model_folder_cannot_switch_on_the_llm_parser(tiny_model_dir, rgb_image_path, tmp_path):
    """A comclip.json with {"parser": "llm"} would send the captions, with the user's key, to
    their endpoint: refused in one line before any caption is parsed (the endpoint here is a
    port nothing listens on; a request would fail differently)."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "comclip.json").write_text(json.dumps({"parser": "llm"}))
    env = {"COMCLIP_LLM_BASE_URL": "http://127.0.0.1:9/v1", "COMCLIP_LLM_API_KEY": "secret", "COMCLIP_LLM_MODEL": "m"}
    result = run_cli_here(["score", rgb_image_path, "a red square", "--model", folder], env=env)
    assert_user_error(result, "parser", "cannot be set by a model folder")
    result = run_cli_here(["score", rgb_image_path, "a red square", "--model", tiny_model_dir], env=env)
    assert result.returncode == 0, result.stderr  # the same model without the file scores, parsing locally


@pytest.mark.parametrize(
    "name, content",
    [("sugarcrepe", "{}"), ("jsonl", ""), ("minimal_pairs", "image_0,image_1,caption_0,caption_1\n"), ("valse", "{}")],
)
def test_an_empty_dataset_is_one_line_before_the_model_loads(name, content, tmp_path):
    """No examples is the user's file's problem, found before any model loads (the model named
    here does not exist: a later check would name it instead)."""
    data = tmp_path / ("data.csv" if name == "minimal_pairs" else "data.jsonl" if name == "jsonl" else "data.json")
    data.write_text(content)
    result = run_cli_here(["eval", name, "--data", data, "--model", tmp_path / "no-such-model", "--out", tmp_path / "out"])
    assert_user_error(result, str(data), "no examples")
    assert not (tmp_path / "out" / "run.json").exists()


def test_a_reports_dataset_name_never_writes_outside_the_output_folder(tmp_path):
    """``comclip report`` names each chart after the report's dataset field: made safe first."""
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    metric = {"value": 50.0, "ci95": [40.0, 60.0], "n": 10}
    report = {
        "dataset": "../../../escaped",
        "split": "test",
        "model": "m",
        "seed": 0,
        "runs": [{"method": "clip", "n_scored": 10, "n_failed": 0, "metrics": {"accuracy": metric}, "subsets": {}}],
    }
    (run / "report.json").write_text(json.dumps(report))
    out = tmp_path / "deep" / "er" / "charts"
    result = run_cli_here(["report", run, "--out", out])
    assert result.returncode == 0, result.stderr
    assert (out / "escaped.png").exists()
    assert not list(tmp_path.rglob("escaped.png"))[1:] and not (tmp_path / "escaped.png").exists()


@pytest.mark.parametrize(
    "box, problem",
    [
        ("[0, 0, NaN, 10]", "not a finite number"),
        ("[0, 0, Infinity, 10]", "not a finite number"),
        ("[-Infinity, 0, 5, 10]", "not a finite number"),
        ("[5000, 5000, 6000, 6000]", "zero area inside"),
    ],
)
def test_a_regions_file_with_a_non_finite_or_outside_box_is_one_line_naming_it(
    box, problem, cli, tiny_model_dir, rgb_image_path, tmp_path
):
    """JSON allows NaN and Infinity; a box holding one is refused naming the file, never used
    (NaN read as 0, infinity as the whole image); so is a box outside the image, found later."""
    regions = tmp_path / "regions.json"
    regions.write_text('{"square": [' + box + "]}")
    result = cli(
        *[
            "score",
            rgb_image_path,
            "a red square",
            "--model",
            tiny_model_dir,
            "--grounder",
            "regions",
            "--regions-file",
            regions,
            "--method",
            "comclip",
        ]
    )
    assert_inprocess_error(result, str(regions), problem)


def test_two_runs_on_one_folder_the_second_is_refused_naming_the_holder(tiny_model_dir, tmp_path):
    """One run per output folder: while a run holds it, a second (the same command with
    --resume, or another configuration) is one line naming the folder and the holder's process
    id, before its model loads; the first finishes with its records alone."""
    out = tmp_path / "long"
    first = _long_run_scoring(tiny_model_dir, out)
    same = [*map(str, first.args[3:]), "--resume"]
    second, other = run_cli_here(same), run_cli_here([*same, "--weighting", "softmax"])
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    for result in (second, other):
        assert_user_error(result, str(out), "in use by another comclip run", f"process {first.pid}")
    records = [json.loads(line) for line in (out / "per_example.jsonl").read_text().splitlines()]
    assert len(records) == len({(r["method"], r["id"]) for r in records}) == 8 * LONG_N


def test_explain_never_overwrites_and_writes_only_png(cli, tiny_model_dir, rgb_image_path, tmp_path):
    """``explain --out`` refuses an existing file (the input photo here) without --force, a
    path that is not .png, and a path ending in a separator; nothing is written."""
    photo = tmp_path / "photo.png"
    shutil.copy(rgb_image_path, photo)
    before = _hash(photo)
    explain = ["explain", photo, "a red square", "--model", tiny_model_dir]
    assert_inprocess_error(cli(*explain, "--out", photo), str(photo), "exists", "--force")
    assert_inprocess_error(cli(*explain, "--out", tmp_path / "fig.jpg"), "fig.jpg", ".png")
    assert_inprocess_error(cli(*explain, "--out", f"{tmp_path / 'newdir'}/"), "newdir", "folder")
    assert _hash(photo) == before and not (tmp_path / "newdir").exists() and not (tmp_path / "fig.jpg").exists()
    figure = tmp_path / "fig.png"
    assert cli(*explain, "--out", figure)[0] == 0
    assert cli(*explain, "--out", figure)[0] == 2
    assert cli(*explain, "--out", figure, "--force")[0] == 0


def test_a_fifo_given_as_an_image_is_one_line_not_a_hang(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    result = run_cli(["explain", fifo, "a red square", "--model", tmp_path / "no-such-model", "--json"], timeout=60)
    assert_user_error(result, str(fifo), "not a regular file")


def test_a_newline_in_a_path_stays_on_the_error_line(tmp_path):
    odd = tmp_path / "two\nlines.png"
    result = run_cli_here(["explain", odd, "a red square", "--model", tmp_path / "no-such-model", "--json"])
    assert_user_error(result, "two\\nlines.png", "image not found")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_caption_too_long_to_parse_fails_its_example_only(tiny_model_dir, tmp_path):
    """1,000 x "a red dog and" once ran spaCy out of recursion and ended the run: now that
    example fails for the composed method, with the reason, and CLIP scores it; the others are
    scored by both."""
    Image.new("RGB", (40, 40), (200, 30, 30)).save(tmp_path / "red.png")
    rows = [
        {"id": "long", "image": "red.png", "positive": "a red dog and " * 1000 + "a cat", "negatives": ["a cat"]},
        {"id": "ok", "image": "red.png", "positive": "a red square", "negatives": ["a blue circle"]},
    ]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    result = run_cli_here(
        [
            "eval",
            "jsonl",
            "--data",
            tmp_path / "data.jsonl",
            "--model",
            tiny_model_dir,
            "--out",
            out,
            "--no-cache",
            "--workers",
            "0",
        ]
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    report = json.loads((out / "report.json").read_text())
    runs = {run["method"]: run for run in report["runs"]}
    assert runs["clip"]["n_scored"] == 2
    assert runs["comclip"]["n_scored"] == 1 and "too long to parse" in runs["comclip"]["failures"][0]["error"]


def test_a_model_is_all_of_its_files(cli, tiny_model_dir, data, rgb_image_path, tmp_path, monkeypatch):
    """Editing a model folder's processor (its normalisation) in place makes another model: the
    cache does not return the old embeddings, and ``--resume`` refuses to add its records to
    the old run's, naming the fingerprint."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    cache = tmp_path / "cache"
    score = ["score", rgb_image_path, "a red square", "--model", model, "--json"]
    out = tmp_path / "run"
    assert cli(*_eval_args(model, data, out, cache=cache))[0] == 0

    def clip_cosine(folder):
        monkeypatch.setenv("COMCLIP_CACHE", str(folder))
        code, stdout, err = cli(*score)
        assert code == 0, err
        return json.loads(stdout)["results"][0]["clip"]

    before = clip_cosine(cache)
    config = json.loads((model / "processor_config.json").read_text())
    config["image_processor"]["image_mean"] = [0.1, 0.2, 0.3]
    (model / "processor_config.json").write_text(json.dumps(config))
    after, fresh = clip_cosine(cache), clip_cosine(tmp_path / "fresh")
    assert after == fresh != before
    assert_inprocess_error(cli(*_eval_args(model, data, out, "--resume", cache=cache)), str(out), "another run", "fingerprint")


@pytest.mark.parametrize("caption", [5, None, ["a dog"]])
def test_a_caption_of_the_wrong_type_is_one_line_before_the_model_loads(caption, tmp_path):
    """A Winoground row whose caption is a number, null or a list: one line naming the file and
    the example, before any model loads (the model named here does not exist)."""
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    row = {"id": 7, "caption_0": caption, "caption_1": "a cat", "image_0": "a", "image_1": "a"}
    (tmp_path / "rows.jsonl").write_text(json.dumps(row) + "\n")
    result = run_cli_here(
        [
            "eval",
            "winoground",
            "--data",
            tmp_path / "rows.jsonl",
            "--image-dir",
            tmp_path,
            "--model",
            tmp_path / "no-such-model",
            "--out",
            tmp_path / "out",
        ]
    )
    assert_user_error(result, "rows.jsonl", "example '7'", "not text")


# --- odd inputs are one line (#26, item 9) ---------------------------------------------------
def test_json_nested_too_deeply_is_one_line(tmp_path):
    """Python's JSON reader runs out of recursion on ``[[[[...]]]]``: one line naming the file."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    result = run_cli_here(["eval", "sugarcrepe", "--data", deep, "--model", tmp_path / "no-such-model", "--out", tmp_path / "o"])
    assert_user_error(result, str(deep), "nested too deeply")


def test_a_device_that_cannot_run_a_model_is_one_line(cli, tiny_model_dir, data, tmp_path):
    for device, words in [("meta", ["'meta'", "cannot run a model"]), ("mps", ["'mps'", "not available"])]:
        assert_inprocess_error(cli(*_eval_args(tiny_model_dir, data, tmp_path / device, "--device", device)), *words)


def test_resume_force_on_a_folder_that_cannot_be_written_is_one_line_before_the_model_loads(cli, data, tmp_path, monkeypatch):
    """A finished run's folder made read-only (simulated where the tests run as root, whom
    permissions do not stop), then ``--resume --force``: one line naming the folder, exit 2,
    before the model loads (the model named does not exist), the folder byte-identical."""
    import filelock

    out = tmp_path / "done"
    out.mkdir()
    (out / "report.json").write_text("{}")
    before = _hash(out)
    real_acquire = filelock.FileLock.acquire

    def read_only(lock, *args, **kwargs):  # the lock file cannot be created in a read-only folder
        if Path(lock.lock_file).parent == out:
            raise PermissionError(13, "Permission denied")
        return real_acquire(lock, *args, **kwargs)

    monkeypatch.setattr(filelock.FileLock, "acquire", read_only)
    code, _, err = cli(
        *["eval", "jsonl", "--data", data, "--model", tmp_path / "no-such-model", "--out", out], "--resume", "--force"
    )
    assert code == 2 and "cannot write in the output folder" in err and str(out) in err and "Permission denied" in err, err
    assert len(err.strip().splitlines()) == 1 and _hash(out) == before


def test_a_record_line_that_is_not_a_record_is_one_line_on_resume(cli, tiny_model_dir, data, tmp_path):
    """A log line without ``method`` and ``id`` was not written by comclip: nothing proves the
    folder is one run, so ``--resume`` refuses naming the file and line, and changes nothing."""
    out = tmp_path / "run"
    assert cli(*_eval_args(tiny_model_dir, data, out, "--limit", "1"))[0] == 0
    log = out / "per_example.jsonl"
    log.write_text(log.read_text() + '{"status": "ok"}\n')
    before = _hash(out)
    assert_inprocess_error(cli(*_eval_args(tiny_model_dir, data, out, "--resume")), str(log), "line 3", "not a record")
    assert _hash(out) == before


_METRIC = {"value": 50.0, "ci95": [40.0, 60.0]}
_RUN = {"method": "clip", "n_scored": 10, "n_failed": 0, "metrics": {"accuracy": _METRIC}, "subsets": {}}
_REPORT = {"dataset": "d", "split": "test", "model": "m", "runs": [_RUN]}


@pytest.mark.parametrize(
    "content, words",
    [
        ("", ["Expecting value"]),
        ("\x00\xff binary", ["cannot read"]),
        ("[1, 2]", ["no JSON object"]),
        ("[" * 50_000 + "]" * 50_000, ["nested too deeply"]),
        (json.dumps({**_REPORT, "runs": None}), ["'runs' is not a list"]),
        (json.dumps({**_REPORT, "dataset": 7}), ["'dataset' is not text"]),
        (json.dumps({**_REPORT, "runs": ["clip"]}), ["run 1", "not an object"]),
        (json.dumps({**_REPORT, "runs": [{**_RUN, "n_scored": "ten"}]}), ["run 1", "'n_scored'"]),
        (json.dumps({**_REPORT, "runs": [{**_RUN, "metrics": []}]}), ["metrics", "not an object of metrics"]),
        (json.dumps({**_REPORT, "runs": [{**_RUN, "metrics": {"accuracy": {"value": "high"}}}]}), ["'accuracy'", "numeric"]),
        (json.dumps({**_REPORT, "runs": [{**_RUN, "metrics": {"accuracy": {"value": 1, "ci95": [1]}}}]}), ["'ci95'"]),
        (json.dumps({**_REPORT, "runs": [{**_RUN, "subsets": {"a": {"accuracy": None}}}]}), ["subset 'a'"]),
    ],
)
def test_a_malformed_report_given_to_comclip_report_is_one_line(content, words, cli, tmp_path):
    """``comclip report`` reads files anyone may have edited: each way a report can be wrong
    is one line naming the file and the field, exit 2, and nothing is written."""
    path = tmp_path / "report.json"
    path.write_bytes(content.encode("latin-1") if "\x00" in content else content.encode())
    code, out, err = cli("report", tmp_path, "--out", tmp_path / "charts")
    assert code == 2 and str(path) in err and len(err.strip().splitlines()) == 1, err
    assert all(word in err for word in words), err
    assert out == "" and not (tmp_path / "charts").exists()


@pytest.mark.parametrize("after", [0.4, 1.5, 3.0])
def test_ctrl_c_in_the_first_seconds_exits_130_in_one_line(after, tiny_model_dir, tmp_path):
    """Ctrl-C while torch imports, the parser builds or the model loads: exit 130, one line,
    never a traceback and never exit 0."""
    process = _sandbox_eval_process(tiny_model_dir, tmp_path / "o", 50)
    time.sleep(after)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1].startswith("comclip: interrupted"), stderr


def test_a_20000_pixel_png_is_scored_at_reduced_scale_and_a_larger_header_refused(cli, tiny_model_dir, tmp_path):
    """The README says very large images are decoded at reduced scale: a real 20000 x 20000
    PNG (past PIL's bomb limit) is scored; a PNG whose header claims 30000 x 30000 (past
    comclip's ceiling) is one line naming it, before anything is decoded."""
    import struct
    import zlib

    from PIL import Image as PILImage

    huge = tmp_path / "scan.png"
    picture = PILImage.new("RGB", (20000, 20000), (10, 120, 200))
    picture.paste((250, 0, 0), (1000, 1000, 9000, 9000))
    picture.save(huge, compress_level=1)
    del picture
    code, out, err = cli("score", "--model", tiny_model_dir, "--json", huge, "a red square")
    assert code == 0 and "scan.png" in out, err

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    claimed = tmp_path / "claims.png"
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    claimed.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    code, _, err = cli("score", "--model", tiny_model_dir, "--json", claimed, "a red square")
    assert code == 2 and str(claimed) in err and "too large" in err and "30000x30000" in err, err


def test_libtiffs_own_messages_stay_inside_the_one_error_line(tmp_path):
    """A damaged compressed TIFF makes libtiff print to the process's stderr itself, and PIL
    warn about its EXIF: stderr holds one line, comclip's, with libtiff's words in it."""
    from PIL import Image as PILImage

    whole = tmp_path / "whole.tif"
    PILImage.new("RGB", (300, 200), (200, 10, 10)).save(whole, compression="tiff_deflate")
    data = bytearray(whole.read_bytes())
    for i in range(8, 60):
        data[i] ^= 0x5A
    mangled, cut = tmp_path / "mangled.tif", tmp_path / "cut.tif"
    mangled.write_bytes(bytes(data))
    cut.write_bytes(whole.read_bytes()[: len(data) // 2])
    for path, words in [(mangled, ["corrupt", "ZIPDecode"]), (cut, ["not an image file"])]:
        result = run_cli(["explain", path, "a red square", "--model", tmp_path / "no-such-model", "--json"])
        assert_user_error(result, str(path), *words)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_sandbox_of_ten_million_items_under_limit_2_makes_only_what_it_reads(cli, tmp_path, monkeypatch):
    """``eval sandbox --n 10000000 --limit 2`` once generated every item before scoring two:
    now the items scored and the few of each task the run's content hash covers are made, no
    more; ``--resume`` with a larger limit continues the same run."""
    from comclip.sandbox import dataset as sandbox

    made = []

    def counted(task, seed, index):
        made.append((task, index))
        return make(task, seed, index)

    make = sandbox.make_pair
    monkeypatch.setattr(sandbox, "make_pair", counted)
    args = ["eval", "sandbox", "--n", "10000000", "--limit", "2", "--model", "comclip/sandbox", "--out", tmp_path / "o",
            "--no-cache", "--bootstrap", "0", "--method", "clip,comclip", "--workers", "0"]  # fmt: skip
    code, _, err = cli(*args)
    assert code == 0, err
    assert len(made) <= 2 + 4 * sandbox.PROBES, len(made)
    code, _, err = cli(*args[:5], "3", *args[6:], "--resume")
    assert code == 0 and "clip: 3 scored" in err, err


def test_a_folder_in_use_or_holding_results_is_refused_before_the_model_loads(cli, data, tmp_path):
    """Both refusals come before any model loads: the model named here does not exist, and
    the folder's error is the one given."""
    from comclip.eval.runs.store import folder_lock

    held, used = tmp_path / "held", tmp_path / "used"
    used.mkdir()
    (used / "run.json").write_text("{}")
    missing_model = tmp_path / "no-such-model"
    code, _, err = cli(*_eval_args(missing_model, data, used))
    assert code == 2 and "already holds results" in err and "no-such-model" not in err, err
    with folder_lock(held):
        code, _, err = cli(*_eval_args(missing_model, data, held, "--resume"))
    assert code == 2 and "in use by another comclip run" in err and f"process {os.getpid()}" in err, err
