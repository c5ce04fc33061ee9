"""Relations only pixels show, read from sub-images (``--relations pixels``; beyond the paper).

"A in front of B" and "B in front of A" hold the same boxes, and so do "A points at B" and
"B points at A": no rule on boxes and no union sub-image tells them apart. What differs is
in the pixels: which of two overlapping entities is drawn whole, and which one's pointer
crosses the gap between them. The backbone scores each entity's sub-image against the
entity's own phrase (its likeness), as grounded and, for ``between`` relations, with the gap
added; :func:`comclip.composition.geometry.pixel_score` turns the subject's and object's
evidence into the relation's soft truth, which the geometric check adds like a box rule's
(marked ``"pixels"`` in ``--details``). Only the backbone's encoders are used, on regions and
phrases: no rule reads colours or shapes. Where a relation cannot show (no overlap; no gap)
the box rules decide, or nothing does (``relation_unverified``).

The views are full-size sub-images with the image's background colour outside the region
(:data:`PIXEL_FILL`), encoded through the cache by content key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from PIL import Image

from comclip.boxes import Box, bounding_box
from comclip.composition.geometry import pixel_rule, pixel_score, probe_region
from comclip.imaging.files import LoadedImage
from comclip.imaging.subimages import make_subimage, subimage_key
from comclip.results import NOT_GROUNDED, Part

#: What fills the views outside their region: the background colour, which matches an object's
#: surroundings (development seed 100, `sandbox-bow`, group % on depth / pointer pairs: 34 / 27,
#: against 33 / 26 with the mean colour and 23 / 24 with black).
PIXEL_FILL = "background"

#: One view: (image, the entity's boxes, its phrase, the gap added or None).
View = tuple[int, tuple[Box, ...], str, "Box | None"]


class _Relation(NamedTuple):
    """A relation to read from pixels, its entities both grounded in image ``image``."""

    image: int
    key: tuple[int, str, int]  # (subject, predicate, object)
    probe: str
    swapped: bool
    region: Box | None  # None: the relation cannot show (no overlap, no gap)
    subject: Part
    obj: Part


def pixel_checks(
    backbone, loaded: list[LoadedImage], owner: list[int], layouts: dict, graphs: dict, phrases: dict
) -> dict[tuple[int, int], dict[tuple[int, str, int], float | None]]:
    """Per pair ``(i, j)``, the pixel verdict of each of its relations that boxes cannot show
    ``{(subject, predicate, object): g or None}``; ``graphs[(i, j)]`` is the pair's scene
    graph, ``phrases`` the phrase embeddings by text."""
    wanted = {pair: _wanted(owner[pair[0]], parts, graphs[pair]) for pair, parts in layouts.items()}
    views = list(dict.fromkeys(view for relations in wanted.values() for r in relations for view in _views(r)))
    likeness = _likeness(backbone, loaded, views, phrases)
    out: dict = {}
    for pair, relations in wanted.items():
        for relation in relations:
            found = [likeness[view] for view in _views(relation)]
            if not found:
                verdict = None
            elif relation.probe == "between":  # each entity's gain with the gap
                verdict = pixel_score((found[2] - found[0], found[3] - found[1]), relation.swapped)
            else:  # occlusion: each entity's likeness
                verdict = pixel_score((found[0], found[1]), relation.swapped)
            out.setdefault(pair, {})[relation.key] = verdict
    return out


def _wanted(image: int, parts: list[Part], graph) -> list[_Relation]:
    """The pair's relations to read from pixels whose entities were both grounded."""
    grounded = {p.entities[0]: p for p in parts if p.kind == "entity" and NOT_GROUNDED not in p.flags}
    wanted = []
    for relation in graph.relations:
        rule = pixel_rule(relation.predicate)
        subject, obj = grounded.get(relation.subject), grounded.get(relation.object)
        if rule is None or subject is None or obj is None:
            continue
        region = probe_region(rule[0], bounding_box(subject.boxes), bounding_box(obj.boxes))
        key = (relation.subject, relation.predicate, relation.object)
        wanted.append(_Relation(image, key, *rule, region, subject, obj))
    return wanted


def _views(relation: _Relation) -> list[View]:
    """The views a relation's verdict reads: subject and object as grounded, then (between)
    each with the gap added; none where the relation cannot show."""
    if relation.region is None:
        return []
    parts = (relation.subject, relation.obj)
    plain: list[View] = [(relation.image, tuple(p.boxes), p.phrase, None) for p in parts]
    if relation.probe != "between":
        return plain
    return plain + [(relation.image, tuple(p.boxes), p.phrase, relation.region) for p in parts]


def _likeness(backbone, loaded: list[LoadedImage], views: list[View], phrases: dict) -> dict:
    """Each view's cosine with its entity's phrase, the views encoded in one keyed call."""
    if not views:
        return {}
    keys = [_view_key(loaded[i], boxes, gap) for i, boxes, _, gap in views]

    def make(n: int) -> Image.Image:
        i, boxes, _, gap = views[n]
        return make_subimage(loaded[i].image, [*boxes, *([gap] if gap is not None else [])], PIXEL_FILL)

    embeddings = torch.nn.functional.normalize(backbone.encode_keyed(keys, make).float(), dim=-1)
    texts = torch.stack([phrases[phrase] for _, _, phrase, _ in views]).float()
    return dict(zip(views, (embeddings * texts).sum(-1).tolist()))


def _view_key(image: LoadedImage, boxes: Sequence[Box], gap: Box | None) -> str:
    """A view's content key: a sub-image's, over the entity's boxes and the gap where added."""
    width, height = image.image.size
    return subimage_key(image.digest, [*boxes, *([gap] if gap is not None else [])], PIXEL_FILL, width, height)
