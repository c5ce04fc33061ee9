"""Spatial relations checked on the grounded boxes (``--relations geometry``; beyond the paper).

Sub-images cannot tell "a circle left of a square" from "a square left of a circle": both
images hold the same objects, a relation's sub-image is the union of both boxes, and a
bag-of-words text tower gives both captions one embedding. But the pipeline knows where it
grounded each entity, so a spatial predicate can be checked on the subject's and object's
boxes, training-free.

Each spatial predicate maps to one rule of :data:`RULES`, possibly with subject and object
swapped ("right of" is "left of" reversed). A rule gives a soft score in [0, 1] from the two
boxes, normalised by the image's size, or None where boxes cannot say (depth without
overlap). The pair's score gains ``weight * mean(g - 1/2)`` over its verified relations, so
a relation the boxes confirm raises it, one they contradict lowers it, and no evidence
leaves it as it was. Predicates that are not spatial (actions, "with") are untouched; a
predicate ending in a spatial phrase ("sit on", "stand next to") is checked by that phrase.
Entities grounded to the same box, or not grounded, give no evidence (flag
``relation_unverified``). "In" is containment either way ("a man in a shirt"). Depth ("in front of", "behind") is read only from overlapping boxes
(the lower bottom edge is nearer), and actions are beyond boxes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from comclip.boxes import Box, bounding_box

#: ``--relations`` values: off (the paper's method), geometry, or pixels (geometry, and the
#: relations that boxes cannot show read from sub-images: see :data:`PIXEL_RULES`).
RELATION_MODES = ("off", "geometry", "pixels")
#: How far (as a share of the image side) a centre offset makes a direction clear: sigmoid slope.
SOFTNESS = 0.05
RELATION_UNVERIFIED = "relation_unverified"
Rule = Callable[[Box, Box, float, float], "float | None"]


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-max(-60.0, min(60.0, x))))


def left_of(a: Box, b: Box, width: float, height: float) -> float:
    """a's centre left of b's."""
    return _sigmoid((b.centre[0] - a.centre[0]) / width / SOFTNESS)


def above(a: Box, b: Box, width: float, height: float) -> float:
    """a's centre above b's (image y grows downwards)."""
    return _sigmoid((b.centre[1] - a.centre[1]) / height / SOFTNESS)


def _horizontal_overlap(a: Box, b: Box) -> float:
    """The shared x-range as a share of the narrower box."""
    shared = min(a.x2, b.x2) - max(a.x1, b.x1)
    return max(0.0, shared) / max(min(a.width, b.width), 1e-9)


def on_top_of(a: Box, b: Box, width: float, height: float) -> float:
    """a above b and over it (sharing its x-range)."""
    return above(a, b, width, height) * _horizontal_overlap(a, b)


def near(a: Box, b: Box, width: float, height: float) -> float:
    """1 when the boxes touch or overlap, falling to 0 at a gap of a third of the image diagonal."""
    gap_x = max(0.0, max(a.x1, b.x1) - min(a.x2, b.x2))
    gap_y = max(0.0, max(a.y1, b.y1) - min(a.y2, b.y2))
    return max(0.0, 1 - math.hypot(gap_x, gap_y) / (math.hypot(width, height) / 3))


def inside(a: Box, b: Box, width: float, height: float) -> float:
    """The share of a that lies within b."""
    return a.intersection(b).area / max(a.area, 1e-9)


def contained(a: Box, b: Box, width: float, height: float) -> float:
    """Either box within the other: "in" is said both ways ("a dog in a car", "a man in a shirt")."""
    return max(inside(a, b, width, height), inside(b, a, width, height))


def in_front_of(a: Box, b: Box, width: float, height: float) -> float | None:
    """Only for overlapping boxes: the one whose bottom edge is lower stands nearer."""
    if inside(a, b, width, height) == 0:
        return None
    return _sigmoid((a.y2 - b.y2) / height / SOFTNESS)


#: Predicate -> (rule, whether subject and object swap places). Lower case, single spaces.
RULES: dict[str, tuple[Rule, bool]] = {
    **dict.fromkeys(
        (
            "left of",
            "to the left of",
            "on the left of",
            "at the left of",
            "on the left side of",
            "to the left side of",
            "at the left side of",
        ),
        (left_of, False),
    ),
    **dict.fromkeys(
        (
            "right of",
            "to the right of",
            "on the right of",
            "at the right of",
            "on the right side of",
            "to the right side of",
            "at the right side of",
        ),
        (left_of, True),
    ),
    **dict.fromkeys(("above", "over", "at the top of"), (above, False)),
    **dict.fromkeys(("below", "at the bottom of"), (above, True)),
    **dict.fromkeys(("on", "on top of", "atop", "onto", "upon"), (on_top_of, False)),
    **dict.fromkeys(("under", "underneath", "beneath"), (on_top_of, True)),
    **dict.fromkeys(("next to", "beside", "near", "close to", "by", "alongside"), (near, False)),
    **dict.fromkeys(("inside", "inside of", "within"), (inside, False)),
    **dict.fromkeys(("in",), (contained, False)),
    **dict.fromkeys(("in front of",), (in_front_of, False)),
    **dict.fromkeys(("behind", "in back of"), (in_front_of, True)),
}


def spatial_rule(predicate: str) -> tuple[Rule, bool] | None:
    """The rule of a predicate, or of the longest spatial phrase it ends with ("sit on" -> on);
    None for predicates that are not spatial."""
    return _by_ending(RULES, predicate)


def _by_ending(table: dict, predicate: str):
    """``table``'s entry for the predicate or the longest phrase it ends with (lower case,
    single spaces), else None."""
    words = " ".join(predicate.lower().split()).split(" ")
    for start in range(len(words)):
        entry = table.get(" ".join(words[start:]))
        if entry is not None:
            return entry
    return None


def relation_score(predicate: str, subject: Sequence[Box], obj: Sequence[Box], width: float, height: float) -> float | None:
    """The soft truth of "subject <predicate> object" from their boxes (an entity grounded to
    several boxes is their bounding box); None where the predicate is not spatial or the
    boxes cannot say."""
    rule = spatial_rule(predicate)
    if rule is None:
        return None
    function, swapped = rule
    a, b = bounding_box(subject), bounding_box(obj)
    if a == b:
        return None
    return function(b, a, width, height) if swapped else function(a, b, width, height)


def geometry_bonus(scores: Sequence[float], weight: float) -> float:
    """``weight * mean(g - 1/2)`` over the verified relations' scores (0 without any)."""
    return weight * sum(g - 0.5 for g in scores) / len(scores) if scores else 0.0


#: Relations that the boxes cannot decide (the same boxes hold either way), read from pixels by
#: ``--relations pixels``: predicate -> (probe, whether subject and object swap places).
#: ``occlusion`` (boxes that overlap): each entity's sub-image is scored against its own phrase
#: (its likeness); the entity drawn whole is in front, the one partly hidden behind it is less
#: like its phrase. ``between``: the entity that points looks more like the doer ("A point at")
#: than the other, and what points from it crosses the gap between the boxes (where they are
#: apart), so the gap looks more like it (see :mod:`comclip.pipeline.pixel_relations`). The
#: subject-minus-object difference decides (see :func:`pixel_score`).
PIXEL_RULES: dict[str, tuple[str, bool]] = {
    "in front of": ("occlusion", False),
    **dict.fromkeys(("behind", "in back of"), ("occlusion", True)),
    **dict.fromkeys(("point at", "points at", "pointing at", "point to", "points to", "pointing to"), ("between", False)),
}
#: A change of this many cosine points between the two entities is a clear pixel verdict: sigmoid slope.
PIXEL_SOFTNESS = 0.02


def pixel_rule(predicate: str) -> tuple[str, bool] | None:
    """The pixel probe of a predicate (or of the longest such phrase it ends with), else None."""
    return _by_ending(PIXEL_RULES, predicate)


def probe_region(probe: str, a: Box, b: Box) -> Box | None:
    """The probe's box for boxes ``a`` and ``b``, or None where the relation cannot show there:
    ``occlusion``, their overlap (None: apart, nothing hides anything); ``between``, the gap
    on each axis the boxes are apart on and their shared range on the other (None: they
    overlap on both axes)."""
    if probe == "occlusion":
        shared = a.intersection(b)
        return shared if shared.area > 0 else None
    spans, apart = [], []
    for a1, a2, b1, b2 in ((a.x1, a.x2, b.x1, b.x2), (a.y1, a.y2, b.y1, b.y2)):
        gap = (a2, b1) if a2 <= b1 else (b2, a1) if b2 <= a1 else None
        apart.append(gap is not None)
        spans.append(gap or (max(a1, b1), min(a2, b2)))
    if not any(apart):
        return None
    (x1, x2), (y1, y2) = spans
    return Box(x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


def pixel_score(evidence: tuple[float, float], swapped: bool) -> float | None:
    """The soft truth of the relation from each entity's evidence ``(subject, object)`` (its
    likeness for ``occlusion``, its agent's gain and likeness to the gap for ``between``): the
    sigmoid of their difference over :data:`PIXEL_SOFTNESS`; None on a tie."""
    subject, obj = evidence
    difference = (obj - subject) if swapped else (subject - obj)
    if difference == 0:
        return None
    return _sigmoid(difference / PIXEL_SOFTNESS)
