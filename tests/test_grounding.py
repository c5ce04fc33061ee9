"""Grounding: the joint assignment of a caption's entities to regions (against a brute-force
reference), the argmax pick as it always was, multiscale candidate views, and the grounding
accuracy measure with either assignment."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch
from PIL import Image

from comclip.backbones.cached import CachedEncoder
from comclip.boxes import Box
from comclip.grounding import Detection
from comclip.grounding.assignment import assign, ranking_margin
from comclip.grounding.proposals import segment_proposals

REGIONS = [Box(0, 0, 10, 10), Box(20, 0, 30, 10), Box(0, 20, 10, 30), Box(20, 20, 30, 30)]


def _rankings(scores: np.ndarray) -> list[list[Detection]]:
    """Each row's detections over the same candidate regions (as the clip grounder ranks), best first."""
    return [[Detection((REGIONS[c],), float(row[c])) for c in np.argsort(-row, kind="stable")] for row in scores]


def _brute_force_total(scores: np.ndarray) -> float:
    rows, columns = scores.shape
    return max(sum(scores[r, c] for r, c in enumerate(perm)) for perm in itertools.permutations(range(columns), rows))


@pytest.mark.parametrize("seed", range(20))
def test_joint_assignment_maximises_the_total_with_distinct_regions(seed):
    rng = np.random.default_rng(seed)
    scores = rng.uniform(-1, 1, size=(int(rng.integers(1, 4)), 4))
    grounded = assign(_rankings(scores), list(range(len(scores))), joint=True)
    picked = [REGIONS.index(g.detection.boxes[0]) for g in grounded]
    assert len(set(picked)) == len(picked)
    assert sum(scores[r, c] for r, c in enumerate(picked)) == pytest.approx(_brute_force_total(scores))


def test_argmax_takes_each_entity_top_detection_and_may_share():
    scores = np.array([[0.9, 0.1, 0.0, 0.0], [0.8, 0.2, 0.0, 0.0]])
    argmax = assign(_rankings(scores), [0, 1], joint=False)
    joint = assign(_rankings(scores), [0, 1], joint=True)
    assert [g.detection.boxes[0] for g in argmax] == [REGIONS[0], REGIONS[0]]
    assert [g.detection.boxes[0] for g in joint] == [REGIONS[0], REGIONS[1]]  # 0.9 + 0.2 beats 0.1 + 0.8
    assert argmax[0].margin == pytest.approx(0.8) and joint[1].margin == pytest.approx(0.6)


def test_entities_that_cannot_be_told_apart_share_a_region():
    scores = np.array([[0.9, 0.1, 0.0, 0.0], [0.9, 0.1, 0.0, 0.0]])
    grounded = assign(_rankings(scores), [("dog", ()), ("dog", ())], joint=True)
    assert grounded[0].detection == grounded[1].detection and not grounded[1].forced_share


def test_more_entities_than_regions_fall_back_to_their_top_detection():
    rankings = [[Detection((REGIONS[0],), 0.9)], [Detection((REGIONS[0],), 0.8)]]
    grounded = assign(rankings, [0, 1], joint=True)
    assert grounded[0].detection.boxes == (REGIONS[0],) and grounded[1].detection.boxes == (REGIONS[0],)
    assert grounded[1].forced_share and not grounded[0].forced_share


def test_detector_boxes_overlapping_strongly_are_one_region():
    """A detector finds boxes per query: two near-identical boxes are one region, so the second
    entity goes to its next, different box."""
    a, a2, b = Box(0, 0, 10, 10), Box(0.5, 0, 10, 10), Box(20, 20, 30, 30)
    rankings = [[Detection((a,), 0.9), Detection((b,), 0.1)], [Detection((a2,), 0.8), Detection((b,), 0.6)]]
    grounded = assign(rankings, [0, 1], joint=True)
    assert grounded[0].detection.boxes == (a,) and grounded[1].detection.boxes == (b,)


#: Regions of which some touch: 0 and 1 meet, 2 overlaps both, 3 is one pixel from 1, 4 is apart.
TOUCHING = [Box(0, 0, 10, 10), Box(10, 0, 20, 10), Box(8, 8, 18, 18), Box(21, 0, 30, 10), Box(40, 40, 50, 50)]


def _touch_reference(a: Box, b: Box) -> bool:
    """Boxes that overlap or meet, from their gaps on each axis."""
    return max(a.x1 - b.x2, b.x1 - a.x2) < 1 and max(a.y1 - b.y2, b.y1 - a.y2) < 1


@pytest.mark.parametrize("seed", range(30))
def test_entities_that_must_touch_get_touching_regions_where_any_do(seed):
    """The best assignment stands where its pair touches; else the best one where it touches
    (brute force here), if any; else the best one (here: when the pair's only scored regions
    are apart)."""
    rng = np.random.default_rng(seed)
    rows = int(rng.integers(2, 4))
    scores = rng.uniform(-1, 1, size=(rows, len(TOUCHING)))
    if seed % 5 == 0:  # the pair's rows scored only on regions that touch no other: no touching option
        scores[0, :4], scores[1, :3] = np.nan, np.nan
    rankings = [
        [
            Detection((TOUCHING[c],), float(row[c]))
            for c in np.argsort(-np.nan_to_num(row, nan=-9), kind="stable")
            if np.isfinite(row[c])
        ]
        for row in scores
    ]
    grounded = assign(rankings, list(range(rows)), joint=True, touching=[(0, 1)])
    picked = tuple(TOUCHING.index(g.detection.boxes[0]) for g in grounded)
    options = [
        p for p in itertools.permutations(range(len(TOUCHING)), rows) if all(np.isfinite(scores[r, c]) for r, c in enumerate(p))
    ]
    total = {p: sum(scores[r, c] for r, c in enumerate(p)) for p in options}
    touching = [p for p in options if _touch_reference(TOUCHING[p[0]], TOUCHING[p[1]])]
    best = max(touching or options, key=total.get)
    assert total[picked] == pytest.approx(total[best])
    assert _touch_reference(TOUCHING[picked[0]], TOUCHING[picked[1]]) == bool(touching)
    assert (seed % 5 == 0) == (not touching)


def test_a_depth_relation_names_entities_that_touch_and_only_with_pixel_checks(monkeypatch, tiny_backbone):
    """comclip's pipeline asks the joint assignment for touching regions for the entities of a
    depth relation ("in front of", "behind"), where it reads relations from pixels."""
    from comclip import ComCLIP
    from comclip.parsing.base import SceneGraph
    from comclip.pipeline import model
    from comclip.pipeline.pixel_relations import overlapping_entities

    graph = SceneGraph.from_dict(
        {
            "entities": [{"id": 10 + k, "head": h, "phrase": h} for k, h in enumerate(("cat", "dog", "box"))],
            "relations": [
                {"subject": 12, "predicate": "behind", "object": 10},
                {"subject": 10, "predicate": "left of", "object": 11},
            ],
        }
    )
    assert overlapping_entities(graph) == [(2, 0)]
    from comclip.grounding.assignment import Grounded
    from comclip.imaging.files import load_image

    asked = []
    monkeypatch.setattr(
        model, "assign", lambda rankings, *a, **k: asked.append(k["touching"]) or [Grounded(None)] * len(rankings)
    )
    image = load_image(Image.new("RGB", (8, 8)))
    for check in ("pixels", "geometry"):
        ComCLIP(tiny_backbone, relation_check=check, assignment="joint")._layout(graph, [[], [], []], image)
    assert asked == [[(2, 0)], ()]


def _old_pick(detections, margin):
    """The pick of the pipeline before joint grounding, as it was written."""
    if not detections:
        return None
    if margin is None:
        return detections[0]
    top = detections[0].score
    close = [d for d in detections if d.score >= top - margin]
    boxes = tuple(dict.fromkeys(b for d in close for b in d.boxes))
    return Detection(boxes=boxes, score=top, label=detections[0].label)


@pytest.mark.parametrize("margin", [None, 0.0, 0.05, 0.3])
def test_argmax_with_a_union_margin_is_the_old_pick(margin):
    rng = random.Random(3)
    for _ in range(30):
        scores = np.array([[round(rng.uniform(0, 1), 2) for _ in REGIONS] for _ in range(3)])
        rankings = _rankings(scores)
        assert [g.detection for g in assign(rankings, [0, 1, 2], joint=False, union_margin=margin)] == [
            _old_pick(d, margin) for d in rankings
        ]


def test_no_detection_is_none_and_margin_needs_two():
    grounded = assign([[], [Detection((REGIONS[0],), 0.5)]], [0, 1], joint=True)
    assert grounded[0].detection is None and grounded[1].detection.boxes == (REGIONS[0],)
    assert ranking_margin([Detection((REGIONS[0],), 0.5)]) is None


@pytest.mark.parametrize("box", [Box(50.0, 2.0, 63.0, 15.0), Box(5, 5, 30, 30), Box(20, 40, 33, 62), Box(25, 25, 37, 37)])
@pytest.mark.parametrize("fill", ["mean", "background", "black"])
def test_multiscale_views_are_the_same_on_the_torch_and_pil_paths(box, fill):
    """Zoomed views, also where the window reaches beyond the image on any side."""
    from comclip.imaging.subimages import SubimageMaker, zoom_window
    from comclip.sandbox.pairs import make_pair

    image = make_pair("binding", 0, 0).scenes[0].render()
    pil = SubimageMaker([image], None).zoomed(0, box, fill, 2.5)
    tensor = SubimageMaker([image], "cpu").zoomed(0, box, fill, 2.5)
    x1, y1, x2, y2 = zoom_window(box, 2.5)
    assert pil.size == (x2 - x1, y2 - y1) == (tensor.shape[2], tensor.shape[1])
    assert np.array_equal(np.asarray(pil).transpose(2, 0, 1), tensor.numpy())


def test_background_fill_is_the_border_median():
    from PIL import Image

    from comclip.imaging.subimages import make_subimage

    image = Image.new("RGB", (20, 20), (10, 200, 30))
    image.paste((250, 0, 0), (8, 8, 12, 12))
    out = np.asarray(make_subimage(image, [Box(0, 0, 5, 5)], "background"))
    assert (out[10, 10] == (10, 200, 30)).all() and (out[2, 2] == (10, 200, 30)).all()


def test_joint_grounding_is_at_least_as_accurate_on_sandbox_scenes():
    """The clip grounder of the shipped model, multiscale views, each image's objects grounded
    jointly vs each by its top box (grounding_hits), on a few sandbox items."""
    from comclip.backbones import create_backbone
    from comclip.config import PipelineConfig
    from comclip.eval.benchmarks.datasets import load_dataset
    from comclip.eval.reports.grounding_accuracy import grounding_hits
    from comclip.grounding import create_grounder

    backbone = create_backbone("comclip/sandbox-bow", device="cpu")
    dataset = load_dataset("sandbox", seed=5, n=6)
    grounder = create_grounder(
        "clip", backbone, **PipelineConfig.layered(backbone.defaults, region="multiscale").grounder_options()
    )
    joint, argmax = grounding_hits(grounder, dataset, joint=True), grounding_hits(grounder, dataset, joint=False)
    assert len(joint) == len(argmax) == sum(len(b) for ex in dataset.examples for b in ex.boxes)
    assert sum(joint) >= sum(argmax)


def test_attributes_break_near_ties_between_candidates_of_the_head():
    from comclip.grounding.assignment import with_attributes

    head = [Detection((REGIONS[0],), 0.50), Detection((REGIONS[1],), 0.49), Detection((REGIONS[2],), 0.10)]
    phrase = [Detection((REGIONS[1],), 0.40), Detection((REGIONS[0],), 0.20)]  # REGIONS[2]: no phrase score
    ranked = with_attributes(head, phrase, 0.5)
    assert [d.boxes[0] for d in ranked] == [REGIONS[1], REGIONS[0], REGIONS[2]]
    assert [d.score for d in ranked] == pytest.approx([0.69, 0.60, 0.20])  # the floor of the phrase's scores
    assert with_attributes(head, [], 0.5) == head


def test_segment_proposals_find_objects():
    from PIL import Image, ImageDraw

    from comclip.grounding import Box

    image = Image.new("RGB", (120, 90), (90, 90, 90))
    draw = ImageDraw.Draw(image)
    draw.rectangle((10, 20, 29, 39), fill=(230, 20, 20))
    draw.ellipse((70, 40, 99, 69), fill=(20, 20, 230))
    boxes = segment_proposals(image)
    for truth in (Box(10, 20, 30, 40), Box(70, 40, 100, 70)):
        assert max(b.iou(truth) for b in boxes) > 0.8
    assert segment_proposals(Image.new("RGB", (50, 50), (10, 10, 10))) == []


def test_patch_grid_geometry():
    from comclip.backbones.base import PatchGrid
    from comclip.backbones.vit.tokens import centre_crop_geometry
    from comclip.grounding import Box

    grid = PatchGrid(torch.zeros(2, 3, 4), x0=10.0, y0=0.0, step_x=10.0, step_y=5.0)
    w = grid.overlap_weights([Box(10, 0, 20, 5), Box(15, 2.5, 40, 10), Box(0, 0, 5, 5)])
    assert w[0].tolist() == [50.0, 0, 0, 0, 0, 0]
    assert w[1].tolist() == [12.5, 25.0, 25.0, 25.0, 50.0, 50.0]  # x overlaps 5, 10, 10; y 2.5, 5
    assert w[2].sum() == 0  # left of the encoder's view
    assert PatchGrid.unpack(grid.pack()).x0 == 10.0
    assert centre_crop_geometry((448, 224), 224, 32) == (112.0, 0.0, 1.0, 1.0, 32, 7)
    assert centre_crop_geometry((100, 200), 50, 10) == (
        0.0,
        50.0,
        0.5,
        0.5,
        10,
        5,
    )  # resized to 50x100, 25 px cropped top = 50 original


def test_patch_grounder_reads_one_forward_pass(tiny_model_dir, rgb_image_path):
    from PIL import Image

    from comclip.backbones import create_backbone
    from comclip.cache.embeddings import MemoryCache
    from comclip.grounding import create_grounder
    from comclip.pipeline import ComCLIP

    backbone = CachedEncoder(create_backbone(str(tiny_model_dir)), MemoryCache())
    grounder = create_grounder("clip", backbone, region="patches")
    ranked = grounder.ground(Image.open(rgb_image_path).convert("RGB"), ["dog", "cat"])
    assert len(ranked) == 2 and len(ranked[0]) == len(grounder.candidates(Image.open(rgb_image_path).convert("RGB"))[0])
    assert len(backbone.cache) == 2 + 2  # global + patch tokens of the image, two prompts; no crops
    plain = ComCLIP(create_backbone(str(tiny_model_dir)), grounder=create_grounder("clip", backbone, region="patches"))
    fused = ComCLIP(backbone, grounder=grounder)
    assert torch.allclose(
        plain.score([rgb_image_path], ["a dog on a mat"]), fused.score([rgb_image_path], ["a dog on a mat"]), atol=1e-5
    )


def test_union_margin_grounds_to_every_close_box():
    from comclip.grounding import Box, Detection
    from comclip.grounding.assignment import assign

    detections = [Detection((Box(0, 0, 5, 5),), 0.50), Detection((Box(5, 5, 9, 9),), 0.49), Detection((Box(1, 1, 2, 2),), 0.40)]
    assert assign([detections], [0], joint=False)[0].detection.boxes == (Box(0, 0, 5, 5),)
    union = assign([detections], [0], joint=False, union_margin=0.02)[0].detection
    assert union.boxes == (Box(0, 0, 5, 5), Box(5, 5, 9, 9)) and union.score == 0.50
    assert assign([[]], [0], joint=False, union_margin=0.02)[0].detection is None


def _jittered_boxes(rng: random.Random, count: int) -> list[Box]:
    """Boxes of which many overlap near the same-region threshold, some equal, some lines."""
    boxes: list[Box] = []
    for _ in range(count):
        if boxes and rng.random() < 0.5:
            base = rng.choice(boxes)
            shift = rng.choice([0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
            boxes.append(Box(base.x1 + shift, base.y1, base.x2 + shift, base.y2 + rng.choice([0.0, 1.0])))
        else:
            x, y = rng.randrange(0, 40), rng.randrange(0, 40)
            boxes.append(Box(x, y, x + rng.choice([0, 5, 10, 12]), y + rng.randrange(5, 12)))
    return boxes


@pytest.mark.parametrize("seed", range(5))
def test_same_region_matrix_is_same_region_of_every_pair(seed):
    from comclip.grounding.assignment import same_region, same_region_matrix

    rng = random.Random(seed)
    a = _jittered_boxes(rng, 30)
    b = a[::3] + _jittered_boxes(rng, 10)
    matrix = same_region_matrix(a, b)
    assert matrix.tolist() == [[same_region(x, y) for y in b] for x in a]
    assert matrix.any() and not matrix.all()  # the boxes test both answers
    exactly, below = Box(0, 0, 7, 10), Box(0, 0, 6.9, 10)  # IoU with the first box: 0.7 and 0.69
    for copies in (1, 20):  # compared one by one, and as arrays
        assert same_region_matrix([Box(0, 0, 10, 10)], [exactly, below] * copies).tolist() == [[True, False] * copies]
    assert same_region_matrix(a[:3], b[:4]).tolist() == [[same_region(x, y) for y in b[:4]] for x in a[:3]]


def _reference_assign(rankings, groups):
    """The joint assignment as it was first written: regions found box by box with
    ``same_region``, the best detection in a region by scanning (a reference for the vectorised one)."""
    from comclip.grounding.assignment import _solve, same_region

    first: dict = {}
    for k, group in enumerate(groups):
        first.setdefault(group, k)
    order = {group: r for r, group in enumerate(first)}
    rows = [rankings[k] for k in first.values()]
    regions: list[Box] = []
    best: dict = {}
    for r, detections in enumerate(rows):
        for detection in detections:
            column = next((c for c, region in enumerate(regions) if same_region(region, detection.boxes[0])), None)
            if column is None:
                regions.append(detection.boxes[0])
                column = len(regions) - 1
            best.setdefault((r, column), detection.score)
    scores = np.full((len(rows), len(regions)), np.nan)
    for (r, column), value in best.items():
        scores[r, column] = value
    picked = _solve(scores)
    out = []
    for k, group in enumerate(groups):
        column = picked[order[group]]
        if column is None:
            out.append(rankings[k][0] if rankings[k] else None)
        else:
            out.append(next((d for d in rankings[k] if same_region(d.boxes[0], regions[column])), None))
    return out


def _reference_with_attributes(ranked, by_phrase, weight):
    from comclip.grounding.assignment import same_region

    floor = min(d.score for d in by_phrase)
    combined = [
        Detection(d.boxes, d.score + weight * next((p.score for p in by_phrase if same_region(p.boxes[0], d.boxes[0])), floor))
        for d in ranked
    ]
    return sorted(combined, key=lambda d: -d.score)


@pytest.mark.parametrize("seed", range(30))
def test_vectorised_assignment_equals_the_box_by_box_reference(seed):
    from comclip.grounding.assignment import with_attributes

    rng = random.Random(seed)
    boxes = _jittered_boxes(rng, rng.randrange(2, 25))
    rankings = []
    for _ in range(rng.randrange(1, 4)):
        chosen = rng.sample(boxes, rng.randrange(1, len(boxes) + 1))  # detector-like: each query its own boxes
        scored = sorted(((round(rng.random(), 2), b) for b in chosen), key=lambda t: -t[0])
        rankings.append([Detection((b,), s) for s, b in scored])
    groups = [rng.choice("abc") for _ in rankings]
    assert [g.detection for g in assign(rankings, groups, joint=True)] == _reference_assign(rankings, groups)
    assert with_attributes(rankings[0], rankings[-1], 0.1) == _reference_with_attributes(rankings[0], rankings[-1], 0.1)


def test_ground_many_ranks_each_image_as_the_reference_does_alone(tiny_backbone):
    """Candidates of several images (3, none and 5 boxes) ranked in one similarity: each
    image's ranking is its own candidates by rounded cosine, ties in candidate order."""
    from PIL import Image

    from comclip.grounding import create_grounder

    grounder = create_grounder("clip", tiny_backbone)
    generator = torch.Generator().manual_seed(3)
    dim = 8
    prompts = {q: torch.randint(-4, 5, (dim,), generator=generator) / 8 for q in ("cat", "dog")}
    grounder._prompts.update({grounder.prompt.format(q): v for q, v in prompts.items()})  # exact dyadic vectors
    images, candidates = [], []
    for n, count in enumerate((3, 0, 5)):
        image = Image.new("RGB", (40, 40), (n, 0, 0))
        embeddings = torch.randint(-2, 3, (count, dim), generator=generator) / 4
        if count:
            embeddings[-1] = embeddings[0]  # a tie: the earlier candidate ranks first
        boxes = [Box(k, k, k + 10.0, k + 10.0) for k in range(count)]
        grounder.adopt(image, f"image-{n}", boxes, embeddings)
        images.append(image)
        candidates.append((boxes, embeddings))
    queries = [["cat", "dog"], ["dog"], ["dog", "cat"]]
    ranked = grounder.ground_many(images, queries, [None] * 3)
    for (boxes, embeddings), asked, found in zip(candidates, queries, ranked):
        for query, detections in zip(asked, found):
            scores = [round(float(e @ prompts[query]), 5) for e in embeddings]
            order = sorted(range(len(boxes)), key=lambda k: (-scores[k], k))
            assert [(d.boxes[0], d.score) for d in detections] == [(boxes[k], scores[k]) for k in order]
    assert ranked[1] == [[]]
    assert grounder.ground(images[2], ["dog"]) == ranked[2][:1]


def test_small_assignments_are_scipys():
    """One or two entities are assigned by trying every assignment; where the best is clear of
    the next, it is the one scipy's linear_sum_assignment gives (missing scores included)."""
    from scipy.optimize import linear_sum_assignment

    from comclip.grounding.assignment import _solve_small

    rng = np.random.default_rng(0)
    decided = 0
    for _ in range(2000):
        scores = np.round(rng.random((rng.integers(1, 3), rng.integers(1, 7))), 2)
        scores[rng.random(scores.shape) < 0.25] = np.nan
        small = _solve_small(scores.tolist())
        if small is None:
            continue
        known = np.isfinite(scores)
        floor = (np.nanmin(scores) if known.any() else 0.0) - 1e6
        reference: list = [None] * len(scores)
        for r, c in zip(*linear_sum_assignment(np.where(known, scores, floor), maximize=True)):
            reference[r] = int(c) if known[r, c] else None
        assert small == reference
        decided += 1
    assert decided > 1800
