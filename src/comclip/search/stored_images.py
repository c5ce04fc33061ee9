"""Indexed images at query time: their size and digest without their pixels, and an
embedding cache that answers from the index.

The pipeline scores an :class:`IndexedImage` as it scores any loaded image. Where the index
holds what it reads (the global embedding, a candidate's or a pair's sub-image) no pixel is
touched; where it does not (a pair past the union cap), the :class:`DeferredImage` decodes its
file, checks that the pixels are the ones indexed, and the sub-image is encoded, kept in the
cache given and counted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from comclip.cache.embeddings import MemoryCache
from comclip.digests import image_digest
from comclip.errors import InputError
from comclip.imaging.files import LoadedImage, load_image


class DeferredImage(Image.Image):
    """An RGB image of known size whose pixels are decoded from ``path`` (as
    :func:`~comclip.imaging.files.load_image` decodes it) only when something reads them."""

    def __init__(self, path: str, size: tuple[int, int], digest: str, on_decode: Callable[[], None]) -> None:
        super().__init__()
        self._size = (int(size[0]), int(size[1]))
        self._mode = "RGB"
        self._path, self._digest, self._on_decode = path, digest, on_decode

    def load(self) -> Any:
        if self._im is None:
            decoded = load_image(self._path).image
            if decoded.size != self.size or image_digest(decoded) != self._digest:
                raise InputError(f"{self._path} has changed since it was indexed; run comclip index add again or rebuild")
            self.im = decoded.im
            self._on_decode()
        return super().load()


@dataclass(frozen=True)
class IndexedImage(LoadedImage):
    """A loaded image whose digest the index knows (hashing would read the pixels)."""

    known_digest: str = ""

    @property
    def digest(self) -> str:
        return self.known_digest


class IndexCache:
    """The backbone's cache at query time: embeddings of indexed images (global and sub-images)
    from the index; everything else (texts, rankings, parses) in memory; sub-images the index
    lacks are encoded by the backbone, kept in memory and in ``keep`` (the persistent cache,
    if any), and counted in :attr:`computed`."""

    def __init__(self, prefix: str, lookup: Callable[[str], np.ndarray | None], keep: Any = None) -> None:
        self.prefix = prefix  # the backbone's image keys start with it
        self.lookup = lookup
        self.keep = keep
        self.memory = MemoryCache()
        self.computed = 0

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        found = {}
        rest = []
        for key in keys:
            vector = self.lookup(key[len(self.prefix) :]) if key.startswith(self.prefix) else None
            if vector is None:
                rest.append(key)
            else:
                found[key] = vector
        found.update(self.memory.get_many(rest))
        kept = [k for k in rest if k not in found and k.startswith(self.prefix)]
        if self.keep is not None and kept:
            stored = self.keep.get_many(kept)
            found.update(stored)
            self.memory.put_many(stored.items())
        return found

    def put_many(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        items = list(items)
        self.memory.put_many(items)
        images = [(k, v) for k, v in items if k.startswith(self.prefix)]
        self.computed += len(images)
        if self.keep is not None and images:
            self.keep.put_many(images)

    def get_records(self, keys: list[str]) -> dict[str, str]:
        return self.memory.get_records(keys)

    def put_records(self, items: Iterable[tuple[str, str]]) -> None:
        self.memory.put_records(items)


@functools.lru_cache(maxsize=1 << 16)
def parse_sub_key(content: str) -> tuple[str, str, frozenset] | None:
    """``sub:DIGEST|FILL|x1,y1,x2,y2;...`` (see :func:`~comclip.imaging.subimages.subimage_key`) as
    (digest, fill, the set of pixel bounds); None for any other key. Remembered: a search asks
    for the same candidates' keys query after query, and a masked one holds many bounds."""
    if not content.startswith("sub:"):
        return None
    digest, fill, bounds = content[4:].split("|", 2)
    return digest, fill, frozenset(tuple(int(v) for v in b.split(",")) for b in bounds.split(";"))
