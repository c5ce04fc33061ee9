"""Runs are never mixed and examples never dropped (comclip.eval.runs): resume identity, interruptions, files written whole, one run per folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from .conftest import run_cli_here
from .faults import (
    LONG_N,
    assert_inprocess_error,
    assert_user_error,
    eval_args,
    file_hash,
    long_run_scoring,
    run_eval,
    sandbox_eval_process,
)


def test_resume_with_anything_different_is_refused_listing_it(cli, tiny_model_dir, four_examples, tmp_path):
    out = tmp_path / "run"
    assert cli(*eval_args(tiny_model_dir, four_examples, out, "--limit", "2"))[0] == 0
    before = file_hash(out / "per_example.jsonl")
    changed = cli(*eval_args(tiny_model_dir, four_examples, out, "--limit", "2", "--resume", "--weighting", "softmax"))
    assert_inprocess_error(changed, "cannot resume", "weighting")
    other_model = Path(shutil.copytree(tiny_model_dir, tmp_path / "other-model"))
    from comclip.testing import make_tiny_clip

    make_tiny_clip(other_model, seed=5)  # other weights in a folder of the same kind
    assert_inprocess_error(cli(*eval_args(other_model, four_examples, out, "--limit", "2", "--resume")), "cannot resume", "model")
    assert file_hash(out / "per_example.jsonl") == before


def test_resume_to_a_larger_limit_continues_and_duplicate_ids_are_kept(cli, tiny_model_dir, four_examples, tmp_path):
    out = tmp_path / "run"
    assert cli(*eval_args(tiny_model_dir, four_examples, out, "--limit", "2"))[0] == 0
    code, _, err = cli(*eval_args(tiny_model_dir, four_examples, out, "--resume", "--limit", "4"))
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    for run in report["runs"]:
        assert run["n_examples"] == 4 and run["n_scored"] == 4  # 4 examples in, 4 scored: the repeated id is kept
    assert report["renamed_ids"] == 1
    ids = {json.loads(line)["id"] for line in (out / "per_example.jsonl").read_text().splitlines()}
    assert ids == {"dup", "dup#2", "c", "d"}
    code, _, err = cli(*eval_args(tiny_model_dir, four_examples, out, "--resume", "--limit", "4"))
    assert code == 0 and "already finished" in err


def test_no_bootstrap_means_no_intervals(tiny_model_dir, four_examples, tmp_path):
    assert run_eval(tiny_model_dir, four_examples, tmp_path / "out", "--bootstrap", "0").returncode == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert all(m["ci95"] is None for run in report["runs"] for m in run["metrics"].values())


def test_a_method_that_scored_nothing_exits_1_after_writing_its_report(tiny_model_dir, tmp_path):
    out = tmp_path / "given"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "red.png")
    rows = [
        {"image": str(tmp_path / "red.png"), "positive": f"a red square number {n}", "negatives": ["a blue square"]}
        for n in range(3)
    ]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_eval(tiny_model_dir, tmp_path / "data.jsonl", out, "--parser", "given")
    assert_user_error(result, "method comclip", "scored none", "no given scene graph", code=1)
    report = json.loads((out / "report.json").read_text())
    assert [run["n_scored"] for run in report["runs"]] == [3, 0]


def test_ctrl_c_exits_130_and_says_how_to_resume(tiny_model_dir, tmp_path):
    out = tmp_path / "long"
    log = out / "per_example.jsonl"
    process = long_run_scoring(tiny_model_dir, out)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr.splitlines()[-1]
    scored = len(log.read_text().splitlines())
    assert 0 < scored < 8 * LONG_N
    resumed = run_cli_here([*map(str, process.args[3:]), "--resume"])  # the same command, resumed
    assert resumed.returncode == 0, resumed.stderr
    assert all(run["n_scored"] == 4 * LONG_N for run in json.loads((out / "report.json").read_text())["runs"])


def test_a_full_disk_at_the_report_leaves_no_half_file_and_resume_rebuilds_it(
    cli, tiny_model_dir, four_examples, tmp_path, monkeypatch
):
    """ENOSPC at the report's write (simulated at the rename): one line, exit 1, no report.json
    and no partial file; ``--resume`` then writes the report; a report cut short or a missing
    report.md is rebuilt by ``--resume``, never taken for a finished run."""
    import errno

    out = tmp_path / "run"
    args = ["eval", "jsonl", "--data", four_examples, "--model", tiny_model_dir, "--out", out, "--workers", "0", "--no-cache"]
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


def test_a_folder_holding_a_report_without_records_is_not_overwritten(cli, tiny_model_dir, four_examples, tmp_path):
    out = tmp_path / "run"
    args = ["eval", "jsonl", "--data", four_examples, "--model", tiny_model_dir, "--out", out, "--workers", "0", "--no-cache"]
    assert cli(*args)[0] == 0
    (out / "per_example.jsonl").unlink()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = cli(*args)
    assert code == 2 and "already holds results" in err and "--resume" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_two_runs_on_one_folder_the_second_is_refused_naming_the_holder(tiny_model_dir, tmp_path):
    """One run per output folder: while a run holds it, a second (the same command with
    --resume, or another configuration) is one line naming the folder and the holder's process
    id, before its model loads; the first finishes with its records alone."""
    out = tmp_path / "long"
    first = long_run_scoring(tiny_model_dir, out)
    same = [*map(str, first.args[3:]), "--resume"]
    second, other = run_cli_here(same), run_cli_here([*same, "--weighting", "softmax"])
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    for result in (second, other):
        assert_user_error(result, str(out), "in use by another comclip run", f"process {first.pid}")
    records = [json.loads(line) for line in (out / "per_example.jsonl").read_text().splitlines()]
    assert len(records) == len({(r["method"], r["id"]) for r in records}) == 8 * LONG_N


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
    result = run_eval(tiny_model_dir, tmp_path / "data.jsonl", out)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    report = json.loads((out / "report.json").read_text())
    runs = {run["method"]: run for run in report["runs"]}
    assert runs["clip"]["n_scored"] == 2
    assert runs["comclip"]["n_scored"] == 1 and "too long to parse" in runs["comclip"]["failures"][0]["error"]


def test_resume_force_on_a_folder_that_cannot_be_written_is_one_line_before_the_model_loads(
    cli, four_examples, tmp_path, monkeypatch
):
    """A finished run's folder made read-only (simulated where the tests run as root, whom
    permissions do not stop), then ``--resume --force``: one line naming the folder, exit 2,
    before the model loads (the model named does not exist), the folder byte-identical."""
    import filelock

    out = tmp_path / "done"
    out.mkdir()
    (out / "report.json").write_text("{}")
    before = file_hash(out)
    real_acquire = filelock.FileLock.acquire

    def read_only(lock, *args, **kwargs):  # the lock file cannot be created in a read-only folder
        if Path(lock.lock_file).parent == out:
            raise PermissionError(13, "Permission denied")
        return real_acquire(lock, *args, **kwargs)

    monkeypatch.setattr(filelock.FileLock, "acquire", read_only)
    code, _, err = cli(
        *["eval", "jsonl", "--data", four_examples, "--model", tmp_path / "no-such-model", "--out", out], "--resume", "--force"
    )
    assert code == 2 and "cannot write in the output folder" in err and str(out) in err and "Permission denied" in err, err
    assert len(err.strip().splitlines()) == 1 and file_hash(out) == before


def test_a_record_line_that_is_not_a_record_is_one_line_on_resume(cli, tiny_model_dir, four_examples, tmp_path):
    """A log line without ``method`` and ``id`` was not written by comclip: nothing proves the
    folder is one run, so ``--resume`` refuses naming the file and line, and changes nothing."""
    out = tmp_path / "run"
    assert cli(*eval_args(tiny_model_dir, four_examples, out, "--limit", "1"))[0] == 0
    log = out / "per_example.jsonl"
    log.write_text(log.read_text() + '{"status": "ok"}\n')
    before = file_hash(out)
    assert_inprocess_error(cli(*eval_args(tiny_model_dir, four_examples, out, "--resume")), str(log), "line 3", "not a record")
    assert file_hash(out) == before


def python_with_ctrl_c(code: str, *args: str) -> subprocess.CompletedProcess:
    """``python -c code args...`` with Ctrl-C's default action, as from a terminal (a test
    worker may ignore it)."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.parametrize("after", [0.4, 1.5, 3.0])
def test_ctrl_c_in_the_first_seconds_exits_130_in_one_line(after, tiny_model_dir, tmp_path):
    """Ctrl-C while torch imports, the parser builds or the model loads: exit 130, one line,
    never a traceback and never exit 0."""
    process = sandbox_eval_process(tiny_model_dir, tmp_path / "o", 50)
    time.sleep(after)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1].startswith("comclip: interrupted"), stderr


def test_a_ctrl_c_while_the_package_imports_is_one_line_and_130():
    """Started as the command, comclip watches Ctrl-C from its package's first line: one that
    ends the program before the command runs (here raised right after the import, as one
    landing inside it would be) is still one line and exit 130. Imported as a library, it
    changes no handler."""

    process = python_with_ctrl_c("import sys; sys.argv[0] = 'comclip'; import comclip; raise KeyboardInterrupt")
    assert (process.returncode, process.stderr) == (130, "comclip: interrupted\n")
    library = "import signal, sys; before = signal.getsignal(signal.SIGINT), sys.excepthook; import comclip; "
    library += "assert (signal.getsignal(signal.SIGINT), sys.excepthook) == before"
    assert python_with_ctrl_c(library).returncode == 0


def test_a_ctrl_c_inside_an_import_is_held_until_the_import_is_done(tmp_path):
    """Ctrl-C raised inside torch's import, in a callback of its native code, aborted the
    process (pybind11's "terminate called"). The watcher holds a Ctrl-C that lands inside an
    import: the import finishes, then KeyboardInterrupt arrives in the code that asked for it."""
    (tmp_path / "slow_module.py").write_text(
        "import signal, time\nsignal.raise_signal(signal.SIGINT)\ntime.sleep(0.2)\nfinished = True\n"
    )
    code = (
        "import sys; sys.argv[0] = 'comclip'; import comclip; sys.path.insert(0, sys.argv[1])\n"
        "try:\n    import slow_module\n    import time; time.sleep(10); print('never interrupted')\n"
        "except KeyboardInterrupt:\n    print('finished' if sys.modules['slow_module'].finished else 'cut')\n"
    )
    process = python_with_ctrl_c(code, str(tmp_path))
    assert (process.returncode, process.stdout.strip()) == (0, "finished"), process.stderr


def test_a_ctrl_c_python_could_only_ignore_is_sent_again(monkeypatch):
    """Ctrl-C that lands in a weakref callback of an import's module lock is an exception
    Python can only ignore: it printed "Exception ignored ... Traceback" and the run went on
    to the end (seen once in CI). The watcher's unraisable hook sends SIGINT again instead,
    so it lands in the command's own code; other unraisable exceptions are reported as before."""
    import signal
    import types

    from comclip import _interrupt

    watcher = _interrupt.Interrupt(signal.default_int_handler)
    sent, reported = [], []
    monkeypatch.setattr(_interrupt, "_ACTIVE", watcher)
    monkeypatch.setattr(signal, "raise_signal", sent.append)
    monkeypatch.setattr(watcher, "previous_unraisable", reported.append)
    watcher.unraisable(types.SimpleNamespace(exc_value=KeyboardInterrupt()))
    other = types.SimpleNamespace(exc_value=ValueError("a finaliser's own error"))
    watcher.unraisable(other)
    assert sent == [signal.SIGINT] and reported == [other]


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


def test_a_folder_in_use_or_holding_results_is_refused_before_the_model_loads(cli, four_examples, tmp_path):
    """Both refusals come before any model loads: the model named here does not exist, and
    the folder's error is the one given."""
    from comclip.eval.runs.store import folder_lock

    held, used = tmp_path / "held", tmp_path / "used"
    used.mkdir()
    (used / "run.json").write_text("{}")
    missing_model = tmp_path / "no-such-model"
    code, _, err = cli(*eval_args(missing_model, four_examples, used))
    assert code == 2 and "already holds results" in err and "no-such-model" not in err, err
    with folder_lock(held):
        code, _, err = cli(*eval_args(missing_model, four_examples, held, "--resume"))
    assert code == 2 and "in use by another comclip run" in err and f"process {os.getpid()}" in err, err


def test_resume_scores_again_an_example_whose_image_file_was_replaced(cli, tiny_model_dir, four_examples, tmp_path):
    """Images are known by their files' size and modification time: one replaced after a run
    finished makes --resume score its examples again (said in one line), not keep their old
    scores as 'already finished'; the others are read back."""
    data = tmp_path / "data"
    shutil.copytree(four_examples.parent, data)
    out = tmp_path / "run"
    assert cli(*eval_args(tiny_model_dir, data / "data.jsonl", out))[0] == 0
    before = {(r["method"], r["id"]): r for r in map(json.loads, (out / "per_example.jsonl").read_text().splitlines())}
    Image.effect_noise((48, 40), 90).convert("RGB").save(data / "2.png")  # example c's image, replaced
    code, _, err = cli(*eval_args(tiny_model_dir, data / "data.jsonl", out, "--resume"))
    assert code == 0 and "image files of 1 examples changed" in err and "already finished" not in err
    lines = [json.loads(line) for line in (out / "per_example.jsonl").read_text().splitlines()]
    again = lines[len(before) :]
    assert {r["id"] for r in again} == {"c"} and all(r["scores"] != before[r["method"], "c"]["scores"] for r in again)
    code, _, err = cli(*eval_args(tiny_model_dir, data / "data.jsonl", out, "--resume"))
    assert code == 0 and "already finished" in err
