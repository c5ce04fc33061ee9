"""Depth's entities grounded again, each candidate also read completed (``--relations pixels``).

An object behind another shows only what the one in front leaves of it. Its own candidate,
that fragment, reads less like its phrase than a region that merges it with the one in
front, or than a whole object of its colour nearby, and the joint grounding picks those. The
depth reading already knows what a fragment is worth: completed over the other's pixels
(:mod:`comclip.pipeline.completions`), it reads like its phrase again. Here the same is done
before depth is read. For each entity of a depth relation, its first :data:`CANDIDATES`
detections whose boxes touch the region the other entity was given are completed over that
region, and each detection's score gains what its best completion reads better than its own
view, against the entity's phrase (never less: a region in front, or one that a completion
does not restore, gains nothing). Then the caption's entities are grounded together again
with those scores (:func:`~comclip.grounding.assignment.assign`, as before).

Only the backbone's encoders read the views; nothing reads colours or shapes. Plain boxes are
their own completions (see :mod:`~comclip.pipeline.completions`), so a box grounder's
detections gain nothing and keep their places.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from comclip.boxes import Box, bounding_box
from comclip.grounding.assignment import boxes_touch
from comclip.grounding.base import Detection
from comclip.imaging.files import LoadedImage
from comclip.pipeline.completions import completions_over
from comclip.pipeline.pixel_relations import overlapping_entities
from comclip.pipeline.pixel_views import View, embedded_views
from comclip.results import NOT_GROUNDED, Part

#: Each entity's detections (best first) that are read completed. Chosen on development seeds
#: 100 and 101 (`sandbox-bow`, 200 pairs a task, objects grounded by either box, of 1,600 a
#: task): crowded depth 1,522 without; 3 -> 1,535, 6 -> 1,541, 10 -> 1,542; depth 1,562
#: without; 3 -> 1,568, 6 and 10 -> 1,571. 6, the smaller of the plateau.
CANDIDATES = 6
#: A completed view is its region's plain view, completed (not moved or mirrored).
UNMOVED = (0.0, 0.0, False)


class _Entity(NamedTuple):
    """One entity to ground again: the pair it belongs to, its position in the caption, the
    image, its ranked detections, the region the other entity was given and its phrase."""

    pair: tuple[int, int]
    position: int
    image: int
    ranking: Sequence[Detection]
    other: tuple[Box, ...]
    phrase: str


def completed_rankings(
    backbone,
    loaded: list[LoadedImage],
    owner: list[int],
    layouts: dict,
    graphs: dict,
    ranked: dict,
) -> dict[tuple[int, int], list[list[Detection]]]:
    """Per pair whose caption names a depth relation and where some detection gained: its
    entities' rankings (``ranked[pair]``, one per entity) with each detection scored again
    (see the module docstring); ``layouts``: the pairs' parts as first grounded."""
    entities = [e for pair, parts in layouts.items() for e in _wanted(pair, owner[pair[0]], parts, graphs[pair], ranked[pair])]
    if not entities:
        return {}
    asked = [(e, k, _views(e, e.ranking[k], loaded[e.image].image.size)) for e in entities for k in _touching(e)]
    asked = [(e, k, views) for e, k, views in asked if len(views) > 1]  # a completion paints something
    embedded = embedded_views(backbone, loaded, list(dict.fromkeys(v for _, _, views in asked for v in views)))
    phrases = list(dict.fromkeys(e.phrase for e in entities))
    texts = dict(zip(phrases, torch.nn.functional.normalize(backbone.encode_texts(phrases).float(), dim=-1)))
    gains: dict[tuple[tuple[int, int], int], dict[int, float]] = {}  # (pair, entity) -> {rank: gain}
    for e, k, views in asked:
        likeness = [float(embedded[v] @ texts[e.phrase]) for v in views]
        gain = max(likeness[1:]) - likeness[0]
        if gain > 0:  # an entity in two depth relations keeps the larger gain of a detection
            known = gains.setdefault((e.pair, e.position), {})
            known[k] = max(known.get(k, 0.0), gain)
    out: dict[tuple[int, int], list[list[Detection]]] = {}
    for e in entities:
        gained = gains.get((e.pair, e.position))
        if gained:
            again = out.setdefault(e.pair, [list(r) for r in ranked[e.pair]])
            again[e.position] = _rescored(e.ranking, gained)
    return out


def _wanted(pair: tuple[int, int], image: int, parts: list[Part], graph, ranked: Sequence) -> list[_Entity]:
    """The entities of a pair's depth relations, both grounded, each with the other's region."""
    entities = [p for p in parts if p.kind == "entity"]  # in the caption's order
    wanted = []
    for a, b in overlapping_entities(graph):
        if NOT_GROUNDED in entities[a].flags or NOT_GROUNDED in entities[b].flags:
            continue
        for mine, theirs in ((a, b), (b, a)):
            other = tuple(entities[theirs].boxes)
            wanted.append(_Entity(pair, mine, image, ranked[mine], other, entities[mine].phrase))
    return wanted


def _touching(entity: _Entity) -> list[int]:
    """The ranks of the entity's first :data:`CANDIDATES` detections whose boxes touch the other's region."""
    other = bounding_box(entity.other)
    return [k for k, d in enumerate(entity.ranking[:CANDIDATES]) if boxes_touch(bounding_box(d.boxes), other)]


def _views(entity: _Entity, detection: Detection, size: tuple[int, int]) -> list[View]:
    """A detection's plain view, then each completion over the other's region that paints anything."""
    boxes = tuple(b.clipped(*size) for b in detection.boxes)
    painted = completions_over(boxes, entity.other, size)
    return [View(entity.image, boxes)] + [View(entity.image, boxes, jitter=UNMOVED, paint=p) for p in painted if p is not None]


def _rescored(ranking: Sequence[Detection], gains: dict[int, float]) -> list[Detection]:
    """``ranking`` with each detection's gain (by its rank) added to its score, best first again
    (a stable sort: ties keep the grounder's order)."""
    rescored = [Detection(d.boxes, d.score + gains.get(k, 0.0), d.label) for k, d in enumerate(ranking)]
    return sorted(rescored, key=lambda d: -d.score)
