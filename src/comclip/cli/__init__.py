"""The ``comclip`` command line: one program, one module per command.

Each command module turns its arguments into library calls and prints; options shared by
several commands live in :mod:`comclip.cli.options`. Errors meant for users
(:class:`~comclip.errors.ComclipError`) print one line and exit 2 for bad input, 1
otherwise; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from comclip._interrupt import watch_interrupts
from comclip.cli import (
    ablate,
    app,
    cache,
    demo,
    eval,
    explain,
    index,
    methods,
    models,
    parse,
    report,
    sandbox,
    score,
    search,
    suite,
)
from comclip.errors import ComclipError, InputError

PROG = "comclip"
#: What a command sets in its own environment where the user has not, before torch loads:
#: - ``GOMP_SPINCOUNT=1000``: torch's OpenMP threads (libgomp) spin about a microsecond
#:   waiting for work, then sleep, instead of libgomp's default 300,000 spins. On a machine
#:   shared with another CPU-bound job, spinning threads burn the cores they wait for: the
#:   demo took 56 s of CPU beside one such job and 35 s alone with the default, and 29-30 s
#:   both ways with this (``benchmarks/demo_time.py --beside 1``; ``OMP_WAIT_POLICY=PASSIVE``
#:   was as flat but 10% slower alone). Worker processes inherit it.
#: - ``TOKENIZERS_PARALLELISM=false``: the Hub tokenizers' threads, which warn and deadlock
#:   after a fork, are left off.
#: The library sets neither: these are a program's choices, and a user's values win.
PROCESS_ENVIRONMENT = {"GOMP_SPINCOUNT": "1000", "TOKENIZERS_PARALLELISM": "false"}


def use_process_environment() -> None:
    """Set :data:`PROCESS_ENVIRONMENT` where the user has not (a benchmark or a test run that
    works as a command does calls it before torch loads)."""
    for key, value in PROCESS_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


class UsageError(InputError):
    """A command line argparse refuses; raised instead of argparse printing its usage and exiting."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line naming the option and the problem."""

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


#: In the order ``comclip --help`` lists them.
COMMANDS = (models, methods, score, parse, explain, cache, report, eval, suite, ablate, sandbox, demo, app, index, search)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line's parser. Only the command ``argv`` names gets its options (declaring
    them reads the registries, which load torch); the others are listed by name and help, so
    ``comclip --help`` and ``--version`` answer at once. Without ``argv``, every command's."""
    from comclip import __version__

    parser = _Parser(prog=PROG, description="Training-free compositional image-text matching (ComCLIP).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    named = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    for command in COMMANDS:
        if named is None or named == command.NAME:
            command.register(sub)
        else:
            sub.add_parser(command.NAME, help=command.HELP)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def one_line(message: str) -> str:
    """``message`` on one line: control characters (a newline in a file name) escaped."""
    return "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode() for ch in message)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``comclip`` console script. Ctrl-C at any moment (torch's first
    import happens in here) is one line and exit 130."""
    use_process_environment()
    args = argparse.Namespace()
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    interrupt = watch_interrupts()
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        args = build_parser(argv).parse_args(argv)
        code = int(args.func(args) or 0)
        return _interrupted(args) if interrupt.seen else code  # a Ctrl-C a library swallowed is still one
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except InputError as exc:
        print(f"{PROG}: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except ComclipError as exc:
        print(f"{PROG}: error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `comclip score ... | head`
        return 0
    except KeyboardInterrupt:
        return _interrupted(args)
    except Exception:
        if interrupt.seen:  # Ctrl-C cut a library's import short, and it failed otherwise after
            return _interrupted(args)
        raise
    finally:
        warnings.showwarning = previous
        interrupt.restore()


def _interrupted(args: argparse.Namespace) -> int:
    hint = getattr(args, "interrupted_hint", None)
    print(f"{PROG}: interrupted" + (f"; {hint}" if hint else ""), file=sys.stderr)
    return 130


def module_main() -> None:
    """``python -m comclip``: :func:`main`, then exit with its code. A KeyboardInterrupt met
    inside ``exec`` of a string (dataclasses do it while torch imports) makes ``python -m``
    end by SIGINT whatever the code (CPython's ``Py_RunMain``); 130 is what was promised."""
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)
