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
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from ..boxes import Box, bounding_box
from ..registry import Registry
from .base import Detection

#: Two detections whose bounding boxes overlap this much are one region.
SAME_REGION_IOU = 0.7
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
    rankings: Sequence[Sequence[Detection]], groups: Sequence[Hashable], joint: bool = True, union_margin: float | None = None
) -> list[Grounded]:
    """Each entity's grounding from its ranked detections (best first). ``groups[k]`` names what
    tells entity ``k`` apart (its query and attributes): entities of one group share a region.
    ``union_margin``: also take the entity's detections scoring within it of the picked one
    (regions picked for other entities excepted)."""
    if not joint:
        return [Grounded(_union(d, d[0] if d else None, union_margin, set()), ranking_margin(d)) for d in rankings]
    first: dict = {}
    for k, group in enumerate(groups):
        first.setdefault(group, k)  # each group's row: its first entity's ranking
    order = {group: r for r, group in enumerate(first)}
    rows = [rankings[k] for k in first.values()]
    regions, scores = _region_matrix(rows)
    picked = _solve(scores)
    taken = {column for column in picked[: len(rows)] if column is not None}
    out = []
    for k, group in enumerate(groups):
        detections = rankings[k]
        column = picked[order[group]]
        if column is None:  # more entities than regions: the top detection, shared
            chosen, forced = (detections[0] if detections else None), bool(detections)
        else:
            chosen, forced = _best_in_region(detections, regions[column]), False
        others = {regions[c] for c in taken if c != column}
        out.append(Grounded(_union(detections, chosen, union_margin, others), ranking_margin(detections), forced))
    return out


def _region_matrix(rows: Sequence[Sequence[Detection]]) -> tuple[list[Box], np.ndarray]:
    """Distinct regions over all rows' detections, and each row's best score in each (NaN: none)."""
    regions: list[Box] = []
    best: dict[tuple[int, int], float] = {}
    for r, detections in enumerate(rows):
        for detection in detections:
            column = _region_of(bounding_box(detection.boxes), regions)
            best.setdefault((r, column), detection.score)  # ranked: the first is the best
    scores = np.full((len(rows), len(regions)), np.nan)
    for (r, column), value in best.items():
        scores[r, column] = value
    return regions, scores


def same_region(a: Box, b: Box) -> bool:
    """Whether two boxes are one region for the assignment (equal, or IoU >= :data:`SAME_REGION_IOU`)."""
    return a == b or a.iou(b) >= SAME_REGION_IOU


def _region_of(box: Box, regions: list[Box]) -> int:
    for column, region in enumerate(regions):
        if same_region(region, box):
            return column
    regions.append(box)
    return len(regions) - 1


def _solve(scores: np.ndarray) -> list[int | None]:
    """The column given to each row by a maximum-score assignment (None: none left for it, or
    the row has no detection in any free region)."""
    from scipy.optimize import linear_sum_assignment

    if scores.size == 0:
        return [None] * scores.shape[0]
    known = np.isfinite(scores)
    floor = (np.nanmin(scores) if known.any() else 0.0) - 1e6  # a missing entry is never worth taking
    rows, columns = linear_sum_assignment(np.where(known, scores, floor), maximize=True)
    picked: list[int | None] = [None] * scores.shape[0]
    for r, c in zip(rows, columns):
        picked[r] = int(c) if known[r, c] else None
    return picked


def _best_in_region(detections: Sequence[Detection], region: Box) -> Detection | None:
    return next((d for d in detections if same_region(bounding_box(d.boxes), region)), None)


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
    phrase_boxes = [(bounding_box(d.boxes), d.score) for d in by_phrase]

    def phrase_score(detection: Detection) -> float:
        box = bounding_box(detection.boxes)
        return next((score for other, score in phrase_boxes if same_region(other, box)), floor)

    combined = [Detection(d.boxes, d.score + weight * phrase_score(d), d.label) for d in ranked]
    return sorted(combined, key=lambda d: -d.score)
