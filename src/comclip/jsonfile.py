"""Reading user-supplied JSON files with errors that name the file and what it should hold."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import InputError


def read_json(path: str | Path, what: str):
    """The JSON value in ``path``; ``what`` names the file's role in the error message."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {what} {path}: {exc}") from None


def read_json_object(path: str | Path, what: str, expected: str) -> dict:
    """The JSON object in ``path``; ``what`` names the file's role, ``expected`` its content."""
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise InputError(f"{what} {path} must hold a JSON object of {expected}")
    return data


def read_json_lines(path: str | Path, what: str) -> list[tuple[int, object]]:
    """``(line number, value)`` for each non-blank line of a JSON-lines file; an unreadable file
    or a line that is not JSON is an error naming the file, the line and the problem."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
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
    return rows
