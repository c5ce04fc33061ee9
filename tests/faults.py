"""Helpers of the fault-injection tests (tests/test_faults_*.py): fault injection through the real command line (its entry point in this process, or a separate
process where a real one is what is tested: Ctrl-C, a FIFO, libtiff writing to fd 2), as a user would meet
each fault: the exit code, one line naming the input and the problem (never a traceback),
and the user's files byte-identical before and after."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .conftest import run_cli_here


def file_hash(path: Path) -> str:
    path = Path(path)
    if path.is_dir():
        return hashlib.sha256(b"".join(p.name.encode() + file_hash(p).encode() for p in sorted(path.iterdir()))).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if "error:" in line]


def assert_user_error(result: subprocess.CompletedProcess, *words: str, code: int = 2) -> None:
    """Exit ``code``, no traceback, exactly one error line, and it names every word given."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    for word in words:
        assert str(word) in lines[0], lines[0]


def assert_inprocess_error(result: tuple[int, str, str], *words: str) -> None:
    """:func:`assert_user_error` for a command run in this process (``cli``)."""
    code, _, err = result
    assert code == 2 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and all(str(word) in lines[0] for word in words), err


def eval_args(model, data, out, *extra, cache=None) -> list:
    cache_args = ["--cache", cache] if cache is not None else ["--no-cache"]
    return ["eval", "jsonl", "--data", data, "--model", model, "--out", out, "--workers", "0", *cache_args, *extra]


def run_eval(model, data, out, *extra, cache=None, env=None):
    return run_cli_here(eval_args(model, data, out, *extra, cache=cache), env=env or {})


def sandbox_eval_process(model, out: Path, n: int) -> subprocess.Popen:
    """``comclip eval sandbox --n N`` as its own process, with Ctrl-C's default action (see
    :func:`long_run_scoring`)."""
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


#: Sandbox items per task of the long run: 4 tasks x 2 methods x LONG_N records. Records are
#: written 64 at a time, and on a fast machine 160 of them (20 a task) were all written within
#: one 0.2 s poll, so a Ctrl-C sent after the first landed after the last (CI on 4225160).
LONG_N = 80


def long_run_scoring(model, out: Path) -> subprocess.Popen:
    """``comclip eval sandbox`` of 8 x LONG_N records into ``out``, as its own process, returned once it
    has written its first record. It starts as a foreground process at a terminal would, with
    Ctrl-C's default action, even where the tests run in a background job (which starts its
    children with SIGINT ignored, and Python then installs no KeyboardInterrupt handler)."""
    process = sandbox_eval_process(model, out, LONG_N)
    deadline = time.monotonic() + 120
    log = out / "per_example.jsonl"
    while time.monotonic() < deadline and not (log.exists() and log.stat().st_size):
        time.sleep(0.02)
    return process
