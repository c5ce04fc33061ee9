"""Where a grounded entity may go on under the other: depth's completions (``--relations pixels``).

An object behind another has lost a bite to it; its region, completed over the other's pixels
where its outline suggests it goes on, is the whole object again. An object in front has lost
nothing, and any completion only adds the other's pixels to it. Each completion here is a
generic operation on the grounded region, read on every image alike (no rule reads colours or
shapes); :mod:`comclip.pipeline.pixel_relations` paints what it reaches in the entity's own
colour and asks the encoder which version reads most like the entity's phrase:

- the closing: what a disc of radius :data:`COMPLETION_RADIUS` (times the image's shorter side)
  cannot reach from outside, the narrow bites;
- the convex hull: the region with every dent filled, the wide bites a disc cannot close.

Plain boxes are their own closing and hull, so an entity grounded to a box paints nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

from comclip.boxes import Box, MaskedBox, region_boxes
from comclip.imaging.masks import mask_region
from comclip.imaging.subimages import region_mask

#: The radius of the closing, as a share of the image's shorter side (6 pixels at 64). Chosen
#: on development seeds 100 and 101, alone (the group score, 200 pairs a task, the mean of both
#: models' depth and crowded depth, eight cells): without 82.3, 4 pixels 84.2, 6 pixels 84.6.
COMPLETION_RADIUS = 6 / 64


def completions(
    first: Sequence[Box], second: Sequence[Box], size: tuple[int, int]
) -> tuple[tuple[MaskedBox | None, ...], tuple[MaskedBox | None, ...]]:
    """Each entity's completions, the first's and then the second's: the other entity's pixels
    that each completion of its region reaches (the closing, then the convex hull), where the
    one behind lost a bite to the one in front. None for a completion that reaches none of them
    (``size``: the image's width and height; each region's mask is made once)."""
    width, height = size
    masks = [region_mask(region_boxes(boxes), width, height) for boxes in (first, second)]
    return _completed(first, masks[0], masks[1]), _completed(second, masks[1], masks[0])


def completions_over(boxes: Sequence[Box], other: Sequence[Box], size: tuple[int, int]) -> tuple[MaskedBox | None, ...]:
    """One entity's completions over the other's region alone (:func:`completions`' first
    half, without the other's own): what grounding reads of each candidate region."""
    width, height = size
    return _completed(boxes, region_mask(region_boxes(boxes), width, height), region_mask(region_boxes(other), width, height))


def _completed(boxes: Sequence[Box], mine: np.ndarray, theirs: np.ndarray) -> tuple[MaskedBox | None, ...]:
    """One entity's completions (see :func:`completions`), its region ``boxes`` and ``mine``
    its mask, ``theirs`` the other's."""
    return tuple(mask_region(grown & ~mine & theirs) for grown in (_closed(mine), _hull(boxes, mine)))


def _closed(mask: np.ndarray) -> np.ndarray:
    """``mask`` closed with a disc of :data:`COMPLETION_RADIUS`, taken with two distance
    transforms, whose cost does not grow with the radius (a disc tens of pixels across on a
    photo); nothing grows beyond the image."""
    radius = max(1, round(COMPLETION_RADIUS * min(mask.shape)))
    padded = np.pad(mask, radius + 1)
    grown = ndimage.distance_transform_edt(~padded) <= radius  # within the radius of the region
    closed = ndimage.distance_transform_edt(grown) > radius  # and what stays when that shrinks back
    inner = slice(radius + 1, -(radius + 1))
    return closed[inner, inner]


def _hull(boxes: Sequence[Box], mask: np.ndarray) -> np.ndarray:
    """The pixels whose centres lie in the convex hull of the region's pixels (the corners of
    its runs: a few points a row, not one a pixel); the region itself (``mask``, its pixels)
    where it is too thin to have a hull (a line)."""
    height, width = mask.shape
    bounds = [run.pixels() for run in region_boxes(boxes)]
    corners = np.clip([(x, y) for x1, y1, x2, y2 in bounds for x in (x1, x2) for y in (y1, y2)], 0, (width, height))
    (x1, y1), (x2, y2) = corners.min(axis=0), corners.max(axis=0)
    if x2 - x1 < 1 or y2 - y1 < 1:
        return mask
    equations = ConvexHull(corners).equations  # inside: normal . point + offset <= 0
    ys, xs = np.mgrid[y1:y2, x1:x2] + 0.5
    inside = np.all(equations[:, :2] @ np.stack([xs.ravel(), ys.ravel()]) + equations[:, 2:] <= 1e-9, axis=0)
    mask = np.zeros((height, width), dtype=bool)
    mask[y1:y2, x1:x2] = inside.reshape(ys.shape)
    return mask
