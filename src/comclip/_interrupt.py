"""Whether Ctrl-C came while a command ran, even where the KeyboardInterrupt it raised never
reached the command: one met inside an import (numpy's, torch's C code) can be swallowed, or
leave a half-made module whose next use fails with another error (a RecursionError). Either
way it is the user's Ctrl-C, and the promise is one line and exit 130, never exit 0 and never
a traceback (see :func:`comclip.cli.main`). Standard library only, so ``python -m comclip``
watches before it imports anything else."""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
import time
from typing import Any

#: How often a Ctrl-C held back during an import checks whether the import is done.
_IMPORT_POLL_SECONDS = 0.02


class Interrupt:
    """SIGINT's handler while a command runs: it notes the Ctrl-C, then raises as Python's does."""

    def __init__(self, previous: Any = None) -> None:
        self.previous, self.seen = previous, False
        self.waiter: threading.Thread | None = None
        self.previous_unraisable = sys.unraisablehook
        self.previous_excepthook = sys.excepthook

    def handle(self, signum: int, frame: Any) -> None:
        """Raise KeyboardInterrupt, except inside an import: there the handler may be running
        in a Python callback of native code (torch's ``_autograd_init``) that cannot pass an
        exception on, and the process aborts ("terminate called after throwing ...
        pybind11::error_already_set"). Such a Ctrl-C is held until the import is done."""
        self.seen = True
        if _importing(frame):
            self._raise_after_imports()
            return
        raise KeyboardInterrupt

    def _raise_after_imports(self) -> None:
        """Interrupt the main thread again once no import is on its stack (then this handler
        raises); one waiting thread at a time."""
        if self.waiter is not None and self.waiter.is_alive():
            return
        main = threading.main_thread().ident or 0

        def wait() -> None:
            while _importing(sys._current_frames().get(main)):
                time.sleep(_IMPORT_POLL_SECONDS)
            _thread.interrupt_main()

        self.waiter = threading.Thread(target=wait, name="comclip-interrupt", daemon=True)
        self.waiter.start()

    def unraisable(self, unraisable: Any) -> None:
        """``sys.unraisablehook`` while watching: a Ctrl-C that landed where Python can only
        ignore an exception (a weakref callback inside an import's module lock) is not printed
        as a traceback and lost; SIGINT is sent again, to land in the command's own code."""
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and _ACTIVE is self:
            signal.raise_signal(signal.SIGINT)
            return
        self.previous_unraisable(unraisable)

    def uncaught(self, kind: type, value: BaseException, trace: Any) -> None:
        """``sys.excepthook`` while watching: a Ctrl-C that ends the program before the command
        could catch it (while ``python -m comclip`` imports the package) is the promised one
        line and exit 130, not a traceback and death by SIGINT."""
        if issubclass(kind, KeyboardInterrupt) and _ACTIVE is self:
            print("comclip: interrupted", file=sys.stderr, flush=True)
            os._exit(130)
        self.previous_excepthook(kind, value, trace)

    def restore(self) -> None:
        """Give SIGINT back to the handler it had (where this one put itself)."""
        global _ACTIVE
        if self.previous is not None and _ACTIVE is self:
            signal.signal(signal.SIGINT, self.previous)
            sys.unraisablehook = self.previous_unraisable
            sys.excepthook = self.previous_excepthook
            _ACTIVE = None


_ACTIVE: Interrupt | None = None


def _importing(frame: Any) -> bool:
    """Whether an import is running in ``frame`` or any frame that called it."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def watch_interrupts() -> Interrupt:
    """The active watcher, put on SIGINT where Python's own handler is there (the main thread
    of a program that did not set its own: a caller's handler stays); else one that sees nothing."""
    global _ACTIVE
    if _ACTIVE is not None and signal.getsignal(signal.SIGINT) == _ACTIVE.handle:
        return _ACTIVE
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        return Interrupt()
    _ACTIVE = Interrupt(signal.default_int_handler)
    signal.signal(signal.SIGINT, _ACTIVE.handle)
    sys.unraisablehook = _ACTIVE.unraisable
    sys.excepthook = _ACTIVE.uncaught
    return _ACTIVE


def started_as_command() -> bool:
    """Whether this interpreter was started to run comclip's command line (``python -m
    comclip``, or the ``comclip`` script): then the package's own import is already the
    command's, and watched (a library import of comclip changes no handler)."""
    original = getattr(sys, "orig_argv", [])
    as_module = "-m" in original[:-1] and original[original.index("-m") + 1] == "comclip"
    return as_module or os.path.basename(sys.argv[0] if sys.argv else "") == "comclip"
