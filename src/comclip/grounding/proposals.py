"""Class-agnostic region proposals: where might an object be, before asking what it is.

- :func:`grid_windows`: a multi-scale grid of windows (blind to content, always available).
- :func:`segment_proposals`: boxes of connected regions that stand out from the background
  colour, after light smoothing; the first step of classic proposal methods such as selective
  search. Cheap (one pass over a small copy of the image) and tight where objects contrast
  with their surroundings, as in the sandbox's scenes and many product or diagram images.
  With ``parts`` (the ``segment-parts`` proposals), each region's parts are boxed as well:
  objects that touch or overlap, split by colour and at narrow joins (see
  :mod:`comclip.grounding.segment_parts`). With ``masks`` as well (``segment-masks``), each
  box is a :class:`~comclip.boxes.MaskedBox` of its segment's or part's pixels, whose
  sub-image leaves out what else lies in the box.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from comclip.boxes import MaskedBox
from comclip.grounding.base import Box
from comclip.grounding.segment_parts import CROSS, lengths, mask_bounds
from comclip.imaging.masks import mask_runs

#: (window side as a fraction of the image side, stride as a fraction of the image side).
DEFAULT_SCALES = ((1.0, 1.0), (0.75, 0.25), (0.5, 0.25), (1 / 3, 1 / 6))
PROPOSALS = ("grid", "segments", "segment-parts", "segment-masks", "grid+segments", "grid+segment-parts", "grid+segment-masks")
#: Proposals that box each segment's parts (see :mod:`comclip.grounding.segment_parts`); the
#: ``masks`` kind gives each segment and part as a :class:`~comclip.boxes.MaskedBox`, whose
#: sub-image shows its own pixels only.
WITH_PARTS = ("segment-parts", "segment-masks")
#: Where two boxes' sides all lie within this many pixels (of the analysed copy), the second
#: is the first again (a part's box one pixel inside its segment's).
SAME_BOX = 1.5
#: Pixels around a segment's box where its parts are looked for (one is enough: see
#: :mod:`comclip.grounding.segment_parts`, whose steps look one pixel past the segment).
PART_MARGIN = 2


def grid_windows(width: int, height: int, scales=DEFAULT_SCALES) -> list[Box]:
    """Windows covering the image at several scales, each window inside the image."""
    boxes: list[Box] = []
    for side, stride in scales:
        w, h = width * side, height * side
        steps = max(1, round((1 - side) / stride) + 1) if side < 1 else 1  # per axis
        for iy in range(steps):
            for ix in range(steps):
                x1 = 0.0 if steps == 1 else (width - w) * ix / (steps - 1)
                y1 = 0.0 if steps == 1 else (height - h) * iy / (steps - 1)
                boxes.append(Box(x1, y1, x1 + w, y1 + h))
    return list(dict.fromkeys(Box(round(b.x1, 3), round(b.y1, 3), round(b.x2, 3), round(b.y2, 3)) for b in boxes))


def segment_proposals(image: Image.Image, **options) -> list[Box]:
    """:func:`segment_proposals_many` of one image (``options``: its settings)."""
    return segment_proposals_many([image], **options)[0]


def segment_proposals_many(
    images: Sequence[Image.Image],
    max_side: int = 128,
    threshold: float = 40.0,
    min_area: float = 0.002,
    max_area: float = 0.5,
    parts: bool = False,
    masks: bool = False,
) -> list[list[Box]]:
    """Boxes (in each image's pixels) of connected regions whose colour differs from the background.

    The background colour is the median of the border pixels; a pixel is foreground when its
    smoothed colour is more than ``threshold`` away from it (RGB distance). Regions smaller
    than ``min_area`` or larger than ``max_area`` of the image are dropped. With ``parts``, each
    kept region's parts follow (:func:`~comclip.grounding.segment_parts.segment_parts`), the same
    area bounds applied, without boxes that repeat one already given; the parts of all the
    images' segments are found together
    (:func:`~comclip.grounding.segment_stacks.segment_parts_many`: the same parts, for a
    fraction of the cost). With ``masks``, each box is a :class:`~comclip.boxes.MaskedBox` of
    the segment's or part's pixels.
    """
    found = [_segments(image, max_side, threshold, min_area, max_area) for image in images]
    if parts:
        from comclip.grounding.segment_stacks import segment_parts_many

        where = [(n, left, top) for n, (_, some) in enumerate(found) for _, left, top in some]
        segments = [segment for _, some in found for segment, _, _ in some]
        for (n, left, top), these in zip(where, segment_parts_many(segments)):
            for part in these:
                found[n][0].add(part, left, top)
    return [_proposed(image, boxes, masks, max_side) for image, (boxes, _) in zip(images, found)]


def _segments(image: Image.Image, max_side: int, threshold: float, min_area: float, max_area: float):
    """An image's segment boxes (in the analysed copy's pixels) and each kept segment as
    :func:`~comclip.grounding.segment_parts.segment_parts` reads it (the segment's box and a
    margin: each step looks one pixel past the segment at most, so its parts are the ones the
    whole image gives, for less work), with where that window starts."""
    from scipy import ndimage

    small = _analysed(image, max_side)
    raw = np.asarray(small.convert("RGB"), dtype=np.float32)
    pixels = ndimage.uniform_filter(raw, size=(3, 3, 1), mode="nearest")
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = _column_medians(border)
    foreground = lengths(pixels - background) > threshold
    labels, count = ndimage.label(foreground, CROSS)
    found = _Boxes(foreground.size * min_area, foreground.size * max_area)
    kept = []
    for index, region in enumerate(ndimage.find_objects(labels), start=1):
        if region is not None and found.fits(int((labels[region] == index).sum())):
            ys, xs = region
            found.boxes.append((xs.start, ys.start, xs.stop, ys.stop))  # segments are apart: never a repeat
            found.masks.append((labels[region] == index, xs.start, ys.start))
            y1, x1 = max(ys.start - PART_MARGIN, 0), max(xs.start - PART_MARGIN, 0)
            window = (slice(y1, ys.stop + PART_MARGIN), slice(x1, xs.stop + PART_MARGIN))
            kept.append(((raw[window], labels[window] == index, background, min_area * foreground.size), x1, y1))
    return found, kept


def _scale(image: Image.Image, max_side: int) -> float:
    """From ``image`` pixels to those of the copy segments are found in."""
    return min(1.0, max_side / max(image.size))


def _analysed(image: Image.Image, max_side: int) -> Image.Image:
    """The copy segments are found in: the image, shrunk to ``max_side`` where it is larger."""
    scale = _scale(image, max_side)
    if scale == 1.0:
        return image
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR)


def _proposed(image: Image.Image, found: _Boxes, masks: bool, max_side: int) -> list[Box]:
    """``found``'s boxes in ``image`` pixels (as masked boxes with ``masks``)."""
    scale = _scale(image, max_side)
    boxes = [
        Box(x1 / scale, y1 / scale, min(image.width, x2 / scale), min(image.height, y2 / scale)) for x1, y1, x2, y2 in found.boxes
    ]
    if not masks:
        return boxes
    return [_masked(box, *shown, scale) for box, shown in zip(boxes, found.masks)]


def _masked(box: Box, mask: np.ndarray, left: int, top: int, scale: float) -> MaskedBox:
    """``box`` as a masked box of ``mask`` (whose first pixel is the analysed copy's (``left``,
    ``top``)), its runs in image pixels, cut to the box. The mask is taken as found, not grown
    (development seeds 100 and 101, both sandbox models: growing it by a pixel cost 4-10
    points on depth and changed no other task by more than 1.5)."""
    y1, y2, x1, x2 = mask_bounds(mask)
    runs = [
        Box(
            max(box.x1, (left + x1 + a) / scale),
            max(box.y1, (top + y1 + b) / scale),
            min(box.x2, (left + x1 + c) / scale),
            min(box.y2, (top + y1 + d) / scale),
        )
        for a, b, c, d in mask_runs(mask[y1:y2, x1:x2])
    ]
    return MaskedBox(box.x1, box.y1, box.x2, box.y2, runs=tuple(runs))


def _column_medians(values: np.ndarray) -> np.ndarray:
    """``np.median(values, axis=0)``, the same float32 arithmetic (the mean of the two middle
    values of an even count) without its per-call set-up."""
    ordered = np.sort(values, axis=0)
    middle = (len(ordered) - 1) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle] + ordered[middle + 1]) / 2


class _Boxes:
    """Boxes of masks whose area lies within bounds, each once (see :data:`SAME_BOX`)."""

    def __init__(self, least: float, most: float) -> None:
        self.least, self.most = least, most
        self.boxes: list[tuple[int, int, int, int]] = []
        self.masks: list[tuple[np.ndarray, int, int]] = []  # each box's mask, where it starts

    def fits(self, area: int) -> bool:
        return self.least <= area <= self.most

    def add(self, mask: np.ndarray, left: int = 0, top: int = 0) -> None:
        """Box ``mask`` (whose first pixel is the image's (``left``, ``top``)) if its area is
        within bounds and it is not a box already given."""
        if not self.fits(int(mask.sum())):
            return
        y1, y2, x1, x2 = mask_bounds(mask)
        box = (left + x1, top + y1, left + x2, top + y2)
        if all(np.abs(np.subtract(box, kept)).max() > SAME_BOX for kept in self.boxes):
            self.boxes.append(box)
            self.masks.append((mask, left, top))


def propose(image: Image.Image, kind: str = "grid", scales=DEFAULT_SCALES) -> list[Box]:
    """Candidate boxes of the given kind (see :data:`PROPOSALS`), without duplicates."""
    return propose_many([image], kind, scales)[0]


def propose_many(images: Sequence[Image.Image], kind: str = "grid", scales=DEFAULT_SCALES) -> list[list[Box]]:
    """:func:`propose` of each image, their segments' parts found together."""
    segments = (
        segment_proposals_many(images, parts=kind.endswith(WITH_PARTS), masks=kind.endswith("masks"))
        if "segment" in kind
        else [[] for _ in images]
    )
    grids = [grid_windows(image.width, image.height, scales) if "grid" in kind else [] for image in images]
    return [list(dict.fromkeys(boxes + grid)) for boxes, grid in zip(segments, grids)]
