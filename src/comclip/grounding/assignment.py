"""From each entity's ranked detections to the region it is grounded to.

``argmax`` (the paper's way) takes every entity's top detection on its own, so two entities
of one caption often land on the same region ("a cat and a dog": both on the dog). ``joint``
grounds the entities of one caption together: each gets a different region, chosen to
maximise the summed score (an assignment over the entity x region score matrix, solved by
scipy's ``linear_sum_assignment``), unless the caption gives no way to tell them apart (same
query and attributes), in which case they share one.

Regions are compared across entities by their boxes, so it works for every grounder: the clip
grounder ranks one candidate set for every query (identical boxes); a detector finds boxes per
query, and two of its boxes overlapping by IoU >= :data:`SAME_REGION_IOU` count as one region.

A joint assignment can also be told which entities must touch (``touching``): a caption that
says one is in front of or behind the other names two objects that overlap in the image,
whichever is in front. Where the best assignment leaves such a pair apart, the best one in
which they touch is taken, if there is one (the regions' boxes overlap or meet: less than
:data:`TOUCH` pixels apart).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from comclip.boxes import Box, bounding_box
from comclip.grounding.base import Detection
from comclip.registry import Registry

#: Two detections whose bounding boxes overlap this much are one region.
SAME_REGION_IOU = 0.7
#: Two regions touch where their boxes are less than this many pixels apart (overlap or meet):
#: the visible part of an object behind another may have a box that only meets the other's.
TOUCH = 1.0
#: The most assignments tried to make the touching pairs touch (more: the best assignment stands).
MOST_TRIED = 50_000
#: ``--assignment`` choices.
ASSIGNMENTS: Registry[str] = Registry("assignment")
ASSIGNMENTS.add("argmax", "each entity's top detection on its own (the paper)")
ASSIGNMENTS.add("joint", "the entities of a caption grounded together, each to a different region")


@dataclass(frozen=True)
class Grounded:
    """One entity's grounding: the picked detection (None: nothing found), how far its grounder's
    best candidate led the second (None with fewer than two), and whether it was forced to share
    a region with a distinguishable entity (no free region was left)."""

    detection: Detection | None
    margin: float | None = None
    forced_share: bool = False


def ranking_margin(detections: Sequence[Detection]) -> float | None:
    """Best minus second-best score of a ranking (its grounder's confidence gap)."""
    return float(detections[0].score - detections[1].score) if len(detections) >= 2 else None


def assign(
    rankings: Sequence[Sequence[Detection]],
    groups: Sequence[Hashable],
    joint: bool = True,
    union_margin: float | None = None,
    touching: Sequence[tuple[int, int]] = (),
) -> list[Grounded]:
    """Each entity's grounding from its ranked detections (best first). ``groups[k]`` names what
    tells entity ``k`` apart (its query and attributes): entities of one group share a region.
    ``union_margin``: also take the entity's detections scoring within it of the picked one
    (regions picked for other entities excepted). ``touching``: pairs of entities whose regions
    should touch in a joint assignment (see the module docstring)."""
    if not joint:
        return [Grounded(_union(d, d[0] if d else None, union_margin, set()), ranking_margin(d)) for d in rankings]
    first: dict = {}
    for k, group in enumerate(groups):
        first.setdefault(group, k)  # each group's row: its first entity's ranking
    order = {group: r for r, group in enumerate(first)}
    rows = [rankings[k] for k in first.values()]
    regions = _Regions.of(rows)
    picked = _solve(regions.scores)
    pairs = [(order[groups[a]], order[groups[b]]) for a, b in touching if groups[a] != groups[b]]
    if pairs and not _all_touch(regions.firsts, picked, pairs):
        picked = _touching(regions, pairs) or picked
    taken = {column for column in picked[: len(rows)] if column is not None}
    out = []
    for k, group in enumerate(groups):
        detections = rankings[k]
        column = picked[order[group]]
        if column is None:  # more entities than regions: the top detection, shared
            chosen, forced = (detections[0] if detections else None), bool(detections)
        else:
            chosen, forced = regions.best_in(detections, column), False
        others = {regions.firsts[c] for c in taken if c != column}
        out.append(Grounded(_union(detections, chosen, union_margin, others), ranking_margin(detections), forced))
    return out


@dataclass
class _Regions:
    """The distinct regions of some rankings: ``boxes`` (each distinct box met, by its
    number in the order met), ``same`` (:func:`same_region_matrix` of them, by number),
    ``firsts`` (each region's first box: a box joins the first region whose first box it is
    the same region as) and ``scores`` (each ranking's best score in each region, NaN: none)."""

    boxes: dict[Box, int]
    same: np.ndarray
    firsts: list[Box]
    scores: np.ndarray

    @classmethod
    def of(cls, rows: Sequence[Sequence[Detection]]) -> _Regions:
        found = [(r, bounding_box(d.boxes), d.score) for r, detections in enumerate(rows) for d in detections]
        boxes = {box: n for n, box in enumerate(dict.fromkeys(box for _, box, _ in found))}
        rows_of_same = same_region_lists(list(boxes), list(boxes))
        same = np.asarray(rows_of_same, dtype=bool).reshape(len(boxes), len(boxes))
        column_of: dict[Box, int] = {}
        firsts: list[Box] = []
        for box, n in boxes.items():
            column = next((c for c, first in enumerate(firsts) if rows_of_same[boxes[first]][n]), None)
            if column is None:
                firsts.append(box)
                column = len(firsts) - 1
            column_of[box] = column
        scores = np.full((len(rows), len(firsts)), np.nan)
        for r, box, score in reversed(found):  # ranked: the first is the best, so it is written last
            scores[r, column_of[box]] = score
        return cls(boxes, same, firsts, scores)

    def best_in(self, detections: Sequence[Detection], column: int) -> Detection | None:
        """The first of ``detections`` in region ``column``."""
        first = self.firsts[column]
        for detection in detections:
            box = bounding_box(detection.boxes)
            n = self.boxes.get(box)
            if self.same[self.boxes[first], n] if n is not None else same_region(box, first):
                return detection
        return None


def _all_touch(regions: Sequence[Box], picked: Sequence[int | None], pairs: Sequence[tuple[int, int]]) -> bool:
    """Whether every pair of rows was given regions that touch (a row without one: no)."""
    for a, b in pairs:
        first, second = picked[a], picked[b]
        if first is None or second is None or not boxes_touch(regions[first], regions[second]):
            return False
    return True


def boxes_touch(a: Box, b: Box) -> bool:
    """Whether two boxes overlap or meet (less than :data:`TOUCH` pixels apart)."""
    return a.x1 - TOUCH < b.x2 and b.x1 - TOUCH < a.x2 and a.y1 - TOUCH < b.y2 and b.y1 - TOUCH < a.y2


def _touching(regions: _Regions, pairs: Sequence[tuple[int, int]]) -> list[int | None] | None:
    """The best assignment of a region to every row (distinct regions, each with a score for
    its row) in which every pair of rows touches; None where there is none, or where there are
    more than :data:`MOST_TRIED` assignments to try. Ties: the first found, rows taking regions
    in their order."""
    rows, columns = regions.scores.shape
    if rows > columns or math.perm(columns, rows) > MOST_TRIED:
        return None
    scores = regions.scores.tolist()
    touch = [[boxes_touch(a, b) for b in regions.firsts] for a in regions.firsts]
    best: tuple[float, tuple[int, ...]] | None = None
    for option in itertools.permutations(range(columns), rows):
        if not all(touch[option[a]][option[b]] for a, b in pairs):
            continue
        values = [scores[r][c] for r, c in enumerate(option)]
        total = sum(values)
        if all(math.isfinite(v) for v in values) and (best is None or total > best[0] + TIE):
            best = (total, option)
    return None if best is None else list(best[1])


def same_region(a: Box, b: Box) -> bool:
    """Whether two boxes are one region for the assignment (equal, or IoU >= :data:`SAME_REGION_IOU`)."""
    return a == b or a.iou(b) >= SAME_REGION_IOU


#: Box pairs up to which :func:`same_region_matrix` compares them one by one.
SMALL = 16


def same_region_lists(a: Sequence[Box], b: Sequence[Box]) -> list[list[bool]]:
    """:func:`same_region_matrix` as lists (rows of ``a``), for callers that read it in Python."""
    if len(a) * len(b) <= SMALL:  # a few boxes (the sandbox's candidates): Python beats array set-up
        return [[x is y or same_region(x, y) for y in b] for x in a]
    return same_region_matrix(a, b).tolist()


def same_region_matrix(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    """``[len(a), len(b)]``: :func:`same_region` of every pair, computed at once (the IoU in the
    same float64 operations as :meth:`Box.iou`, so the answers are the same)."""
    if len(a) * len(b) <= SMALL:
        return np.asarray(same_region_lists(a, b), dtype=bool).reshape(len(a), len(b))
    first = np.asarray([[x.x1, x.y1, x.x2, x.y2] for x in a], dtype=np.float64)[:, None, :]
    second = np.asarray([[x.x1, x.y1, x.x2, x.y2] for x in b], dtype=np.float64)[None, :, :]
    inter = _areas(np.maximum(first, second)[..., :2], np.minimum(first, second)[..., 2:])
    union = _areas(first[..., :2], first[..., 2:]) + _areas(second[..., :2], second[..., 2:]) - inter
    safe = np.where(union > 0, union, 1.0)
    iou = np.where(union > 0, inter / safe, 0.0)
    return np.all(first == second, axis=-1) | (iou >= SAME_REGION_IOU)


def _areas(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    sides = np.maximum(0.0, high - low)
    return sides[..., 0] * sides[..., 1]


def _solve(scores: np.ndarray) -> list[int | None]:
    """The column given to each row by a maximum-score assignment (None: none left for it, or
    the row has no detection in any free region)."""
    from scipy.optimize import linear_sum_assignment

    if scores.size == 0:
        return [None] * scores.shape[0]
    small = _solve_small(scores.tolist()) if scores.shape[0] <= 2 and scores.shape[1] <= SMALL else None
    if small is not None:
        return small
    known = np.isfinite(scores)
    floor = (np.nanmin(scores) if known.any() else 0.0) - 1e6  # a missing entry is never worth taking
    rows, columns = linear_sum_assignment(np.where(known, scores, floor), maximize=True)
    picked: list[int | None] = [None] * scores.shape[0]
    for r, c in zip(rows, columns):
        picked[r] = int(c) if known[r, c] else None
    return picked


def _solve_small(rows: list[list[float]]) -> list[int | None] | None:
    """:func:`_solve` of one or two rows by trying every assignment (scipy's set-up costs more
    than the few sums); None where the best is not clear of the next (scipy decides ties)."""
    finite = [v for row in rows for v in row if math.isfinite(v)]
    floor = (min(finite) if finite else 0.0) - 1e6
    value = [[v if math.isfinite(v) else floor for v in row] for row in rows]
    columns = range(len(rows[0]))
    options: list[tuple[tuple[int | None, ...], float]]
    if len(rows) == 1:
        options = [((c,), value[0][c]) for c in columns]
    elif len(rows[0]) > 1:
        options = [((a, b), value[0][a] + value[1][b]) for a in columns for b in columns if a != b]
    else:  # two rows, one column: one row goes without
        options = [((0, None), value[0][0]), ((None, 0), value[1][0])]
    options.sort(key=lambda option: -option[1])
    if len(options) > 1 and options[0][1] - options[1][1] < TIE:
        return None
    return [c if c is not None and math.isfinite(rows[r][c]) else None for r, c in enumerate(options[0][0])]


#: Assignments whose totals differ by less than this are a tie for :func:`_solve_small`.
TIE = 1e-9


def _union(
    detections: Sequence[Detection], chosen: Detection | None, margin: float | None, excluded: set[Box]
) -> Detection | None:
    """``chosen``, or with a margin the union of it and every detection scoring within the margin
    of it, as the argmax pick has always done (regions picked for other entities left out)."""
    if chosen is None or margin is None:
        return chosen
    close = [chosen] + [
        d
        for d in detections
        if d is not chosen
        and d.score >= chosen.score - margin
        and not any(same_region(bounding_box(d.boxes), r) for r in excluded)
    ]
    if chosen is detections[0]:  # the argmax pick: the ranking's order, as before
        close = [d for d in detections if d in close]
    boxes = tuple(dict.fromkeys(b for d in close for b in d.boxes))
    return Detection(boxes=boxes, score=chosen.score, label=chosen.label)


def with_attributes(ranked: Sequence[Detection], by_phrase: Sequence[Detection], weight: float) -> list[Detection]:
    """``ranked`` (an entity's detections by its head noun) re-ranked by ``score + weight x``
    its phrase's score on the same region (the phrase's lowest score where it has none there):
    the attributes ("red" in "red circle") break near-ties between candidates of the head."""
    if not by_phrase:
        return list(ranked)
    floor = min(d.score for d in by_phrase)
    same = same_region_lists([bounding_box(d.boxes) for d in ranked], [bounding_box(d.boxes) for d in by_phrase])
    first = [row.index(True) if True in row else -1 for row in same]  # the first phrase detection there
    combined = [
        Detection(d.boxes, d.score + weight * (by_phrase[k].score if k >= 0 else floor), d.label) for d, k in zip(ranked, first)
    ]
    return sorted(combined, key=lambda d: -d.score)
