"""Relations only pixels show, read from sub-images (``--relations pixels``; beyond the paper).

"A in front of B" and "B in front of A" hold the same boxes, and so do "A points at B" and
"B points at A": no rule on boxes and no union sub-image tells them apart. What differs is
in the pixels: which of two overlapping entities is drawn whole, and which one reaches across
the gap between them. Each probe gives the subject and the object a piece of evidence:

- ``occlusion``: each entity's sub-image scored against the entity's own phrase (its
  likeness): the one drawn whole is more like its phrase than the one partly hidden. The
  likeness is read over the sub-image moved by a pixel or three and mirrored
  (:data:`~comclip.pipeline.pixel_views.JITTER_SHIFTS`): one view's cosine moves with where
  the edges fall on the encoder's patch grid, enough to undo a bite out of a shape (on
  `sandbox-bow`, one view picks the wrong entity in about one image in five, the mean of 32
  in one in eight); and the one drawn whole reads as its phrase in every view, so the
  cosines' spread counts against it (:data:`JITTER_SPREAD_WEIGHT`); and the most likeness
  an entity gains when completed (the other's pixels that a closing of its region, or its
  convex hull, reaches, painted in its own colour: :mod:`comclip.pipeline.completions`)
  counts against it (:data:`COMPLETION_WEIGHT`): the one behind gets back what it lost, the
  one in front only grows, and the entity is compared with itself, so how well its phrase
  matches in general cancels. It is read where the boxes overlap, and where they only meet
  (an object behind may show only beyond the front one's box);
- ``between``: two readings, added. The agent: each entity's sub-image with the gap between
  the boxes added (the entity and what it reaches across with) scored against "A
  <predicate>" ("a red circle point at"), minus its likeness: how much more like the doer
  it looks than like itself. And the gap seen closely (its region alone, cut to a square and
  shown at the encoder's size) against each entity seen the same way, image to image (times
  :data:`GAP_WEIGHT`): what points from one entity to the other is part of it (a pointer, an
  arm), so the gap looks more like the entity it leaves. A gap is mostly fill, so that cosine
  also leans towards the entity that shows more fill around it; the same comparison is made
  again with the blank view (the fill alone, at the image's size) taken out of each embedding
  (times :data:`BLANK_FREE_WEIGHT`), where what is left is what the views show, not how much
  of them is fill. Where the boxes leave no gap, or a sliver (a grounded box took in what its
  entity reaches out with), the gap is taken between the entities' bodies instead: each one's
  pixels less what is thinner than an opening (:data:`BODY_OPENING`), which a pointer or an
  arm is. Where the bodies leave no gap either, the agent reading alone decides, on the
  sub-images as grounded.

:func:`comclip.composition.geometry.pixel_score` turns the subject's and object's evidence
into the relation's soft truth, which the geometric check adds like a box rule's (marked
``"pixels"`` in ``--details``). Only the backbone's encoders are used, on regions and
phrases: no rule reads colours or shapes. Where depth cannot show (boxes apart, not even
meeting) the box rules decide, or nothing does (``relation_unverified``).

The views are made and encoded in :mod:`comclip.pipeline.pixel_views`: the image's background
colour outside their region, through the cache by content key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage

from comclip.boxes import Box, MaskedBox, bounding_box, region_boxes
from comclip.composition.geometry import pixel_rule, pixel_score, probe_region
from comclip.grounding.assignment import boxes_touch
from comclip.imaging.files import LoadedImage
from comclip.imaging.subimages import region_mask
from comclip.pipeline.completions import completions
from comclip.pipeline.pixel_views import View, embedded_views, jitters
from comclip.results import NOT_GROUNDED, Part

#: The weights of pointing's gap readings against the agent's gain: the gap against each entity,
#: zoomed, image to image, and the same with the blank view taken out of each embedding. Chosen
#: on development seeds 100 and 101 (200 pairs a task, group score, the mean of both models'
#: direction and crowded direction, eight cells): gap weight 1 -> 81.8, 2 -> 84.4, 3 -> 84.8,
#: 4 -> 84.8, 8 -> 84.0; then with 3, the blank-free reading 0 -> 84.8, 2 -> 86.2, 4 -> 85.8
#: (alone, without the plain one, 3 and 5 read 4-6 points less on `sandbox-bow`).
GAP_WEIGHT = 3.0
BLANK_FREE_WEIGHT = 2.0
#: A gap at most this many pixels across is a sliver: the boxes' gap is then taken between the
#: entities' bodies (:func:`_gap`).
SLIVER = 2
#: The radius of the opening that finds an entity's body, as a share of the image's shorter
#: side (2 pixels at 64): what is thinner than twice it is dropped. Chosen on development seeds
#: 100 and 101 (the eight cells of :data:`GAP_WEIGHT`): 86.2 without; radius 1, 2, 3 and 4
#: pixels 87.1, 88.9, 89.1 and 87.7.
BODY_OPENING = 1 / 32

#: How much the spread of an entity's jittered cosines counts against its likeness: the one
#: drawn whole reads as its phrase in every view, the one partly hidden in some more than in
#: others. Chosen on development seeds 100 and 101 (the images right of 400 a cell, the
#: likeness alone, summed over both models' depth and crowded depth, eight cells): 0 -> 2,839,
#: 0.5 -> 2,894, 1 -> 2,920, 1.5 -> 2,921, 2 -> 2,924, 3 -> 2,922 (the spread alone: 2,879);
#: 1, the smallest of the plateau.
JITTER_SPREAD_WEIGHT = 1.0
#: How much the likeness an entity gains when completed counts against it: each completion
#: (:func:`~comclip.pipeline.completions.completions`: the closing, the convex hull) paints the
#: other's pixels it reaches in the entity's colour, and the most like its phrase of the plain
#: view and the completed ones is taken. The one behind has a bite where the one in front lies,
#: which a completion fills, so a completed view reads more like its phrase; the one in front is
#: drawn whole, and what a completion adds only makes it less like its phrase, so it gains
#: nothing. The gain compares an entity with itself, so how well its phrase matches in general
#: (a triangle behind still reads as a triangle) cancels: the likeness alone told the two
#: images of a pair apart better than the two captions of an image. Chosen on development
#: seeds 100 and 101. First `sandbox-bow` offline (the likeness without the overlap reading, the
#: images and the pairs with both images right, of 800 and 400 a task, depth + crowded depth):
#: the closing alone, its likeness itself subtracted (weight 1; 0 -> 1,436 / 638) 1,465 / 666;
#: the best of the plain view, the closing and the hull, weight 1 -> 1,475 / 677, 1.5 -> 1,481
#: / 682, 2 -> 1,485 / 686, 3 -> 1,485 / 685, 4 -> 1,485 / 685 (closings of 6, 12 and 20
#: pixels and the hull: 1,485 / 686 at 2; the hull alone 1,478 / 679; the whole of the other's
#: pixels as a fourth, 1,474 / 675; the true shape of the one behind in place of the
#: completions, its likeness itself subtracted, weight 2: 1,475 / 676). Then the weight by the
#: group score (200 pairs a task, the mean of both models' depth and crowded depth, eight
#: cells; the closing alone, weight 1: 84.6): 1 -> 84.8, 2 -> 86.4, 3 -> 86.7, 4 -> 86.8; 3,
#: the smaller of the plateau. Those cells still added a second reading (the boxes' overlap
#: zoomed against each entity's own pixels there, times 0.1; chosen before the completions).
#: With the completions it lost: weight 0 -> 87.8, 0.1 -> 86.7, 0.2 lower again on all four
#: `sandbox-bow` cells, so depth now reads the likeness alone.
COMPLETION_WEIGHT = 3.0


class _Relation(NamedTuple):
    """A relation to read from pixels, its entities both grounded in image ``image``."""

    image: int
    key: tuple[int, str, int]  # (subject, predicate, object)
    probe: str
    swapped: bool
    region: Box | None  # the overlap (occlusion) or the gap (between); None where there is none
    subject: Part
    obj: Part
    completions: tuple[tuple[MaskedBox | None, ...], ...] = ()  # occlusion: each entity's, see completions()

    @property
    def readable(self) -> bool:
        """Whether pixels can decide it: depth needs boxes that overlap or meet (an object
        behind may show only beyond the front one's box: the likeness alone reads it then);
        pointing reads its agent even where the boxes leave no gap."""
        if self.region is not None or self.probe == "between":
            return True
        return boxes_touch(bounding_box(self.subject.boxes), bounding_box(self.obj.boxes))


def pixel_checks(
    backbone, loaded: list[LoadedImage], owner: list[int], layouts: dict, graphs: dict, phrases: dict
) -> dict[tuple[int, int], dict[tuple[int, str, int], float | None]]:
    """Per pair ``(i, j)``, the pixel verdict of each of its relations that boxes cannot show
    ``{(subject, predicate, object): g or None}``; ``graphs[(i, j)]`` is the pair's scene
    graph, ``phrases`` the phrase embeddings by text (the agent texts are encoded here)."""
    wanted = {
        pair: _wanted(owner[pair[0]], parts, graphs[pair], loaded[owner[pair[0]]].image.size) for pair, parts in layouts.items()
    }
    shown = [r for found in wanted.values() for r in found if r.readable]
    views = [view for r in shown for view in _views(r)]
    embedded = embedded_views(backbone, loaded, list(dict.fromkeys(views)))
    agents = list(dict.fromkeys(text for r in shown if r.probe == "between" for text in _agent_texts(r)))
    texts = {**phrases, **(dict(zip(agents, backbone.encode_texts(agents))) if agents else {})}
    out: dict = {}
    for pair, found in wanted.items():
        for relation in found:
            out.setdefault(pair, {})[relation.key] = _verdict(relation, embedded, texts)
    return out


def overlapping_entities(graph) -> list[tuple[int, int]]:
    """The entities (by position) that a depth relation names: whichever is in front, the two
    overlap in the image, so the joint grounding makes their regions touch where it can (see
    :mod:`comclip.grounding.assignment`); depth cannot be read from regions apart."""
    position = {e.id: k for k, e in enumerate(graph.entities)}
    return [
        (position[r.subject], position[r.object])
        for r in graph.relations
        if (pixel_rule(r.predicate) or ("",))[0] == "occlusion" and r.subject in position and r.object in position
    ]


def _verdict(relation: _Relation, embedded: dict[View, torch.Tensor], texts: dict) -> float | None:
    """The relation's soft truth from its views (None where it cannot show, or on a tie)."""
    if not relation.readable:
        return None
    views = [embedded[view] for view in _views(relation)]
    parts = (relation.subject, relation.obj)
    if relation.probe != "between":  # occlusion: each entity's likeness, against itself completed
        split = len(views) // 2  # the subject's views, then the object's
        likeness = [
            _completed_likeness(views[:split], texts[parts[0].phrase]),
            _completed_likeness(views[split:], texts[parts[1].phrase]),
        ]
        return pixel_score((likeness[0], likeness[1]), relation.swapped)
    # The agent: each entity, with the gap where there is one, against "A <predicate>", minus its likeness.
    likeness = [_cosine(view, texts[part.phrase]) for view, part in zip(views, parts)]
    reaching = views[2:4] if relation.region is not None else views[:2]
    evidence = [_cosine(view, texts[text]) - like for view, text, like in zip(reaching, _agent_texts(relation), likeness)]
    if relation.region is not None:  # and the gap against each entity, image to image, seen zoomed
        gap, subject, obj, blank = views[4:8]
        evidence = [e + _gap_reading(gap, entity, blank) for e, entity in zip(evidence, (subject, obj))]
    return pixel_score((evidence[0], evidence[1]), relation.swapped)


def _completed_likeness(views: Sequence[torch.Tensor], phrase: torch.Tensor) -> float:
    """An entity's depth likeness from its jittered views, plain and then each completed: the
    plain views' steady likeness, less :data:`COMPLETION_WEIGHT` times what the best of the
    completed ones gains over it (nothing where none reads more like the phrase)."""
    count = len(jitters())
    readings = [_steady_likeness(views[k : k + count], phrase) for k in range(0, len(views), count)]
    return readings[0] - COMPLETION_WEIGHT * (max(readings) - readings[0])


def _steady_likeness(views: Sequence[torch.Tensor], phrase: torch.Tensor) -> float:
    """An entity's likeness from its jittered views (all shown): their cosines' mean with its
    phrase, less :data:`JITTER_SPREAD_WEIGHT` times their standard deviation."""
    cosines = torch.stack(list(views)) @ phrase.float()
    return float(cosines.mean() - JITTER_SPREAD_WEIGHT * cosines.std())


def _gap_reading(gap: torch.Tensor, entity: torch.Tensor, blank: torch.Tensor) -> float:
    """How much the gap looks like the entity, both zoomed, image to image: plainly (times
    :data:`GAP_WEIGHT`), and with the blank view taken out of both (times
    :data:`BLANK_FREE_WEIGHT`), so that how much of each view is fill does not decide."""
    return GAP_WEIGHT * _cosine(gap, entity) + BLANK_FREE_WEIGHT * _cosine(_unit(gap - blank), _unit(entity - blank))


def _unit(vector: torch.Tensor) -> torch.Tensor | None:
    """``vector`` scaled to length 1; None where it is 0 (a view that shows only fill)."""
    norm = vector.norm()
    return None if norm == 0 else vector / norm


def _cosine(first: torch.Tensor | None, second: torch.Tensor | None) -> float:
    """The cosine of two unit embeddings; 0 where either is None (a view that showed only fill,
    with the blank view taken out: nothing of it looks like anything)."""
    return 0.0 if first is None or second is None else float(first @ second.float())


def _agent_texts(relation: _Relation) -> tuple[str, str]:
    """The subject and the object named as the relation's doer: "a red circle point at"."""
    predicate = relation.key[1]
    return f"{relation.subject.phrase} {predicate}", f"{relation.obj.phrase} {predicate}"


def _wanted(image: int, parts: list[Part], graph, size: tuple[int, int]) -> list[_Relation]:
    """The pair's relations to read from pixels whose entities were both grounded (``size``:
    the image's width and height)."""
    grounded = {p.entities[0]: p for p in parts if p.kind == "entity" and NOT_GROUNDED not in p.flags}
    wanted = []
    for relation in graph.relations:
        rule = pixel_rule(relation.predicate)
        subject, obj = grounded.get(relation.subject), grounded.get(relation.object)
        if rule is None or subject is None or obj is None:
            continue
        region = probe_region(rule[0], bounding_box(subject.boxes), bounding_box(obj.boxes))
        if rule[0] == "between" and (region is None or min(region.width, region.height) <= SLIVER):
            region = _gap(subject.boxes, obj.boxes, size) or region
        key = (relation.subject, relation.predicate, relation.object)
        painted = completions(subject.boxes, obj.boxes, size) if rule[0] == "occlusion" else ()
        wanted.append(_Relation(image, key, *rule, region, subject, obj, painted))
    return wanted


def _gap(subject: Sequence[Box], obj: Sequence[Box], size: tuple[int, int]) -> Box | None:
    """The gap between two entities' bodies (see :func:`_body`), where their boxes leave none
    or a sliver; None where the bodies leave none either."""
    return probe_region("between", _body(subject, size), _body(obj, size))


def _body(boxes: Sequence[Box], size: tuple[int, int]) -> Box:
    """The bounds of an entity's pixels after an opening with a square of radius
    :data:`BODY_OPENING` times the image's shorter side, which drops what is thinner than the
    square (a pointer, an arm); the region's own bounds where nothing is left."""
    width, height = size
    side = 2 * max(1, round(BODY_OPENING * min(width, height))) + 1
    x1, y1, x2, y2 = bounding_box(boxes).clipped(width, height).pixels()
    x1, y1 = max(0, x1 - side), max(0, y1 - side)  # the region and a margin: zeros beyond it either way
    mask = region_mask(region_boxes(boxes), width, height)[y1 : y2 + side, x1 : x2 + side].astype(np.uint8)
    opened = ndimage.maximum_filter(ndimage.minimum_filter(mask, side, mode="constant"), side, mode="constant")
    if not opened.any():
        return bounding_box(boxes)
    rows, columns = np.nonzero(opened)
    return Box(x1 + int(columns.min()), y1 + int(rows.min()), x1 + int(columns.max()) + 1, y1 + int(rows.max()) + 1)


def _views(relation: _Relation) -> list[View]:
    """The views a relation's verdict reads. For ``occlusion``: the subject's jittered views
    (:func:`~comclip.pipeline.pixel_views.jitters`), the same again for each of its
    completions (:func:`~comclip.pipeline.completions.completions`), then the object's alike.
    For ``between``: subject and object as grounded, then with a gap, each entity with the gap
    added, the gap, the subject and the object zoomed, and the blank view."""
    parts = (relation.subject, relation.obj)
    if relation.probe == "occlusion":
        return [  # a completion that paints nothing is the plain view
            View(relation.image, tuple(p.boxes), jitter=j, paint=paint)
            for p, paints in zip(parts, relation.completions)
            for paint in (None, *paints)
            for j in jitters()
        ]
    plain = [View(relation.image, tuple(p.boxes)) for p in parts]
    if relation.region is None:
        return plain
    reaching = [View(relation.image, (*p.boxes, relation.region)) for p in parts]
    regions = (relation.region, *(bounding_box(p.boxes) for p in parts))
    return [*plain, *reaching, *(View(relation.image, (box,), zoomed=True) for box in regions), View(relation.image, ())]
