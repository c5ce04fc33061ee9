"""A backbone with an embedding cache in front of it.

A :class:`~comclip.backbones.base.Backbone` computes and keeps nothing. A
:class:`CachedEncoder` takes one and a cache (:mod:`comclip.cache.embeddings`) and answers the
same calls, reading every embedding it can from the cache and storing every one it computes:
images by the digest of their pixels, captions by their text, sub-images by their content key,
and a CLIP ViT's patch tokens beside its global embedding. Keys are
``model | kind | content`` (:meth:`cache_key`), so one cache file serves many models.
Everything else (name, device, logit scale, ``encode_views``, ...) is the backbone's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from comclip.backbones.base import Backbone, loaded_images
from comclip.backbones.vit.patches import PatchGrid
from comclip.cache.embeddings import EmbeddingCache, MemoryCache, read_through
from comclip.digests import image_digest
from comclip.imaging.files import DEFAULT_MAX_SIDE, ImageInput, LoadedImage
from comclip.imaging.subimages import TokenRegion
from comclip.similarity import cosines
from comclip.text import validate_captions

#: Bytes of patch grids a :class:`CachedEncoder` keeps in memory from images it encoded whole.
RECENT_PATCH_BYTES = 128 << 20


class CachedEncoder:
    """``backbone`` read through ``cache`` (None: no cache, the backbone's own results).

    ``cache`` may be swapped for the length of a call (a search answers from its index this way).
    Where the backbone exposes patch tokens, an image encoded whole keeps its patch grid in
    memory for a while (``recent_patches``, at most :data:`RECENT_PATCH_BYTES`): grounding an
    image just encoded (re-ranking CLIP's shortlist; comclip after clip on the same examples)
    then reads it instead of running the same forward pass again.
    """

    def __init__(self, backbone: Backbone, cache: EmbeddingCache | None = None) -> None:
        self.backbone = backbone
        self.cache = cache
        self.recent_patches = MemoryCache(max_bytes=RECENT_PATCH_BYTES)

    #: The encoder's own attributes; every other one is the backbone's, read and set there
    #: (``encoder.pixels = "pil"`` changes the backbone's pixel path).
    _OWN = frozenset({"backbone", "cache", "recent_patches"})

    def __getattr__(self, name: str) -> Any:
        if name in CachedEncoder._OWN:  # not set yet (while unpickling): never recurse
            raise AttributeError(name)
        return getattr(self.backbone, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in CachedEncoder._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.backbone, name, value)

    def __delattr__(self, name: str) -> None:
        if name in CachedEncoder._OWN:
            object.__delattr__(self, name)
        else:
            delattr(self.backbone, name)

    def cache_key(self, kind: str, content: str) -> str:
        """``model | kind | content``; the model part is :attr:`Backbone.model_key`."""
        return f"{self.backbone.model_key}|{kind}|{content}"

    def encode_images(self, images: Sequence[ImageInput | LoadedImage], max_side: int | None = DEFAULT_MAX_SIDE) -> torch.Tensor:
        """:meth:`Backbone.encode_images`, each image looked up by the digest of its pixels first
        (a :class:`~comclip.imaging.files.LoadedImage`'s own, computed once per image)."""
        if self.cache is None:
            return self.backbone.encode_images(images, max_side=max_side)
        loaded = loaded_images(images, max_side)
        keys = [self.cache_key("img", im.digest) for im in loaded]
        if self.backbone.supports_patches:
            rows = read_through(self.cache, keys, loaded, self._whole_keeping_patches)
        else:
            rows = read_through(self.cache, keys, [im.image for im in loaded], self.backbone._image_rows_array)
        return self.backbone.image_rows(torch.from_numpy(rows))

    def _whole_keeping_patches(self, loaded: list[LoadedImage]) -> np.ndarray:
        """Global rows of images, from the forward pass that also gives their patch grids, which
        go to ``recent_patches`` (a batch at a time: a large call never holds all its grids)."""
        rows = []
        for start in range(0, len(loaded), self.backbone.batch_size):
            batch = loaded[start : start + self.backbone.batch_size]
            vectors, grids = self.backbone.encode_with_patches([im.image for im in batch])
            self.recent_patches.put_many((self.cache_key("patches", im.digest), g.pack()) for im, g in zip(batch, grids))
            rows.append(vectors.numpy())
        return np.concatenate(rows)

    def encode_keyed(self, keys: Sequence[str], make: Callable[[int], Image.Image | torch.Tensor | TokenRegion]) -> torch.Tensor:
        """:meth:`Backbone.encode_keyed` through the cache: ``make`` only for keys it lacks."""
        cache = self.cache if self.cache is not None else MemoryCache()  # this call: each key encoded once
        return self.backbone.encode_keyed_through(cache, [self.cache_key("img", k) for k in keys], make)

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """:meth:`Backbone.encode_texts`, each caption looked up first (an over-long one is said
        only when it is encoded)."""
        if self.cache is None:
            return self.backbone.encode_texts(texts)
        texts = validate_captions(texts)
        keys = [self.cache_key("txt", text) for text in texts]
        rows = read_through(self.cache, keys, texts, self.backbone._text_rows_array)
        return torch.from_numpy(rows)

    def encode_with_patches(
        self, images: Sequence[Image.Image], keys: Sequence[str] | None = None
    ) -> tuple[torch.Tensor, list[PatchGrid]]:
        """:meth:`Backbone.encode_with_patches` through the cache: the global rows are the ones
        :meth:`encode_images` reads, the patch grids are kept beside them."""
        if self.cache is None or not self.backbone.supports_patches:
            return self.backbone.encode_with_patches(images, keys)
        digests = list(keys) if keys is not None else [image_digest(im) for im in images]
        global_keys = [self.cache_key("img", d) for d in digests]
        patch_keys = [self.cache_key("patches", d) for d in digests]
        found = self.cache.get_many(global_keys + patch_keys)
        recent = self.recent_patches.get_many([key for key in patch_keys if key not in found])
        if recent:  # stored as though computed here: a warm run finds what a cold one stored
            self.cache.put_many(recent.items())
            found.update(recent)
        todo = [n for n in range(len(images)) if global_keys[n] not in found or patch_keys[n] not in found]
        if todo:
            fresh_global, fresh_grids = self.backbone.encode_with_patches([images[n] for n in todo])
            items = []
            for n, vector, grid in zip(todo, fresh_global.numpy(), fresh_grids):
                items += [(global_keys[n], vector), (patch_keys[n], grid.pack())]
            self.cache.put_many(items)
            found.update(items)
        grids = [PatchGrid.unpack(found[key]) for key in patch_keys]
        return torch.from_numpy(np.stack([found[key] for key in global_keys]).astype(np.float32)), grids

    def similarity(self, images: Sequence[ImageInput], texts: Sequence[str]) -> torch.Tensor:
        """Cosine similarity matrix ``[N images, M texts]``, through the cache."""
        return cosines(self.encode_images(images), self.encode_texts(texts))

    def __repr__(self) -> str:
        return f"CachedEncoder({self.backbone!r}, cache={type(self.cache).__name__ if self.cache is not None else None})"


def encoder(backbone: Backbone | CachedEncoder) -> CachedEncoder:
    """``backbone`` as a :class:`CachedEncoder` (itself where it is one), for code that swaps
    the cache in front of it for a while (the search index)."""
    return backbone if isinstance(backbone, CachedEncoder) else CachedEncoder(backbone)


def cached(backbone: Backbone | CachedEncoder, cache: EmbeddingCache | None) -> Backbone | CachedEncoder:
    """``backbone`` read through ``cache``: a :class:`CachedEncoder` (the same one's backbone
    where it is one already), or the backbone itself where there is no cache."""
    raw = backbone.backbone if isinstance(backbone, CachedEncoder) else backbone
    return raw if cache is None else CachedEncoder(raw, cache)


#: What encodes: a backbone, or one with a cache in front (the same calls).
Encoder = Backbone | CachedEncoder

__all__ = ["CachedEncoder", "Encoder", "cached", "encoder"]
