"""What ``comclip index build SOURCE...`` indexes: folders (searched recursively), globs,
image files, and text files listing one image path a line (relative paths are read from the
list's own folder; blank lines and lines starting with ``#`` are skipped)."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from comclip.errors import InputError
from comclip.imaging.files import IMAGE_SUFFIXES

#: Files read as lists of image paths, one a line.
LIST_SUFFIXES = (".txt", ".lst", ".list")


def expand_sources(sources: Iterable[str | os.PathLike]) -> list[str]:
    """Every image path the sources name, in their order (a folder's and a glob's files sorted
    by path), each once. A source that names nothing is one line naming it."""
    found: list[str] = []
    for source in sources:
        found += _expand_one(str(source))
    return list(dict.fromkeys(found))


def _expand_one(source: str) -> list[str]:
    path = Path(source)
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
        if not files:
            raise InputError(f"{source}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return files
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        return _listed(path)
    if path.exists():
        return [source]
    if any(ch in source for ch in "*?["):
        files = sorted(p for p in glob.glob(source, recursive=True) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"{source}: the pattern matches no image files")
        return files
    raise InputError(f"{source}: no such file or folder")


def _listed(path: Path) -> list[str]:
    """The image paths a list file names, relative ones read from the list's folder."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the list of images {path}: {exc}") from None
    entries = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not entries:
        raise InputError(f"{path}: the list names no images")
    return [entry if Path(entry).is_absolute() else str(path.parent / entry) for entry in entries]
