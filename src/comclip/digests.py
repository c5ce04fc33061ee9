"""Every content hash comclip keys things by, in one place: an image's pixels, a text, a file's
bytes, a folder of weight files, and a JSON-able description (a grounder's or stored result's
configuration). All are BLAKE2b, truncated to the size each key needs; changing one changes
every cache key and index manifest that holds it, so they only change with a format version."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

__all__ = ["description_digest", "file_digest", "files_digest", "hash_file", "image_digest", "text_digest"]


def image_digest(image: Image.Image) -> str:
    """A content hash of an image's pixels, size and mode."""
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    digest.update(f"{image.size}{image.mode}".encode())
    return digest.hexdigest()


def text_digest(text: str) -> str:
    """A hash of a text's UTF-8 bytes."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def hash_file(digest: Any, path: str | Path) -> None:
    """Stream a file's bytes into ``digest``, 4 MiB at a time (weight files are large)."""
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)


def file_digest(path: str | Path, size: int = 16) -> str:
    """A hash of one file's bytes."""
    digest = hashlib.blake2b(digest_size=size)
    hash_file(digest, path)
    return digest.hexdigest()


def files_digest(paths: Iterable[Path], size: int = 12) -> str:
    """A hash of several files' names and bytes, in the order given (a model's weights: SHA-256,
    which CPUs with SHA extensions hash about three times as fast as BLAKE2b, truncated to
    ``size`` bytes)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        hash_file(digest, path)
    return digest.hexdigest()[: 2 * size]


def description_digest(description: dict, size: int) -> str:
    """A short, stable name for a JSON-able description (keys sorted)."""
    return hashlib.blake2b(json.dumps(description, sort_keys=True).encode(), digest_size=size).hexdigest()
