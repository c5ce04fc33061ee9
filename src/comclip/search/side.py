"""The image side an index stores: everything the query side of each method reads about an
image, computed once at build time with the pipeline's own code (the grounders' candidates,
:func:`~comclip.imaging.subimages.encode_subimages`, under their sub-image keys), so a score
from the index is the score ``comclip score`` gives.

What is stored, per image:

- the global embedding;
- per distinct grounder of the methods (``cand.G``): its candidate boxes (a masked box with
  its runs) and their region embeddings (patch-pooled, cropped, masked, from tokens or
  multiscale: whatever the grounder ranks);
- per sub-image fill of the methods (``sub.F``): the sub-image of every candidate's region
  (the union over the grounders, cut to the image, each pixel region once) and its pixel
  bounds (one box, or a mask's runs);
- per fill (``union.F``): the union sub-images of candidate pairs, the relations' sub-images,
  up to ``union_cap`` pairs an image, each stored as the two ``sub.F`` rows it joins. Pairs
  are taken smallest candidates first (objects are the small candidates; a union with a large
  window is rarely a relation's), in the order (1, 0), (2, 0), (2, 1), (3, 0), ... of the
  candidates sorted by the area of their boxes. A relation whose pair is past the cap is
  computed at query time, cached and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from comclip.backbones.cached import CachedEncoder
from comclip.boxes import Box, MaskedBox, region_boxes, region_pixels
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
#: A region as its sub-image key knows it: the pixel bounds of its boxes (a masked box's runs).
Region = tuple[Pixels, ...]


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
        regions: list[dict[Region, Box]] = [{} for _ in images]  # each region, and the first candidate that is it
        for key, candidates in found.items():
            boxes = [b for some, _ in candidates for b in some]
            arrays.update(_ragged(f"cand.{key}", [e for _, e in candidates], [_box_rows(b) for b, _ in candidates], dim))
            arrays.update(_runs(f"cand.{key}", [[r.as_tuple() for r in getattr(b, "runs", ())] for b in boxes], np.float64))
            for n, (some, _) in enumerate(candidates):
                for box in some:
                    clipped = box.clipped(*pictures[n].size)
                    regions[n].setdefault(tuple(region_pixels([clipped])), clipped)
        singles = [_distinct(list(found_here), im.image.size) for found_here, im in zip(regions, images)]
        pairs = [_pairs(len(s), side.union_cap) for s in singles]
        single_boxes = [[found_here[region] for region in some] for found_here, some in zip(regions, singles)]
        unions = [[_joined(boxes[j], boxes[i]) for j, i in some] for boxes, some in zip(single_boxes, pairs)]
        for fill in side.fills:
            arrays.update(_encoded(f"sub.{fill}", backbone, maker, images, single_boxes, fill, dim))
            arrays.update(_runs(f"sub.{fill}", [list(region) for some in singles for region in some], np.int32))
            arrays.update(_encoded(f"union.{fill}", backbone, maker, images, unions, fill, dim))
            arrays[f"union.{fill}.pair"] = np.asarray([p for some in pairs for p in some], dtype=np.int32).reshape(-1, 2)
        return {name: a.astype(dtype) if name.endswith("vec") or name == "global" else a for name, a in arrays.items()}
    finally:
        backbone.cache = saved


def _candidates(grounder: CLIPGrounder, pictures: list, digests: list[str]) -> list[tuple[list[Box], torch.Tensor]]:
    """Each image's candidate boxes and region embeddings, all images prepared in batches
    (known by the digests the build has already computed)."""
    grounder.prepare(pictures, digests)
    return [grounder.candidates(p) for p in pictures]


def _distinct(regions: list[Region], size: tuple[int, int]) -> list[Region]:
    """Each region once, the whole image left out (its sub-image is the image itself),
    smallest box first (ties in the order found)."""
    whole = ((0, 0, size[0], size[1]),)
    unique = [r for r in dict.fromkeys(regions) if r != whole]
    return sorted(unique, key=_box_area)


def _box_area(region: Region) -> int:
    """The area of the box that bounds ``region``."""
    return (max(p[2] for p in region) - min(p[0] for p in region)) * (max(p[3] for p in region) - min(p[1] for p in region))


def _pairs(count: int, cap: int) -> list[tuple[int, int]]:
    """Pairs of ``count`` candidates, smallest first: (1, 0), (2, 0), (2, 1), (3, 0), ..., at most ``cap``."""
    pairs = [(j, i) for j in range(1, count) for i in range(j)]
    return pairs[:cap]


def _joined(first: Box, second: Box) -> Box:
    """A box whose region is that of both boxes (a candidate pair's union)."""
    return MaskedBox.of_runs([*region_boxes([first, second])], [*region_pixels([first, second])])


def _box_rows(boxes: Sequence[Box]) -> np.ndarray:
    return np.asarray([b.as_tuple() for b in boxes], dtype=np.float64).reshape(-1, 4)


def _runs(name: str, rows: list[list], dtype) -> dict[str, np.ndarray]:
    """Each row's boxes (a masked box's runs, a region's pixel bounds; none for a plain box)
    one below the other, and how many each row has."""
    return {
        f"{name}.runs": np.asarray([r for row in rows for r in row], dtype=dtype).reshape(-1, 4),
        f"{name}.nruns": np.asarray([len(row) for row in rows], dtype=np.int32),
    }


def _encoded(
    name: str,
    backbone: CachedEncoder,
    maker: SubimageMaker,
    images: list[LoadedImage],
    regions: list[list[Box]],
    fill: str,
    dim: int,
) -> dict[str, np.ndarray]:
    """The sub-images of each image's regions (boxes whose region each is), encoded in one
    keyed call; each region's row holds the box that bounds it."""
    todo = [(n, box) for n, boxes in enumerate(regions) for box in boxes]
    digests = [im.digest for im in images]
    vectors = encode_subimages(backbone, maker, digests, [(n, [box]) for n, box in todo], fill) if todo else torch.zeros(0, dim)
    table = np.asarray([box.pixels() for _, box in todo], dtype=np.int32).reshape(-1, 4)
    counts = np.cumsum([0] + [len(rs) for rs in regions])
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
