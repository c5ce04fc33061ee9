"""Relations only pixels show (``--relations pixels``): the probes' regions, the verdict's
orientation, the pipeline's verdict against a direct computation with the backbone, the
fallback where a relation cannot show, and comclip-plus's use of it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from scipy.spatial import Delaunay

from comclip.boxes import Box
from comclip.composition.geometry import PIXEL_SOFTNESS, pixel_rule, pixel_score, probe_region
from comclip.explain import score_label
from comclip.imaging.subimages import make_subimage
from comclip.pipeline.completions import COMPLETION_RADIUS, completions
from comclip.pipeline.pixel_relations import (
    BLANK_FREE_WEIGHT,
    COMPLETION_WEIGHT,
    GAP_WEIGHT,
    JITTER_SPREAD_WEIGHT,
)
from comclip.pipeline.pixel_views import PIXEL_FILL, ZOOM


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


#: The verdict's slope in the tests that compare it: cosines of a random model differ by
#: tenths, which the shipped slope would turn into 0 or 1.
SOFT = 0.5


def _pipeline(backbone, pair, relation_check, known=None):
    """ComCLIP with the pair's true graphs, grounding to ``known`` ``[(image, [(shape, box)])]``
    (default: every scene's true objects)."""
    from comclip import ComCLIP
    from comclip.grounding.oracle import OracleGrounder
    from comclip.parsing.given import GivenParser

    known = known or [(s.render(), [(o.shape, o.box) for o in s.objects]) for s in pair.scenes]
    return ComCLIP(
        backbone,
        parser=GivenParser(dict(zip(pair.captions, pair.graphs))),
        grounder=OracleGrounder(known=known),
        relation_check=relation_check,
    )


def _first_relation(backbone, pair, image, known):
    """The first caption explained on ``image`` with pixel checks, grounded to ``known``: the
    result, its one relation check and its entity parts by entity id."""
    result = _pipeline(backbone, pair, "pixels", [(image, known)]).explain(image, pair.captions[0])
    (check,) = result.spatial
    return result, check, {p.entities[0]: p for p in result.parts if p.kind == "entity"}


def _likeness(backbone, image, boxes, phrase) -> float:
    view = backbone.encode_images([make_subimage(image, boxes, PIXEL_FILL)])[0]
    return float(view @ backbone.encode_texts([phrase])[0])


def _depth_likeness(backbone, image, entity, other) -> float:
    """Depth's likeness of an entity: its jittered likeness, less the completion weight times
    how much more the best of its completed views reads: the view with the other entity's
    pixels that each completion reaches (see :func:`_painted`) in the median colour of its own."""
    view = np.asarray(make_subimage(image, entity.boxes, PIXEL_FILL))
    colour = np.median(np.asarray(image)[_mask(entity.boxes)], axis=0).astype(np.uint8)
    readings = []
    for painted in [np.zeros((64, 64), bool), *_painted(entity, other)]:
        completed = view.copy()
        completed[painted] = colour
        readings.append(_jittered_likeness(backbone, image, completed, entity.phrase))
    return readings[0] - COMPLETION_WEIGHT * (max(readings) - readings[0])


def _painted(entity, other) -> list[np.ndarray]:
    """The other entity's pixels that depth's completions of ``entity`` reach: its mask closed
    with a disc of the completion radius (6 pixels at 64), and its convex hull (the pixels
    whose centres lie in the hull of its pixels' corners, found by triangulating them)."""
    own, theirs = _mask(entity.boxes), _mask(other.boxes)
    radius = round(COMPLETION_RADIUS * 64)
    rows, columns = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disc = rows**2 + columns**2 <= radius**2
    padded = np.pad(own, radius + 1)
    closed = ndimage.binary_erosion(ndimage.binary_dilation(padded, disc), disc)[
        radius + 1 : -radius - 1, radius + 1 : -radius - 1
    ]
    ys, xs = np.nonzero(own)
    corners = np.concatenate([np.stack([xs + dx, ys + dy], axis=1) for dx in (0, 1) for dy in (0, 1)])
    centres = np.stack(np.meshgrid(np.arange(64) + 0.5, np.arange(64) + 0.5), axis=-1).reshape(-1, 2)
    hull = (Delaunay(corners).find_simplex(centres) >= 0).reshape(64, 64)
    return [closed & ~own & theirs, hull & ~own & theirs]


def _mask(boxes) -> np.ndarray:
    """An entity's pixels in a 64-pixel image: its boxes' (a masked box's runs')."""
    mask = np.zeros((64, 64), bool)
    for box in boxes:
        for run in getattr(box, "runs", ()) or (box,):
            x1, y1, x2, y2 = run.pixels()
            mask[y1:y2, x1:x2] = True
    return mask


def _jittered_likeness(backbone, image, view, phrase) -> float:
    """The cosines with the phrase of a view (an entity's sub-image) moved by 1 and 3 pixels
    either way on both axes (a 64-pixel image), what it uncovers in the fill colour, each also
    mirrored left to right (32 views): their mean less the spread's weight times their
    standard deviation."""
    colour = np.asarray(_fill_colour(image), dtype=np.uint8)
    views = []
    for dx in (-3, -1, 1, 3):
        for dy in (-3, -1, 1, 3):
            moved = np.empty_like(view)
            moved[:] = colour
            moved[max(0, dy) : 64 + min(0, dy), max(0, dx) : 64 + min(0, dx)] = view[
                max(0, -dy) : 64 - max(0, dy), max(0, -dx) : 64 - max(0, dx)
            ]
            views += [Image.fromarray(moved), Image.fromarray(np.ascontiguousarray(moved[:, ::-1]))]
    embedded = backbone.encode_images(views).float()
    embedded = embedded / embedded.norm(dim=-1, keepdim=True)
    text = backbone.encode_texts([phrase])[0].float()
    cosines = (embedded @ (text / text.norm())).numpy()
    return float(cosines.mean() - JITTER_SPREAD_WEIGHT * cosines.std(ddof=1))


def _fill_colour(image):
    """The fill colour: the lower median of the image's border pixels, channel by channel."""
    pixels = np.asarray(image.convert("RGB"))
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return tuple(int(c) for c in np.sort(border, axis=0)[(len(border) - 1) // 2])


def _zoomed(backbone, image, box):
    """The box's square (side its longer side, centred on it) of the sub-image, at the encoder's
    size (a masked box's sub-image shows its own pixels only)."""
    side = round(max(box.width, box.height) * ZOOM)
    x1, y1 = round(box.centre[0] - side / 2), round(box.centre[1] - side / 2)
    window = make_subimage(image, [box], PIXEL_FILL).crop((x1, y1, x1 + side, y1 + side))  # PIL pads with black
    assert min(x1, y1) >= 0 and max(x1, y1) + side <= min(image.size), "a window inside the (square) image"
    view = backbone.encode_images([window])[0]
    return view / view.norm()


def _blank(backbone, image):
    """The fill colour alone, at the image's size."""
    view = backbone.encode_images([Image.new("RGB", image.size, _fill_colour(image))])[0]
    return view / view.norm()


def _unit(vector):
    return vector / vector.norm()


@pytest.mark.parametrize("task", ["depth", "direction"])
def test_the_pipeline_verdict_equals_a_direct_computation(tiny_backbone, task, monkeypatch):
    """The relation's check is marked as read from pixels, its g is the sigmoid of the
    subject's minus the object's evidence computed here (depth: each entity's jittered
    sub-images against its phrase, less the best gain of its completed ones; pointing: how much more like "A <predicate>" it is with the gap added than like
    "A" without, plus the gap's zoomed view against the entity's, image to image, plainly and
    with the blank view (the fill colour alone) taken out of both), and
    the score is the paper's plus (g - 1/2). A soft slope keeps g off 0 and 1 (where any
    evidence of the right sign would pass)."""
    from comclip.composition import geometry
    from comclip.sandbox.pairs import make_pair

    monkeypatch.setattr(geometry, "PIXEL_SOFTNESS", SOFT)

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
            evidence = [_likeness(tiny_backbone, images[i], p.boxes, p.phrase) for p in (a, b)]
            if probe == "occlusion":  # the jittered likeness, against itself completed
                evidence = [_depth_likeness(tiny_backbone, images[i], p, q) for p, q in ((a, b), (b, a))]
            if probe == "between":  # the agent's gain, and the gap against each entity, image to image, seen zoomed
                predicate = pair.graphs[0]["relations"][0]["predicate"]
                agent = [_likeness(tiny_backbone, images[i], [*p.boxes, region], f"{p.phrase} {predicate}") for p in (a, b)]
                gap, blank = _zoomed(tiny_backbone, images[i], region), _blank(tiny_backbone, images[i])
                zoomed = [_zoomed(tiny_backbone, images[i], p.boxes[0]) for p in (a, b)]
                evidence = [
                    agent[k]
                    - evidence[k]
                    + GAP_WEIGHT * float(gap @ zoomed[k])
                    + BLANK_FREE_WEIGHT * float(_unit(gap - blank) @ _unit(zoomed[k] - blank))
                    for k in range(2)
                ]
            difference = (evidence[1] - evidence[0]) if swapped else (evidence[0] - evidence[1])
            assert g == pytest.approx(1 / (1 + math.exp(-difference / SOFT)), abs=2e-4) and 0.01 < g < 0.99
            assert result.score == pytest.approx(off[i][j].score + (g - 0.5), abs=1e-6)
            if abs(g - 0.5) > 1e-9:  # the figure names where the relations' term came from
                assert "+ relations (pixels)" in score_label(result, "m") or "- relations (pixels)" in score_label(result, "m")


def test_pointing_between_boxes_without_a_gap_is_read_from_the_agent_alone(tiny_backbone, monkeypatch):
    """A pointer's source grounded with its pointer can reach the other's box: no gap is left,
    and the verdict is the agent's gain alone (not unverified)."""
    from comclip.boxes import bounding_box
    from comclip.composition import geometry
    from comclip.sandbox.pairs import make_pair

    monkeypatch.setattr(geometry, "PIXEL_SOFTNESS", SOFT)
    pair = make_pair("direction", 100, 0)
    scene, image = pair.scenes[0], pair.scenes[0].render()
    reach = bounding_box([o.box for o in scene.objects])  # the subject's box takes in the object's
    known = [(o.shape, reach if k == 0 else o.box) for k, o in enumerate(scene.objects)]
    result, (s, predicate, o, g, evidence), entity = _first_relation(tiny_backbone, pair, image, known)
    assert probe_region("between", entity[s].boxes[0], entity[o].boxes[0]) is None and evidence == "pixels"
    gains = [
        _likeness(tiny_backbone, image, p.boxes, f"{p.phrase} {predicate}") - _likeness(tiny_backbone, image, p.boxes, p.phrase)
        for p in (entity[s], entity[o])
    ]
    assert g == pytest.approx(1 / (1 + math.exp(-(gains[0] - gains[1]) / SOFT)), abs=2e-4) and 0.01 < g < 0.99
    assert "relation_unverified" not in result.flags


def test_depth_between_boxes_that_only_meet_is_read_from_the_likeness_alone(tiny_backbone, monkeypatch):
    """An object behind may show only beyond the front one's box: boxes that meet without
    overlapping are read from each entity's likeness alone (not unverified; boxes apart are,
    below)."""
    from comclip.composition import geometry
    from comclip.sandbox.pairs import make_pair

    monkeypatch.setattr(geometry, "PIXEL_SOFTNESS", SOFT)
    pair = make_pair("depth", 100, 0)
    scene, image = pair.scenes[0], pair.scenes[0].render()
    first, second = (o.box for o in scene.objects)
    beside = Box(first.x2, second.y1, first.x2 + second.width, second.y2)  # meets the first box's right edge
    known = [(scene.objects[0].shape, first), (scene.objects[1].shape, beside)]
    result, (s, predicate, o, g, evidence), entity = _first_relation(tiny_backbone, pair, image, known)
    assert probe_region("occlusion", entity[s].boxes[0], entity[o].boxes[0]) is None and evidence == "pixels"
    likeness = [_depth_likeness(tiny_backbone, image, p, q) for p, q in ((entity[s], entity[o]), (entity[o], entity[s]))]
    difference = likeness[0] - likeness[1]
    if pixel_rule(predicate)[1]:  # "behind": the object is the one in front
        difference = -difference
    assert g == pytest.approx(1 / (1 + math.exp(-difference / SOFT)), abs=2e-4) and 0.01 < g < 0.99
    assert "relation_unverified" not in result.flags


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


@pytest.mark.parametrize("hidden", [False, True])
def test_depth_reads_masked_entities_against_themselves_completed(tiny_backbone, monkeypatch, hidden):
    """Entities grounded to masks of their visible pixels (as segment masks ground them): the
    completions paint the one behind, and the verdict is the likenesses' difference computed
    here, also where the one behind shows nothing inside the front one's box (``hidden``)."""
    import numpy as np

    from comclip.boxes import MaskedBox
    from comclip.composition import geometry
    from comclip.grounding.proposals import mask_runs
    from comclip.sandbox.pairs import make_pair
    from comclip.sandbox.scenes import shape_mask

    monkeypatch.setattr(geometry, "PIXEL_SOFTNESS", SOFT)
    pair = make_pair("depth", 100, 6)  # a large circle behind a small triangle, which bites into its edge
    scene, image = pair.scenes[0], pair.scenes[0].render()
    back, front = scene.objects  # drawn in order: the later one on top
    shown = {back: shape_mask(back) & ~shape_mask(front), front: shape_mask(front)}
    if hidden:  # the one behind keeps only its pixels outside the front one's box
        x1, y1, x2, y2 = front.box.pixels()
        shown[back][y1:y2, x1:x2] = False

    def masked(mask, box):
        runs = tuple(Box(a, b, c, d) for a, b, c, d in mask_runs(mask))
        return MaskedBox(*box.as_tuple(), runs=runs)

    known = [(o.shape, masked(shown[o], o.box)) for o in scene.objects]
    _, (s, _, o, g, evidence), entity = _first_relation(tiny_backbone, pair, image, known)
    a, b = entity[s], entity[o]
    behind = [k for k, p in enumerate((a, b)) if p.boxes[0].as_tuple() == back.box.as_tuple()][0]
    (closing_behind, hull_behind), (closing_front, hull_front) = (
        [mask.sum() for mask in _painted(*parts)] for parts in ((a, b), (b, a))[:: 1 if behind == 0 else -1]
    )
    if not hidden:  # the closing completes the one behind only; the hull more of it than of the other
        assert closing_behind >= 10 and closing_front == 0 and hull_behind > hull_front + 10
    likeness = [_depth_likeness(tiny_backbone, image, p, q) for p, q in ((a, b), (b, a))]
    _, swapped = pixel_rule(pair.graphs[0]["relations"][0]["predicate"])
    difference = (likeness[1] - likeness[0]) if swapped else (likeness[0] - likeness[1])
    assert evidence == "pixels" and g == pytest.approx(1 / (1 + math.exp(-difference / SOFT)), abs=2e-4)
    assert np.isfinite(g) and 0.01 < g < 0.99


def test_completions_are_the_closing_and_the_hull_reaching_the_others_pixels():
    """Each completion of an entity grounded to its visible pixels, against the direct
    computation (:func:`_painted`), on overlapping sandbox shapes (the one behind bitten by the
    one in front); a plain box is its own closing and hull, and paints nothing."""
    from types import SimpleNamespace

    from comclip.boxes import MaskedBox
    from comclip.grounding.proposals import mask_runs
    from comclip.sandbox.pairs import make_pair
    from comclip.sandbox.scenes import shape_mask

    def entity(mask):
        return SimpleNamespace(boxes=[MaskedBox.of_runs([Box(*run) for run in mask_runs(mask)])])

    reached = 0
    for index in range(24):
        back, front = make_pair("depth", 100, index).scenes[0].objects
        shown = (entity(shape_mask(back) & ~shape_mask(front)), entity(shape_mask(front)))
        each = completions(shown[0].boxes, shown[1].boxes, (64, 64))  # the one behind's, then the front one's
        for (mine, other), painted in zip((shown, shown[::-1]), each, strict=True):
            expected = _painted(mine, other)
            found = [_mask([box]) if box is not None else np.zeros((64, 64), bool) for box in painted]
            assert all(np.array_equal(f, e) for f, e in zip(found, expected, strict=True))
            reached += sum(int(e.any()) for e in expected)
    assert reached >= 24  # the completions reach the other's pixels in many of these
    assert completions([Box(10, 10, 30, 30)], [Box(20, 20, 40, 40)], (64, 64)) == ((None, None), (None, None))


def test_the_completed_likeness_is_the_plain_one_less_the_best_gain():
    """An entity's depth likeness from its plain and completed jittered views: the plain views'
    cosines' mean less their spread, less the completion weight times the most that the
    completed views' reading exceeds it (nothing where none does), computed directly."""
    from comclip.pipeline.pixel_relations import _completed_likeness
    from comclip.pipeline.pixel_views import jitters

    generator = np.random.default_rng(0)
    phrase = np.eye(8)[0]
    count = len(jitters())
    for shifts in ((0.0, 0.2, 0.1), (0.0, -0.1, -0.2)):
        cosines = [np.clip(0.3 + shift + 0.1 * generator.standard_normal(count), -0.9, 0.9) for shift in shifts]
        views = [np.concatenate([[c], np.sqrt(1 - c**2) * np.eye(7)[n % 7]]) for block in cosines for n, c in enumerate(block)]
        readings = [block.mean() - JITTER_SPREAD_WEIGHT * block.std(ddof=1) for block in cosines]
        expected = readings[0] - COMPLETION_WEIGHT * max(0.0, max(readings[1:]) - readings[0])
        found = _completed_likeness(
            [torch.tensor(v, dtype=torch.float32) for v in views], torch.tensor(phrase, dtype=torch.float32)
        )
        assert found == pytest.approx(expected, abs=1e-5)
        assert (found < readings[0] - 0.05) == (shifts[1] > 0)  # a completion that reads better counts against it


def test_a_sliver_of_a_gap_is_taken_between_the_bodies():
    """A source grounded with its pointer leaves its box no more than a sliver of a gap to the
    target's. The gap is then taken between the entities' bodies: what an opening (scipy's,
    the reference) leaves of each, the pointer being thinner than it, so the gap holds it."""
    from scipy import ndimage

    from comclip.boxes import MaskedBox, bounding_box
    from comclip.pipeline.pixel_relations import BODY_OPENING, SLIVER, _body, _gap

    mask = np.zeros((64, 64), bool)
    mask[20:36, 4:20] = True  # the body
    mask[27:29, 20:40] = True  # a pointer 2 pixels thick, up to a pixel from the target
    runs = [Box(int(x), y, int(x) + 1, y + 1) for y, x in zip(*np.nonzero(mask))]
    source, target = MaskedBox.of_runs(runs), Box(41, 18, 58, 38)
    assert probe_region("between", bounding_box([source]), target).width <= SLIVER
    radius = round(BODY_OPENING * 64)
    rows, columns = np.nonzero(ndimage.binary_opening(mask, structure=np.ones((2 * radius + 1,) * 2, bool)))
    reference = Box(int(columns.min()), int(rows.min()), int(columns.max()) + 1, int(rows.max()) + 1)
    assert _body([source], (64, 64)) == reference == Box(4, 20, 20, 36)
    assert _gap([source], [target], (64, 64)) == Box(20, 20, 41, 36)  # the pointer's whole length
    assert _body([target], (64, 64)) == target  # a box is its own body
