"""Depth's entities grounded again, their candidates read completed
(``pipeline/regrounding.py``): the new scores against a direct computation with the backbone
(an entity in two depth relations keeping each detection's larger gain), plain boxes gaining
nothing, and comclip-plus finding a fragment behind that its first
grounding missed."""

from __future__ import annotations

import numpy as np
import pytest

from comclip.boxes import Box, bounding_box
from comclip.grounding.assignment import boxes_touch
from comclip.grounding.base import Detection
from comclip.imaging.files import load_image
from comclip.imaging.subimages import make_subimage
from comclip.parsing import SceneGraph
from comclip.pipeline.pixel_views import PIXEL_FILL
from comclip.pipeline.regrounding import CANDIDATES, completed_rankings
from comclip.results import Part
from tests.test_pixel_relations import _mask, _painted

#: A sandbox item whose object behind (a small orange circle behind a large green star, of
#: which a fragment shows) `sandbox-bow` grounds wrongly unless its candidates are completed.
ITEM = ("depth", 100, 42)


@pytest.fixture(scope="module")
def sandbox_bow():
    from comclip.backbones import create_backbone

    return create_backbone("comclip/sandbox-bow", device="cpu")


def _item():
    from comclip.sandbox.pairs import make_pair

    pair = make_pair(*ITEM)
    return pair, pair.scenes[0], pair.scenes[0].render()


def _depth_graph(phrases: tuple[str, ...], relations=((0, "behind", 1),)) -> SceneGraph:
    entities = [{"id": k, "head": p.split()[-1], "phrase": p} for k, p in enumerate(phrases)]
    listed = [{"subject": a, "predicate": predicate, "object": b} for a, predicate, b in relations]
    return SceneGraph.from_dict({"entities": entities, "relations": listed}, text=" and ".join(phrases))


def _likeness(backbone, image, boxes, painted, phrase) -> float:
    """The cosine with ``phrase`` of the sub-image of ``boxes`` (the background fill outside),
    the pixels ``painted`` in the median colour of its own."""
    view = np.asarray(make_subimage(image, boxes, PIXEL_FILL)).copy()
    view[painted] = np.median(np.asarray(image)[_mask(boxes)], axis=0).astype(np.uint8)
    from PIL import Image

    embedded = backbone.encode_images([Image.fromarray(view)])[0].float()
    text = backbone.encode_texts([phrase])[0].float()
    return float(embedded @ text / (embedded.norm() * text.norm()))


def _gain(backbone, image, rank: int, box: Box, phrase: str, other: Part) -> float:
    """What the detection ranked ``rank`` gains against ``other``'s region: for one of the
    first :data:`CANDIDATES` whose box touches it, how much more the best completed view
    (the other's pixels its closing or hull reaches, painted) reads like the phrase than the
    plain one; never less than 0."""
    if rank >= CANDIDATES or not boxes_touch(box, bounding_box(other.boxes)):
        return 0.0
    plain = _likeness(backbone, image, [box], np.zeros((64, 64), bool), phrase)
    painted = _painted(Part("entity", phrase, [box], 0, 0), other)
    return max([0.0] + [_likeness(backbone, image, [box], m, phrase) - plain for m in painted if m.any()])


def _setting():
    """The item's image, its candidates ranked in their order, and its two objects' phrases
    with the candidate that boxes the one in front."""
    from comclip.grounding.proposals import propose

    _, scene, image = _item()
    behind, front = scene.objects
    candidates = propose(image, "segment-masks")
    front_box = max(candidates, key=lambda b: b.iou(front.box))
    assert front_box.iou(front.box) >= 0.5
    return image, [Detection((box,), 1.0 - k / 100) for k, box in enumerate(candidates)], behind.phrase, front.phrase, front_box


def test_each_candidate_gains_what_its_best_completion_reads_better(sandbox_bow):
    """The object behind's first detections that touch the front one's region score their
    grounder's score plus how much more the best completed view reads like the phrase than
    the plain one (:func:`_gain`), best first again; the rest keep their scores. The same for
    the one in front, against the other's region."""
    image, ranking, behind, front, front_box = _setting()
    parts = [
        Part("entity", p, [b], 0, 0, entities=(k,))
        for k, (p, b) in enumerate(((behind, ranking[0].boxes[0]), (front, front_box)))
    ]
    again = completed_rankings(
        sandbox_bow,
        [load_image(image)],
        [0],
        {(0, 0): parts},
        {(0, 0): _depth_graph((behind, front))},
        {(0, 0): [ranking, ranking]},
    )
    assert list(again) == [(0, 0)]
    gained = 0
    for position, (phrase, other) in enumerate(((behind, parts[1]), (front, parts[0]))):
        rescored = again[(0, 0)][position]
        assert [d.score for d in rescored] == sorted((d.score for d in rescored), reverse=True)
        scores = {bounding_box(d.boxes): d.score for d in rescored}
        for k, detection in enumerate(ranking):
            expected = detection.score + _gain(sandbox_bow, image, k, detection.boxes[0], phrase, other)
            gained += expected > detection.score
            assert scores[detection.boxes[0]] == pytest.approx(expected, abs=2e-4)
    assert gained >= 2


def test_an_entity_in_two_depth_relations_keeps_each_detections_larger_gain(sandbox_bow):
    """The object behind is in a depth relation with two entities, grounded to two regions (the
    front one's, and for the sake of the test its own first candidate's): each of its
    detections gains the larger of what it gains against either, also where both gain."""
    image, ranking, behind, front, front_box = _setting()
    boxes = [ranking[0].boxes[0], front_box, ranking[0].boxes[0]]
    phrases = (behind, front, front)
    parts = [Part("entity", p, [b], 0, 0, entities=(k,)) for k, (p, b) in enumerate(zip(phrases, boxes))]
    graph = _depth_graph(phrases, ((2, "in front of", 0), (0, "behind", 1)))
    again = completed_rankings(sandbox_bow, [load_image(image)], [0], {(0, 0): parts}, {(0, 0): graph}, {(0, 0): [ranking] * 3})
    scores = {bounding_box(d.boxes): d.score for d in again[(0, 0)][0]}
    both = 0
    for k, detection in enumerate(ranking):
        gains = [_gain(sandbox_bow, image, k, detection.boxes[0], behind, parts[n]) for n in (2, 1)]
        both += min(gains) > 0 and gains[0] > gains[1] + 0.01  # the later relation's gain alone would be wrong
        assert scores[detection.boxes[0]] == pytest.approx(detection.score + max(gains), abs=2e-4)
    assert both >= 1


def test_plain_boxes_gain_nothing(tiny_backbone):
    """A plain box is its own closing and hull: no completion paints anything, so a box
    grounder's rankings stand (and nothing is encoded)."""
    image = load_image(_item()[2])
    graph = _depth_graph(("a circle", "a star"))
    boxes = [Box(10, 10, 30, 30), Box(20, 20, 40, 40), Box(25, 5, 45, 25)]
    ranking = [Detection((b,), 0.5) for b in boxes]
    parts = [Part("entity", p, [boxes[k]], 0, 0, entities=(k,)) for k, p in enumerate(("a circle", "a star"))]
    assert completed_rankings(tiny_backbone, [image], [0], {(0, 0): parts}, {(0, 0): graph}, {(0, 0): [ranking, ranking]}) == {}


def test_comclip_plus_finds_the_fragment_behind_only_with_its_completions(sandbox_bow, monkeypatch):
    """On the item, comclip-plus's first grounding of the object behind misses it (box IoU <
    0.5 with its whole shape and with what shows of it); grounded again with its candidates
    completed, it finds it."""
    from comclip import ComCLIP
    from comclip.config import PipelineConfig
    from comclip.methods import method_configs
    from comclip.parsing.given import GivenParser
    from comclip.pipeline import model

    pair, scene, image = _item()
    behind = scene.objects[0]
    shown = scene.shown_boxes()[0]
    config = method_configs(["comclip-plus"], PipelineConfig.for_backbone(sandbox_bow))["comclip-plus"]

    def grounded(pipeline) -> Box:
        result = pipeline.explain(image, pair.captions[0])
        (part,) = [p for p in result.parts if p.kind == "entity" and p.phrase.endswith(behind.phrase)]
        return bounding_box(part.boxes)

    pipeline = ComCLIP.from_backbone(sandbox_bow, config, parser=GivenParser(dict(zip(pair.captions, pair.graphs))))
    found = grounded(pipeline)
    assert max(found.iou(behind.box), found.iou(shown)) >= 0.5
    monkeypatch.setattr(model, "completed_rankings", lambda *args: {})
    missed = grounded(ComCLIP.from_backbone(sandbox_bow, config, parser=GivenParser(dict(zip(pair.captions, pair.graphs)))))
    assert max(missed.iou(behind.box), missed.iou(shown)) < 0.5
