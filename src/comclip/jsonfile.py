"""Reading user-supplied JSON and TOML files with errors that name the file and what it should hold
(a UTF-8 byte-order mark is read as nothing), and writing files whole or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from comclip.errors import ComclipError, InputError

#: What a JSON value nested deeper than Python's recursion limit is called in an error.
TOO_DEEP = "JSON nested too deeply to read"


def write_whole(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (see :func:`written_whole`)."""
    with written_whole(path) as out:
        out.write(text.encode("utf-8"))


@contextlib.contextmanager
def written_whole(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file whose bytes become ``path`` whole or not at all, for every file comclip
    writes (reports, records, manifests, figures: ``savefig`` to it). The bytes go to a
    temporary file beside ``path``, flushed to disk (fsync), given the mode any new file gets
    under the process's umask (a temporary file is private), and renamed over ``path``. A
    failure (a full disk) leaves the old file, or none, never a truncated one, and is one line
    naming the file."""
    path = Path(path)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as exc:
        raise ComclipError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(handle, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, new_file_mode())
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise ComclipError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def check_writable_folder(folder: Path, what: str, hint: str = "") -> None:
    """That a new file can be made in ``folder``, as every write here makes one (a temporary
    file beside its target), found by trying before any work: ``access()`` says yes to root
    on a read-only mount or in ``/proc``. One :class:`InputError` naming ``what``."""
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise InputError(f"cannot write in {what}: {exc.strerror or exc}{hint}") from None


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file under the process's umask (``0o644`` under ``022``)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


#: The largest input file read whole (a JSON, JSON-lines, CSV or TOML file): past it, a path
#: is more likely a mistake (a disk image, ``/dev/zero`` through a link) than a dataset.
MAX_INPUT_BYTES = 8 * 2**30


def checked_input(path: str | Path, what: str) -> Path:
    """``path`` if it is a regular file of at most :data:`MAX_INPUT_BYTES`; else one
    :class:`InputError` naming it, before anything reads it: a FIFO would block for ever and a
    device such as ``/dev/zero`` would be read until memory ran out."""
    path = Path(path)
    try:
        status = path.stat()
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(status.st_mode):
        kind = "a folder" if stat.S_ISDIR(status.st_mode) else "not a regular file (a pipe, socket or device)"
        raise InputError(f"cannot read {what} {path}: it is {kind}")
    if status.st_size > MAX_INPUT_BYTES:
        raise InputError(f"cannot read {what} {path}: {status.st_size:,} bytes, more than the {MAX_INPUT_BYTES:,} read whole")
    return path


def read_json(path: str | Path, what: str):
    """The JSON value in ``path``; ``what`` names the file's role in the error message."""
    path = checked_input(path, what)
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {what} {path}: {exc}") from None
    except RecursionError:
        raise InputError(f"cannot read {what} {path}: {TOO_DEEP}") from None


def read_json_object(path: str | Path, what: str, expected: str) -> dict:
    """The JSON object in ``path``; ``what`` names the file's role, ``expected`` its content."""
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise InputError(f"{what} {path} must hold a JSON object of {expected}")
    return data


def read_json_lines(path: str | Path, what: str) -> list[tuple[int, object]]:
    """``(line number, value)`` for each non-blank line of a JSON-lines file; an unreadable file
    or a line that is not JSON is an error naming the file, the line and the problem."""
    path = checked_input(path, what)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} {path}: {exc}") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} line {number}: not valid JSON ({exc})") from None
        except RecursionError:
            raise InputError(f"{path} line {number}: {TOO_DEEP}") from None
    return rows


def read_toml(path: Path) -> dict:
    """A user's TOML file (a suite, an ablation grid) as a dict; a file that cannot be read or
    is not TOML is one :class:`InputError` naming it."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover (Python 3.10)
        import tomli as tomllib
    path = checked_input(path, "file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
