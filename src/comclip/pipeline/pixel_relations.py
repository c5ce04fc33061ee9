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

from PIL import Image

from comclip.boxes import Box, bounding_box
from comclip.composition.geometry import pixel_rule, pixel_score, probe_region
from comclip.imaging.files import LoadedImage
from comclip.imaging.subimages import make_subimage, subimage_key
from comclip.parsing import SceneGraph
from comclip.results import NOT_GROUNDED

#: What fills the views outside their region: the background colour, which matches an object's
#: surroundings (development seed 100, `sandbox-bow`, group % on depth / pointer pairs: 34 / 27,
#: against 33 / 26 with the mean colour and 23 / 24 with black).
PIXEL_FILL = "background"

#: One view: (image, the entity's boxes, its phrase, the gap added or None).
View = tuple[int, tuple[Box, ...], str, "Box | None"]


def pixel_checks(
    backbone, loaded: list[LoadedImage], owner: list[int], layouts: dict, graphs: dict, phrases: dict
) -> dict[tuple[int, int], dict[tuple[int, str, int], float | None]]:
    """Per pair ``(i, j)``, the pixel verdict of each of its relations that boxes cannot show
    ``{(subject, predicate, object): g or None}``; ``graphs[(i, j)]`` is the pair's scene
    graph, ``phrases`` the phrase embeddings by text."""
    wanted = _wanted(layouts, graphs)
    views = list(dict.fromkeys(view for (i, _), relations in wanted.items() for r in relations for view in _views(owner[i], r)))
    likeness = _likeness(backbone, loaded, views, phrases)
    out: dict = {}
    for (i, j), relations in wanted.items():
        for relation in relations:
            key, predicate, region, _, _ = relation
            if region is None:
                out.setdefault((i, j), {})[key] = None
                continue
            found = [likeness[view] for view in _views(owner[i], relation)]
            evidence = (found[0], found[1]) if len(found) == 2 else (found[2] - found[0], found[3] - found[1])
            out.setdefault((i, j), {})[key] = pixel_score(evidence, pixel_rule(predicate)[1])  # type: ignore[index]
    return out


def _wanted(layouts: dict, graphs: dict) -> dict:
    """Per pair, each relation to read from pixels whose entities were both grounded:
    ``(key, predicate, probe box or None, subject part, object part)``."""
    wanted: dict[tuple[int, int], list] = {}
    for pair, parts in layouts.items():
        grounded = {p.entities[0]: p for p in parts if p.kind == "entity" and NOT_GROUNDED not in p.flags}
        for relation in _pixel_relations(graphs[pair]):
            subject, obj = grounded.get(relation.subject), grounded.get(relation.object)
            if subject is None or obj is None:
                continue
            probe = pixel_rule(relation.predicate)[0]  # type: ignore[index]
            region = probe_region(probe, bounding_box(subject.boxes), bounding_box(obj.boxes))
            key = (relation.subject, relation.predicate, relation.object)
            wanted.setdefault(pair, []).append((key, relation.predicate, region, subject, obj))
    return wanted


def _pixel_relations(graph: SceneGraph) -> list:
    return [r for r in graph.relations if pixel_rule(r.predicate) is not None]


def _views(image: int, relation: tuple) -> list[View]:
    """The views a relation's verdict reads: subject and object as grounded, then (between)
    each with the gap added; none where the relation cannot show."""
    _, predicate, region, subject, obj = relation
    if region is None:
        return []
    plain: list[View] = [(image, tuple(p.boxes), p.phrase, None) for p in (subject, obj)]
    if pixel_rule(predicate)[0] != "between":  # type: ignore[index]
        return plain
    return plain + [(image, tuple(p.boxes), p.phrase, region) for p in (subject, obj)]


def _likeness(backbone, loaded: list[LoadedImage], views: list[View], phrases: dict) -> dict:
    """Each view's cosine with its entity's phrase, the views encoded in one keyed call."""
    if not views:
        return {}
    import torch

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
