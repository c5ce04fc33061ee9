"""Progress of long work: a tqdm bar on a terminal, plain lines in a log.

A batch job's log (stderr not a terminal) gets no bar, whose redraws make noise there, and
used to get nothing at all until the end; it now gets a line at the start, one at about every
tenth of the work, and one at the end with the rate, so a stalled job can be told from a
slow one.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

from tqdm import tqdm


class LogLines:
    """tqdm's ``update``/``close`` as log lines: ``desc: done/total unit`` at the start, at
    each tenth, and at the end with ``unit``s per second."""

    def __init__(self, total: int, desc: str, unit: str, file: TextIO):
        self.total, self.desc, self.unit, self.file = total, desc, unit, file
        self.done, self.tenths, self.start = 0, 0, time.monotonic()
        self.counts: ScoreCounts | None = None  # the scores written, where the caller counts them
        self._line(f"{desc}: {total} {unit}s to do")

    def update(self, n: int = 1) -> None:
        self.done += n
        tenths = min(10, self.done * 10 // max(1, self.total))
        if tenths > self.tenths and self.done < self.total:
            self.tenths = tenths
            self._line(f"{self.desc}: {self.done}/{self.total} {self.unit}s ({100 * self.done // max(1, self.total)}%)")

    def close(self) -> None:
        elapsed = time.monotonic() - self.start
        line = f"{self.desc}: {self.done}/{self.total} {self.unit}s in {elapsed:.1f} s"
        counts = self.counts or ScoreCounts()
        if counts.scores and counts.failed == counts.scores:  # a rate would claim work that was not done
            self._line(f"{line}; every score failed (the report says why)")
            return
        rate = self.done / elapsed if elapsed > 0 else float("inf")
        failed = f"; {counts.failed} of {counts.scores} scores failed" if counts.failed else ""
        self._line(f"{line} ({rate:.1f} {self.unit}s/s){failed}")

    def __enter__(self) -> LogLines:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()

    def _line(self, text: str) -> None:
        print(text, file=self.file, flush=True)


@dataclass
class ScoreCounts:
    """Records written and how many failed, shown with the progress: a log's end line says how
    many failed and gives no rate when all did (a rate would claim work that was not done); a
    bar shows them as its postfix."""

    scores: int = 0
    failed: int = 0

    def add(self, records: list[dict], shown: tqdm | LogLines) -> None:
        failed = sum(r.get("status") == "failed" for r in records)
        self.scores, self.failed = self.scores + len(records), self.failed + failed
        if isinstance(shown, LogLines):
            shown.counts = self
        elif self.failed:
            shown.set_postfix_str(f"{self.failed} of {self.scores} scores failed", refresh=False)


def progress(total: int, desc: str, unit: str, show: bool | None = None, file: TextIO | None = None) -> tqdm | LogLines:
    """What shows ``total`` units of work: ``show`` None chooses by ``file`` (stderr): a bar on a
    terminal, lines in a log; True a bar, False nothing (a disabled bar: ``progress=False``,
    or a process other than the main one)."""
    file = file or sys.stderr
    if show is not None or file.isatty():
        return tqdm(total=total, desc=desc, unit=unit, file=file, disable=show is False)
    return LogLines(total, desc, unit, file)
