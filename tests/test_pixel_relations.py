"""Relations only pixels show (``--relations pixels``): the probes' regions, the verdict's
orientation, the pipeline's verdict against a direct computation with the backbone, the
fallback where a relation cannot show, and comclip-plus's use of it."""

from __future__ import annotations

import math

import pytest

from comclip.boxes import Box
from comclip.composition.geometry import PIXEL_SOFTNESS, pixel_rule, pixel_score, probe_region
from comclip.explain import score_label
from comclip.imaging.subimages import make_subimage
from comclip.pipeline.pixel_relations import PIXEL_FILL


def test_each_predicate_has_its_probe():
    assert pixel_rule("in front of") == ("occlusion", False)
    assert pixel_rule("behind") == ("occlusion", True) and pixel_rule("stands behind") == ("occlusion", True)
    assert pixel_rule("point at") == ("between", False) and pixel_rule("Points  At") == ("between", False)
    assert pixel_rule("left of") is None and pixel_rule("holding") is None


def test_probe_regions():
    a, b = Box(0, 0, 10, 10), Box(6, 4, 20, 14)
    assert probe_region("occlusion", a, b) == Box(6, 4, 10, 10)
    assert probe_region("occlusion", a, Box(12, 0, 20, 10)) is None  # apart: nothing hides anything
    assert probe_region("between", a, Box(15, 2, 25, 8)) == Box(10, 2, 15, 8)  # apart across: the gap, their shared rows
    assert probe_region("between", a, Box(2, 20, 8, 30)) == Box(2, 10, 8, 20)  # apart down
    assert probe_region("between", a, Box(15, 15, 20, 20)) == Box(10, 10, 15, 15)  # apart on both: the corner between
    assert probe_region("between", a, b) is None  # overlapping on both axes: no gap


def test_the_verdict_follows_the_subject_minus_the_object():
    assert pixel_score((0.30, 0.25), swapped=False) == pytest.approx(1 / (1 + math.exp(-0.05 / PIXEL_SOFTNESS)))
    assert pixel_score((0.30, 0.25), swapped=True) == pytest.approx(1 - pixel_score((0.30, 0.25), swapped=False))
    assert pixel_score((0.3, 0.3), swapped=False) is None


def _pipeline(backbone, pair, relation_check):
    from comclip import ComCLIP
    from comclip.grounding.oracle import OracleGrounder
    from comclip.parsing.given import GivenParser

    grounder = OracleGrounder(known=[(s.render(), [(o.shape, o.box) for o in s.objects]) for s in pair.scenes])
    return ComCLIP(
        backbone, parser=GivenParser(dict(zip(pair.captions, pair.graphs))), grounder=grounder, relation_check=relation_check
    )


def _likeness(backbone, image, boxes, phrase) -> float:
    view = backbone.encode_images([make_subimage(image, boxes, PIXEL_FILL)])[0]
    return float(view @ backbone.encode_texts([phrase])[0])


@pytest.mark.parametrize("task", ["depth", "direction"])
def test_the_pipeline_verdict_equals_a_direct_computation(tiny_backbone, task):
    """The relation's check is marked as read from pixels, its g is the sigmoid of the
    subject's minus the object's evidence computed here from the sub-images and phrases, and
    the score is the paper's plus (g - 1/2)."""
    from comclip.sandbox.pairs import make_pair

    pair = make_pair(task, 100, 0)
    images = [s.render() for s in pair.scenes]
    on = _pipeline(tiny_backbone, pair, "pixels").score_details(images, list(pair.captions))
    off = _pipeline(tiny_backbone, pair, "off").score_details(images, list(pair.captions))
    probe, swapped = pixel_rule(pair.graphs[0]["relations"][0]["predicate"])
    for i in range(2):
        for j in range(2):
            result = on[i][j]
            ((s, _, o, g, evidence),) = result.spatial
            assert evidence == "pixels" and result.to_dict()["spatial"][0]["evidence"] == "pixels"
            entity = {p.entities[0]: p for p in result.parts if p.kind == "entity"}
            a, b = entity[s], entity[o]
            region = probe_region(probe, a.boxes[0], b.boxes[0])
            plain = [_likeness(tiny_backbone, images[i], p.boxes, p.phrase) for p in (a, b)]
            if probe == "between":
                added = [_likeness(tiny_backbone, images[i], [*p.boxes, region], p.phrase) for p in (a, b)]
                plain = [added[0] - plain[0], added[1] - plain[1]]
            difference = (plain[1] - plain[0]) if swapped else (plain[0] - plain[1])
            assert g == pytest.approx(1 / (1 + math.exp(-difference / PIXEL_SOFTNESS)), abs=2e-3)
            assert result.score == pytest.approx(off[i][j].score + (g - 0.5), abs=1e-6)
            if abs(g - 0.5) > 1e-9:  # the figure names where the relations' term came from
                assert "+ relations (pixels)" in score_label(result, "m") or "- relations (pixels)" in score_label(result, "m")


def test_where_the_relation_cannot_show_the_boxes_decide_or_nothing(tiny_backbone):
    """Depth between boxes apart: no pixel verdict and no box rule, so the relation is
    unverified, flagged, and adds nothing."""
    from comclip import ComCLIP
    from comclip.grounding.oracle import OracleGrounder
    from comclip.parsing.given import GivenParser
    from comclip.sandbox.pairs import make_pair

    pair = make_pair("order-swap", 200, 0)  # two objects apart
    graph = {**pair.graphs[0], "relations": [{**pair.graphs[0]["relations"][0], "predicate": "in front of"}]}
    caption = pair.captions[0] + " "  # another text for the changed graph
    scene = pair.scenes[0]
    grounder = OracleGrounder(known=[(scene.render(), [(o.shape, o.box) for o in scene.objects])])
    result = ComCLIP(tiny_backbone, parser=GivenParser({caption: graph}), grounder=grounder, relation_check="pixels").explain(
        scene.render(), caption
    )
    assert [c[3:] for c in result.spatial] == [(None, "boxes")]
    assert "relation_unverified" in result.flags and result.relations_term == 0


def test_comclip_plus_reads_pixels_and_the_paper_does_not():
    from comclip.config import PipelineConfig
    from comclip.methods import method_configs

    configs = method_configs(["comclip", "comclip-plus"], PipelineConfig())
    assert configs["comclip-plus"].relation_check == "pixels" and configs["comclip"].relation_check == "off"
