"""Python's cycle collector paused around work that makes many short-lived objects.

Scoring a batch makes tens of thousands of small objects (detections, parts, results), each
freed by its reference count. Their allocations set off the cycle collector again and again,
and each pass walks every live object of the process (a model's modules, a parser's
vocabulary, an index's records): on a warm run, which only reads, that was half its time. The
collector is off for the block and runs as usual after it; a block inside another leaves it
to the outer one.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cycle collector off inside the block (also a decorator), on again after it if it was on."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
