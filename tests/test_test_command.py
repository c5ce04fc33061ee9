"""The test command itself: a run cut short by a time limit still says what it counted."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from .conftest import ROOT


def test_a_test_run_stopped_by_sigterm_prints_its_counts(tmp_path):
    """``timeout`` and CI runners stop a run with SIGTERM: it ends as on Ctrl-C, with the
    counts of what ran (this project's conftest, loaded as a plugin, on a run of two tests)."""
    started = tmp_path / "slow-started"
    (tmp_path / "test_two.py").write_text(
        "import pathlib, time\n\ndef test_quick():\n    pass\n\n"
        f"def test_slow():\n    pathlib.Path({str(started)!r}).touch()\n    time.sleep(120)\n"
    )
    args = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-n0",
        "-p",
        "no:benchmark",
        "-p",
        "tests.conftest",
        str(tmp_path / "test_two.py"),
    ]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not started.exists() and time.monotonic() < deadline:  # the quick test has passed, the slow one runs
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert "1 passed" in out and "KeyboardInterrupt" in out, out
