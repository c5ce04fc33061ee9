"""The image side an index stores: everything the query side of each method reads about an
image, computed once at build time with the pipeline's own code (the grounders' candidates,
:func:`~comclip.imaging.subimages.encode_subimages`, under their sub-image keys), so a score
from the index is the score ``comclip score`` gives.

What is stored, per image:

- the global embedding;
- per distinct grounder of the methods (``cand.G``): its candidate boxes and their region
  embeddings (patch-pooled, cropped, masked, from tokens or multiscale: whatever the grounder ranks);
- per sub-image fill of the methods (``sub.F``): the sub-image of every candidate box (the
  union over the grounders, boxes cut to the image, each pixel region once);
- per fill (``union.F``): the union sub-images of candidate pairs, the relations' sub-images,
  up to ``union_cap`` pairs an image. Pairs are taken smallest candidates first (objects are
  the small candidates; a union with a large window is rarely a relation's), in the order
  (1, 0), (2, 0), (2, 1), (3, 0), ... of the candidates sorted by area. A relation whose pair is
  past the cap is computed at query time, cached and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from comclip.backbones.cached import CachedEncoder
from comclip.boxes import Box
from comclip.cache.embeddings import MemoryCache
from comclip.config import PipelineConfig
from comclip.digests import description_digest
from comclip.errors import InputError
from comclip.grounding.clip_grounder import CLIPGrounder
from comclip.grounding.pool import GrounderPool
from comclip.imaging.files import LoadedImage
from comclip.imaging.subimages import SubimageMaker, encode_subimages

#: Union sub-images kept per image and fill: every pair of the 10 smallest candidates.
DEFAULT_UNION_CAP = 45

Pixels = tuple[int, int, int, int]


def grounder_key(description: dict) -> str:
    """A short, stable name for a grounder configuration (its ``describe()``)."""
    return description_digest(description, 5)


@dataclass
class StoredSide:
    """What an index keeps for the methods it serves: their grounders and sub-image fills."""

    grounders: dict[str, CLIPGrounder]
    fills: tuple[str, ...]
    union_cap: int

    @classmethod
    def for_methods(cls, pool: GrounderPool, configs: dict[str, PipelineConfig | None], union_cap: int) -> StoredSide:
        grounders: dict[str, CLIPGrounder] = {}
        for name, config in configs.items():
            if config is None:
                continue
            grounder = pool.for_config(config)
            if not isinstance(grounder, CLIPGrounder):
                raise InputError(
                    f"method {name}: an index stores the clip grounder's candidate regions; --grounder {config.grounder} "
                    "finds boxes per query, which an index cannot hold"
                )
            grounders[grounder_key(grounder.describe())] = grounder
        fills = tuple(dict.fromkeys(c.subimage_source for c in configs.values() if c is not None))
        return cls(grounders, fills, union_cap)

    def describe(self) -> dict:
        return {
            "grounders": {key: g.describe() for key, g in self.grounders.items()},
            "fills": list(self.fills),
            "union_cap": self.union_cap,
        }


def compute(
    backbone: CachedEncoder, side: StoredSide, images: list[LoadedImage], dtype: str = "float32"
) -> dict[str, np.ndarray]:
    """The stored side of ``images``, as the part's arrays (see :mod:`comclip.search.layout`).
    The backbone's cache is a fresh in-memory one for the call (a patch-token grounder's global
    embeddings are read back from it, not encoded twice); nothing is written elsewhere."""
    fresh: Any = MemoryCache()
    saved, backbone.cache = backbone.cache, fresh
    try:
        pictures = [im.image for im in images]
        digests = [im.digest for im in images]
        found = {key: _candidates(grounder, pictures, digests) for key, grounder in side.grounders.items()}
        maker = SubimageMaker(pictures, backbone.pixel_device)
        # The images themselves, whose views the candidates' token regions have just made.
        arrays = {"global": backbone.encode_keyed(digests, lambda n: pictures[n]).numpy()}
        dim = arrays["global"].shape[-1]
        singles: list[list[Pixels]] = [[] for _ in images]
        for key, candidates in found.items():
            arrays.update(_ragged(f"cand.{key}", [e for _, e in candidates], [_box_rows(b) for b, _ in candidates], dim))
            for n, (boxes, _) in enumerate(candidates):
                singles[n] += [b.clipped(*pictures[n].size).pixels() for b in boxes]
        singles = [_distinct(s, im.image.size) for s, im in zip(singles, images)]
        pairs = [_pairs(s, side.union_cap) for s in singles]
        for fill in side.fills:
            arrays.update(_encoded(f"sub.{fill}", backbone, maker, images, [[[b] for b in s] for s in singles], fill, dim))
            arrays.update(_encoded(f"union.{fill}", backbone, maker, images, pairs, fill, dim))
        return {name: a.astype(dtype) if name.endswith("vec") or name == "global" else a for name, a in arrays.items()}
    finally:
        backbone.cache = saved


def _candidates(grounder: CLIPGrounder, pictures: list, digests: list[str]) -> list[tuple[list[Box], torch.Tensor]]:
    """Each image's candidate boxes and region embeddings, all images prepared in batches
    (known by the digests the build has already computed)."""
    grounder.prepare(pictures, digests)
    return [grounder.candidates(p) for p in pictures]


def _distinct(pixels: list[Pixels], size: tuple[int, int]) -> list[Pixels]:
    """Each pixel region once, the whole image left out (its sub-image is the image itself),
    smallest first (ties in the order found)."""
    whole = (0, 0, size[0], size[1])
    unique = [p for p in dict.fromkeys(pixels) if p != whole]
    return sorted(unique, key=lambda p: (p[2] - p[0]) * (p[3] - p[1]))


def _pairs(singles: list[Pixels], cap: int) -> list[list[Pixels]]:
    """Pairs of candidates, smallest first: (1, 0), (2, 0), (2, 1), (3, 0), ..., at most ``cap``."""
    pairs = [[singles[j], singles[i]] for j in range(1, len(singles)) for i in range(j)]
    return pairs[:cap]


def _box_rows(boxes: Sequence[Box]) -> np.ndarray:
    return np.asarray([[b.x1, b.y1, b.x2, b.y2] for b in boxes], dtype=np.float64).reshape(-1, 4)


def _encoded(
    name: str,
    backbone: CachedEncoder,
    maker: SubimageMaker,
    images: list[LoadedImage],
    regions: list[list[list[Pixels]]],
    fill: str,
    dim: int,
) -> dict[str, np.ndarray]:
    """The sub-images of each image's regions (lists of pixel bounds), encoded in one keyed call."""
    todo = [(n, region) for n, rs in enumerate(regions) for region in rs]
    boxes = [(n, [Box(float(p[0]), float(p[1]), float(p[2]), float(p[3])) for p in region]) for n, region in todo]
    digests = [im.digest for im in images]
    vectors = encode_subimages(backbone, maker, digests, boxes, fill) if todo else torch.zeros(0, dim)
    width = 4 * max((len(r) for _, r in todo), default=1)
    counts = np.cumsum([0] + [len(rs) for rs in regions])
    table = np.asarray([p for _, region in todo for p in region], dtype=np.int32).reshape(len(todo), width)
    return _ragged(
        name, [vectors[a:b] for a, b in zip(counts, counts[1:])], [table[a:b] for a, b in zip(counts, counts[1:])], dim
    )


def _ragged(name: str, vectors: list, boxes: list[np.ndarray], dim: int) -> dict[str, np.ndarray]:
    """Per-image lists of rows as one table: vectors, boxes and ``images + 1`` offsets."""
    counts = [len(b) for b in boxes]
    vec = [np.asarray(v.numpy() if isinstance(v, torch.Tensor) else v, dtype=np.float32).reshape(-1, dim) for v in vectors]
    return {
        f"{name}.vec": np.concatenate(vec) if vec else np.zeros((0, dim), np.float32),
        f"{name}.box": np.concatenate(boxes) if boxes else np.zeros((0, 4)),
        f"{name}.off": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
    }
