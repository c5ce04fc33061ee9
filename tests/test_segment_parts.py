"""Segment parts: objects that touch or overlap are boxed apart (colour, narrow joins, thin
lines), and an image whose segments hold one object each keeps its proposals."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from comclip.boxes import Box
from comclip.grounding.proposals import propose, segment_proposals

BACKGROUND = (90, 100, 95)


def _noisy(image: Image.Image, seed: int = 0) -> Image.Image:
    """The sandbox's kind of pixel noise, so the median and tolerances are exercised."""
    pixels = np.asarray(image, dtype=np.int16) + np.random.default_rng(seed).integers(-8, 9, (*image.size[::-1], 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _best(boxes: list[Box], truth: Box) -> float:
    return max((b.iou(truth) for b in boxes), default=0.0)


def _scene(draw_items) -> Image.Image:
    image = Image.new("RGB", (96, 96), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for kind, box, colour in draw_items:
        getattr(draw, kind)(box, fill=colour)
    return _noisy(image)


def test_a_shape_drawn_over_another_is_boxed_apart_and_the_one_behind_whole():
    behind, front = Box(20, 20, 56, 56), Box(44, 40, 72, 68)
    image = _scene([("rectangle", (20, 20, 55, 55), (230, 200, 40)), ("ellipse", (44, 40, 71, 67), (150, 60, 200))])
    plain, parts = segment_proposals(image), segment_proposals(image, parts=True)
    assert len(plain) == 1 and _best(plain, behind) < 0.7  # one segment: both shapes in one box
    assert _best(parts, front) > 0.85 and _best(parts, behind) > 0.85  # the hidden corner is not the box's edge


def test_touching_objects_of_one_colour_are_cut_at_their_narrow_join():
    colour = (240, 240, 240)
    left, right = Box(10, 30, 40, 60), Box(50, 34, 76, 60)
    image = _scene(
        [
            ("rectangle", (10, 30, 39, 59), colour),
            ("rectangle", (50, 34, 75, 59), colour),
            ("rectangle", (40, 44, 49, 45), colour),
        ]
    )
    parts = segment_proposals(image, parts=True)
    assert _best(segment_proposals(image), left) < 0.6
    assert _best(parts, left) > 0.8 and _best(parts, right) > 0.8  # grown back by the erosion: into the join


def test_a_thin_line_leaving_an_object_is_left_out_of_its_part():
    body = Box(20, 20, 44, 44)
    image = Image.new("RGB", (96, 96), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 43, 43), fill=(40, 160, 60))
    draw.line((44, 32, 80, 70), fill=(40, 160, 60), width=2)  # a diagonal pointer, as the sandbox draws
    image = _noisy(image)
    assert _best(segment_proposals(image), body) < 0.5
    assert _best(segment_proposals(image, parts=True), body) > 0.85


def test_the_part_a_thin_line_leaves_keeps_the_shape_whole():
    """The median and the erosion that cut a pointer off its source also take the shape's tips:
    the part is grown back, so its box reaches the shape's edges (a sub-image of a box inside
    them cuts them off) with at most a stub of the line (11 of 20 sources before, 15 now)."""
    from comclip.sandbox.pairs import minimal_pairs

    whole = []
    for pair in minimal_pairs("direction", 3, 10):
        for scene in pair.scenes:
            source = scene.objects[scene.pointers[0][0]].box
            boxes = segment_proposals(scene.render(), parts=True)
            whole.append(any(_covers(b, source, 1.0) and _covers(source, b, 3.0) for b in boxes))
    assert np.mean(whole) >= 0.7


def _covers(outer: Box, inner: Box, slack: float) -> bool:
    """Whether ``outer`` reaches every edge of ``inner`` to within ``slack`` pixels."""
    return (
        outer.x1 <= inner.x1 + slack
        and outer.y1 <= inner.y1 + slack
        and outer.x2 >= inner.x2 - slack
        and outer.y2 >= inner.y2 - slack
    )


@pytest.mark.parametrize("kind", ["star", "ellipse", "rectangle"])
def test_one_object_per_segment_adds_no_part(kind):
    image = Image.new("RGB", (64, 64), BACKGROUND)
    draw = ImageDraw.Draw(image)
    if kind == "star":
        centre, outer, inner = np.array([30.0, 30.0]), 12.0, 5.0
        angles = np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, outer, inner)
        draw.polygon([tuple(centre + r * np.array([np.cos(a), -np.sin(a)])) for a, r in zip(angles, radii)], fill=(220, 40, 40))
    else:
        getattr(draw, kind)((10, 12, 30, 32), fill=(220, 40, 40))
    draw.ellipse((40, 40, 58, 58), fill=(40, 40, 220))
    image = _noisy(image)
    assert segment_proposals(image, parts=True) == segment_proposals(image)


def test_the_classic_sandbox_scenes_keep_their_proposals_unless_objects_touch():
    """A segment holding one shape (a small star's tips included) gives no part: classic
    scenes gain parts only where their two objects touch and share one segment."""
    from comclip.sandbox.pairs import minimal_pairs

    checked = 0
    for task in ("binding", "object-swap", "order-swap", "substitution"):
        for pair in minimal_pairs(task, 301, 40):
            for scene in pair.scenes:
                image = scene.render()
                plain = segment_proposals(image)
                if all(sum(box.iou(o.box) > 0 for o in scene.objects) <= 1 for box in plain):
                    checked += 1
                    assert segment_proposals(image, parts=True) == plain
    assert checked >= 300  # of 320 images


def test_crowded_and_overlapping_sandbox_objects_get_boxes_of_their_own():
    """Every named object of the new tasks' scenes is a candidate far more often with parts
    (a development seed's figure, with room: the goal is the grounding, measured by the eval)."""
    from comclip.sandbox.pairs import minimal_pairs

    found = {False: [], True: []}
    for task in ("depth", "crowded-binding", "crowded-object-swap", "crowded-depth"):
        for pair in minimal_pairs(task, 3, 8):
            for scene in pair.scenes:
                image = scene.render()
                for parts in found:
                    boxes = segment_proposals(image, parts=parts)
                    found[parts] += [_best(boxes, o.box) >= 0.5 for o in scene.objects if o.named]
    assert np.mean(found[True]) >= 0.85 > np.mean(found[False]) + 0.2


def test_propose_by_kind():
    image = _scene([("rectangle", (10, 10, 30, 30), (230, 20, 20))])
    assert propose(image, "segment-parts") == propose(image, "segments")
    grid = propose(image, "grid")
    assert propose(image, "grid+segment-parts")[-len(grid) :] == grid


def test_a_grounder_of_segment_parts_names_their_version(tiny_backbone):
    """Cached rankings and search indexes are keyed by the grounder's description: candidates
    from segment parts never mix with plain segments', nor with another version's parts."""
    from comclip.grounding.clip_grounder import CLIPGrounder
    from comclip.grounding.segment_parts import VERSION

    parts = CLIPGrounder(tiny_backbone, proposals="segment-parts", region="mask").describe()
    plain = CLIPGrounder(tiny_backbone, proposals="segments", region="mask").describe()
    masks = CLIPGrounder(tiny_backbone, proposals="segment-masks", region="mask").describe()
    assert parts["segment_parts"] == masks["segment_parts"] == VERSION and "segment_parts" not in plain
    assert masks != parts
    assert {k: v for k, v in parts.items() if k not in ("proposals", "segment_parts")} == {
        k: v for k, v in plain.items() if k != "proposals"
    }


def test_the_morphology_is_scipys():
    """The shifted-copy median, erosion and dilation give scipy.ndimage's results exactly, at
    the array's edges too, on random windows and masks of many shapes."""
    from scipy import ndimage

    from comclip.grounding.segment_parts import _dilated, _eroded, _median3

    rng = np.random.default_rng(0)
    for _ in range(100):
        height, width = rng.integers(1, 25, size=2)
        window = (rng.integers(0, 5, size=(height, width, 3)) * 50 + rng.random((height, width, 3))).astype(np.float32)
        assert np.array_equal(_median3(window), ndimage.median_filter(window, size=(3, 3, 1), mode="nearest"))
        ties = rng.integers(0, 3, size=(height, width, 3)).astype(np.float32)  # pixels are whole numbers: many ties
        assert np.array_equal(_median3(ties), ndimage.median_filter(ties, size=(3, 3, 1), mode="nearest"))
        mask = rng.random((height, width)) < rng.uniform(0.3, 0.95)
        assert np.array_equal(_eroded(mask), ndimage.binary_erosion(mask))
        for times in (1, 2, 3):
            assert np.array_equal(_dilated(mask, times), ndimage.binary_dilation(mask, iterations=times))


def test_the_peaks_maximum_the_bounds_and_the_border_median_are_the_references():
    """The distance peaks' window maximum is scipy's where its square lies inside the array
    (every value a peak may have), the border median is numpy's to the bit, and a mask's
    bounds are those of its pixels, on random arrays of many shapes."""
    from scipy import ndimage

    from comclip.grounding.proposals import _column_medians
    from comclip.grounding.segment_parts import PEAK_WINDOW, _window_maximum, mask_bounds

    rng = np.random.default_rng(1)
    reach = PEAK_WINDOW // 2
    for _ in range(100):
        height, width = rng.integers(1, 30, size=2)
        values = rng.random((height, width)) * rng.integers(1, 9)
        inside = (slice(reach, height - reach), slice(reach, width - reach))
        found = _window_maximum(values, PEAK_WINDOW)
        assert found.shape == values.shape and (found >= values).all()
        assert np.array_equal(found[inside], ndimage.maximum_filter(values, size=PEAK_WINDOW)[inside])
        border = (rng.random((rng.integers(1, 300), 3)) * 255).astype(np.float32)
        assert np.array_equal(_column_medians(border), np.median(border, axis=0))
        mask = rng.random((height, width)) < rng.uniform(0.01, 0.5)
        if mask.any():
            ys, xs = np.nonzero(mask)
            assert mask_bounds(mask) == (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)


def test_parts_found_in_a_segments_window_are_those_of_the_whole_image():
    """Parts are looked for in each segment's box and a small margin: on sandbox scenes with
    touching, overlapping and crowded objects, the boxes are those the whole image gives."""
    from scipy import ndimage

    from comclip.grounding.proposals import PART_MARGIN
    from comclip.grounding.segment_parts import segment_parts
    from comclip.sandbox.pairs import minimal_pairs

    checked = 0
    for task in ("depth", "direction", "crowded-binding", "crowded-depth"):
        for pair in minimal_pairs(task, seed=11, n=6):
            raw = np.asarray(pair.scenes[0].render(), dtype=np.float32)
            background = np.median(np.concatenate([raw[0], raw[-1], raw[:, 0], raw[:, -1]]), axis=0)
            labels, _ = ndimage.label(np.linalg.norm(raw - background, axis=-1) > 40)
            for index, (ys, xs) in enumerate(ndimage.find_objects(labels), start=1):
                y1, x1 = max(ys.start - PART_MARGIN, 0), max(xs.start - PART_MARGIN, 0)
                window = (slice(y1, ys.stop + PART_MARGIN), slice(x1, xs.stop + PART_MARGIN))
                whole = [_box(part) for part in segment_parts(raw, labels == index, background, 8.0)]
                cut = [_box(part, x1, y1) for part in segment_parts(raw[window], labels[window] == index, background, 8.0)]
                assert cut == whole
                checked += len(whole)
    assert checked > 20  # parts were found, not only compared empty


def _box(mask: np.ndarray, left: int = 0, top: int = 0) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return left + int(xs.min()), top + int(ys.min()), left + int(xs.max()) + 1, top + int(ys.max()) + 1


def test_objects_of_one_colour_that_overlap_widely_get_a_box_each():
    """No narrow join separates two discs of one colour that overlap by a sixth of their width
    (a join 13 pixels wide): the maxima of the segment's distance to its edge (the discs'
    centres) do."""
    colour = (230, 60, 60)
    left, right = Box(10, 20, 35, 45), Box(30, 22, 55, 47)
    image = _scene([("ellipse", (10, 20, 34, 44), colour), ("ellipse", (30, 22, 54, 46), colour)])
    plain, parts = segment_proposals(image), segment_proposals(image, parts=True)
    assert _best(plain, left) < 0.6 and _best(plain, right) < 0.6
    assert _best(parts, left) > 0.7 and _best(parts, right) > 0.7


def test_a_star_touching_a_disc_of_its_colour_keeps_its_arms():
    """Two objects of one colour split at their distance peaks: each pixel goes to the disc it
    lies deepest in, so the star's arms are its own (a square around its small inscribed disc
    boxed it at IoU 0.56) and the disc is boxed whole."""
    import math

    points = []
    for k in range(10):
        radius, angle = (16 if k % 2 == 0 else 7), -math.pi / 2 + k * math.pi / 5
        points.append((56 + radius * math.cos(angle), 40 + radius * math.sin(angle)))
    star = Box(min(x for x, _ in points), min(y for _, y in points), max(x for x, _ in points) + 1, max(y for _, y in points) + 1)
    colour = (240, 240, 240)
    image = _scene([("ellipse", (10, 22, 45, 57), colour), ("polygon", points, colour)])
    parts = segment_proposals(image, parts=True)
    assert _best(parts, star) > 0.7 and _best(parts, Box(10, 22, 46, 58)) > 0.85


def test_a_distance_peak_needs_a_second_object():
    """One shape, however noisy its edge, has one distinct peak and gives no square; two
    squares joined by a wide bridge give one square each, cut to the mask."""
    from comclip.grounding.segment_parts import _distance_peaks

    single = np.zeros((40, 40), dtype=bool)
    single[5:35, 8:30] = True
    single[5, 8:30:3] = False  # a ragged edge makes maxima of its own
    assert list(_distance_peaks(single)) == []
    double = np.zeros((40, 60), dtype=bool)
    double[5:25, 5:25] = True
    double[8:30, 30:52] = True
    double[10:20, 25:30] = True  # a bridge 10 pixels wide: no erosion of 1-2 pixels cuts it
    squares = list(_distance_peaks(double))
    assert len(squares) == 2 and all((square <= double).all() for square in squares)
    columns = sorted(np.flatnonzero(square.any(axis=0))[[0, -1]].tolist() for square in squares)
    assert columns[0][1] < 30 <= columns[1][0] + 5  # one square on each side of the bridge


def test_a_shape_reaching_out_of_a_larger_one_of_its_colour_is_boxed(monkeypatch):
    """A star overlapping a disc of its colour (development seed 100's crowded object swap 2,
    as the generator made it before distractors kept clear of their colour): its distance
    peak lies 1.2-1.5 of the disc's radius from the disc's, so it is a second object now and
    its share is a candidate; at 1.5 it had none at IoU 0.5."""
    from comclip.grounding import segment_parts
    from comclip.sandbox.scenes import Scene, SceneObject

    objects = (
        SceneObject("circle", "purple", "large", Box(19.66, 3.83, 41.38, 25.54), named=False),
        SceneObject("star", "purple", "large", Box(21.81, 18.43, 43.99, 40.61)),
        SceneObject("diamond", "white", "small", Box(34.2, 2.21, 46.55, 14.55)),
    )
    star = objects[1]
    image = Scene(objects, (173, 167, 155), 1922852360).render()
    assert _best(segment_proposals(image, parts=True, masks=True), star.box) >= 0.5
    monkeypatch.setattr(segment_parts, "PEAK_APART", 1.5)
    assert _best(segment_proposals(image, parts=True, masks=True), star.box) < 0.5
