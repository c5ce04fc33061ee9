"""The parts of many segments at once: :func:`~comclip.grounding.segment_parts.segment_parts`
for every segment of a batch of images, its array steps run on stacks of masks.

A segment's steps are some hundred array operations on a mask of a few hundred pixels, so
their cost is numpy's set-up, not the pixels (about 0.45 ms an image in a search build, a
fifth of it). Here each step runs once for a stack of masks, each mask in a plane of its own
(``[N, H, W]``, each mask at the top left of its plane, with zeros around it):

- erosions, dilations, the 3x3 median, colour regions, core sizes and window maxima are the
  single-mask steps themselves, which work on a stack's planes (shifted copies along their two
  axes); a mask's zeros around it stand for what lies outside its own array (the median
  reads an edge repeated, so each window is padded with its own edge before it is stacked);
- connected components are labelled with a structure that joins nothing across planes, so
  each plane's labels run on from the last plane's, in the same raster order;
- the distance transform runs on the planes one below the other: each mask's nearest
  background lies in the zeros around it, the padding the single-mask step adds.

Only the common outcomes are decided on the stack (one colour region; an erosion that cuts
nothing apart; no two distance peaks far enough apart); a mask with any other outcome goes
through the single-mask step, so the parts are the same, in the same order
(``tests/test_segment_stacks.py`` compares them on every sandbox task).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from comclip.grounding.segment_parts import (
    EROSIONS,
    MIN_PART,
    MIN_SHARE,
    PEAK_APART,
    PEAK_LEAST,
    PEAK_WINDOW,
    PLANE_CROSS,
    PLANE_SQUARE,
    SHRINK,
    _colour_parts,
    _core_sizes,
    _dilated,
    _eroded,
    _narrow_joins,
    _regrown,
    _similar_regions,
    _window_maximum,
    edged,
    grouped_regions,
    mask_bounds,
    median_of_edged,
    peak_shares,
)

#: Cells (planes x height x width) of one stack: stacks of larger masks hold fewer of them
#: (small stacks stay in the CPU caches: 2^16 took 195 us a segment, 2^20 345, one at a time 338).
STACK_CELLS = 1 << 16

#: One segment as :func:`segment_parts` takes it: pixels, mask, background colour, core.
Segment = tuple[np.ndarray, np.ndarray, np.ndarray, float]


def segment_parts_many(segments: Sequence[Segment]) -> list[list[np.ndarray]]:
    """Each segment's parts, as :func:`~comclip.grounding.segment_parts.segment_parts` gives them."""
    groups = _colour_groups_many(segments)
    colour_parts: list[list[np.ndarray]] = []
    for (pixels, segment, background, _), grouped in zip(segments, groups):
        least = MIN_PART * segment.sum()
        colour_parts.append([p for p in _colour_parts(pixels, segment, background, grouped) if p.sum() >= least])
    masks = [mask for (_, segment, _, _), parts in zip(segments, colour_parts) for mask in (segment, *parts)]
    joins, peaks = _narrow_joins_many(masks), _distance_peaks_many(masks)
    out, at = [], 0
    for parts in colour_parts:
        found = list(parts)
        for _ in range(1 + len(parts)):
            found += joins[at] + peaks[at]
            at += 1
        out.append(found)
    return out


def _stacks(shapes: Sequence[tuple[int, int]], pad: int):
    """Batches of mask numbers (by size, so a stack pads little) and each batch's plane shape
    (the largest mask's, plus ``pad`` all round)."""
    order = sorted(range(len(shapes)), key=lambda n: (shapes[n][0] // 6, shapes[n][1]))  # like heights, then widths
    batch: list[int] = []
    tall = wide = 0
    for n in order:
        height, width = max(tall, shapes[n][0] + 2 * pad), max(wide, shapes[n][1] + 2 * pad)
        if batch and (len(batch) + 1) * height * width > STACK_CELLS:
            yield batch, (tall, wide)
            batch, (height, width) = [], (shapes[n][0] + 2 * pad, shapes[n][1] + 2 * pad)
        batch.append(n)
        tall, wide = height, width
    if batch:
        yield batch, (tall, wide)


def _stacked(arrays: Sequence[np.ndarray], batch: list[int], plane: tuple[int, int], pad: int) -> np.ndarray:
    """The arrays of ``batch``, each at (``pad``, ``pad``) of a plane of zeros."""
    first = arrays[batch[0]]
    stack = np.zeros((len(batch), *plane, *first.shape[2:]), dtype=first.dtype)
    for k, n in enumerate(batch):
        height, width = arrays[n].shape[:2]
        stack[k, pad : pad + height, pad : pad + width] = arrays[n]
    return stack


def _plane_starts(labels: np.ndarray) -> np.ndarray:
    """``[N + 1]``: the label each plane's labels follow (labels run on from plane to plane),
    then the last label; plane ``k`` holds labels ``starts[k] + 1 .. starts[k + 1]``."""
    return np.concatenate([[0], np.maximum.accumulate(labels.reshape(len(labels), -1).max(axis=1))])


def _plane_counts(labels: np.ndarray) -> np.ndarray:
    """How many labels each plane holds."""
    return np.diff(_plane_starts(labels))


# --- step 1: colour regions -------------------------------------------------------------------


def _colour_groups_many(segments: Sequence[Segment]) -> list[list[list[np.ndarray]]]:
    """:func:`~comclip.grounding.segment_parts._colour_groups` of every segment."""
    bounds = [mask_bounds(segment) for _, segment, _, _ in segments]
    windows = [edged(pixels[y1:y2, x1:x2]) for (pixels, *_), (y1, y2, x1, x2) in zip(segments, bounds)]
    insides = [segment[y1:y2, x1:x2] for (_, segment, _, _), (y1, y2, x1, x2) in zip(segments, bounds)]
    out: list = [None] * len(segments)
    for batch, plane in _stacks([w.shape[:2] for w in windows], 0):  # each window edged already
        median = median_of_edged(_stacked(windows, batch, plane, 0))
        labels = _similar_regions(median, _stacked(insides, batch, (plane[0] - 2, plane[1] - 2), 0))
        sizes = _core_sizes(labels)
        first = _plane_starts(labels)
        for k, n in enumerate(batch):
            cored = first[k] + 1 + np.flatnonzero(sizes[first[k] + 1 : first[k + 1] + 1] >= segments[n][3])
            y1, y2, x1, x2 = bounds[n]
            height, width = y2 - y1, x2 - x1
            out[n] = grouped_regions(median[k, :height, :width], labels[k, :height, :width], cored, segments[n][1], bounds[n])
    return out


# --- step 3: narrow joins ----------------------------------------------------------------------


def _plane_bounds(masks: np.ndarray) -> np.ndarray:
    """``[N, 4]``: each plane's ``y1, y2, x1, x2`` (each plane holds a pixel)."""
    rows, columns = np.logical_or.reduce(masks, axis=2), np.logical_or.reduce(masks, axis=1)
    return np.stack(
        [
            rows.argmax(axis=1),
            rows.shape[1] - rows[:, ::-1].argmax(axis=1),
            columns.argmax(axis=1),
            columns.shape[1] - columns[:, ::-1].argmax(axis=1),
        ],
        axis=1,
    )


def _narrow_joins_many(masks: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    """:func:`~comclip.grounding.segment_parts._narrow_joins` of every mask: a mask that no
    erosion cuts into pieces decided here, others by the single-mask step."""
    assert EROSIONS == (1, 2)  # the depths decided here
    out: list = [None] * len(masks)
    for batch, plane in _stacks([m.shape for m in masks], 1):
        stack = _stacked(masks, batch, plane, 1)
        once = _eroded(stack)
        cut_once = _plane_counts(ndimage.label(once, PLANE_CROSS)[0])
        cut_twice = _plane_counts(ndimage.label(_eroded(once), PLANE_CROSS)[0])
        piece = _dilated(once, 1) & stack
        sizes, whole = piece.sum(axis=(1, 2)), stack.sum(axis=(1, 2))
        kept = (cut_once == 1) & (sizes >= MIN_SHARE * whole)
        shrunk = np.zeros(len(batch), dtype=bool)
        if kept.any():
            shrunk[kept] = np.abs(_plane_bounds(piece[kept]) - _plane_bounds(stack[kept])).max(axis=1) > SHRINK
        for k, n in enumerate(batch):
            if cut_once[k] > 1 or cut_twice[k] > 1:
                out[n] = list(_narrow_joins(masks[n]))
                continue
            height, width = masks[n].shape
            out[n] = [_regrown(piece[k, 1 : 1 + height, 1 : 1 + width], masks[n])] if shrunk[k] else []
    return out


# --- step 4: distance peaks --------------------------------------------------------------------


def _distance_peaks_many(masks: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    """:func:`~comclip.grounding.segment_parts._distance_peaks` of every mask."""
    out: list = [[] for _ in masks]
    reach = PEAK_WINDOW // 2
    for batch, plane in _stacks([m.shape for m in masks], reach):
        stack = _stacked(masks, batch, plane, reach)
        distance = ndimage.distance_transform_edt(stack.reshape(-1, plane[1])).reshape(stack.shape)
        tops = (distance >= PEAK_LEAST) & (distance == _window_maximum(distance, PEAK_WINDOW))
        planes, ys, xs = np.nonzero(tops)
        if not len(planes):
            continue
        starts = np.flatnonzero(np.diff(planes, prepend=-1))
        spread = np.hypot(
            np.maximum.reduceat(ys, starts) - np.minimum.reduceat(ys, starts),
            np.maximum.reduceat(xs, starts) - np.minimum.reduceat(xs, starts),
        )
        apart = planes[starts][spread > PEAK_APART * PEAK_LEAST]
        if len(apart):
            for k, peaks in _plateaus(distance, tops, apart, (planes, ys - reach, xs - reach)).items():
                out[batch[k]] = list(peak_shares(masks[batch[k]], peaks))
    return out


def _plateaus(distance: np.ndarray, tops: np.ndarray, planes: np.ndarray, where: tuple) -> dict[int, list]:
    """Per plane of ``planes`` with two or more plateaus of ``tops`` (8-connected): each
    plateau's distance and centre in the plane's mask (``where``: the tops' planes, rows and
    columns there, in raster order), summed as ``ndimage.center_of_mass`` sums them."""
    labels, _ = ndimage.label(tops, PLANE_SQUARE)
    first = _plane_starts(labels)
    numbers = labels[tops]  # raster order, as ``where``
    count = np.bincount(numbers, weights=np.ones(len(numbers)))
    centre_y = np.bincount(numbers, weights=where[1].astype(np.float64)) / np.maximum(count, 1)
    centre_x = np.bincount(numbers, weights=where[2].astype(np.float64)) / np.maximum(count, 1)
    found = {}
    for k in planes.tolist():
        if first[k + 1] - first[k] < 2:
            continue
        plateaus = range(first[k] + 1, first[k + 1] + 1)
        radii = ndimage.maximum(distance[k], labels[k], plateaus)
        found[k] = [(r, centre_y[p], centre_x[p]) for r, p in zip(radii, plateaus)]
    return found
