"""Masked candidates: a segment's or part's box whose sub-image shows its own pixels only
(``segment-masks``), the same region on every path that makes or keys a sub-image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from comclip.boxes import Box, MaskedBox, region_boxes, region_pixels
from comclip.grounding.proposals import mask_runs, propose, segment_proposals
from comclip.imaging.subimages import SubimageMaker, make_subimage, region_mask, subimage_key

BACKGROUND = (90, 100, 95)


def _touching_pair() -> Image.Image:
    """A yellow square with a purple disc drawn over its corner: one segment, two objects."""
    image = Image.new("RGB", (96, 96), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 55, 55), fill=(230, 200, 40))
    draw.ellipse((44, 40, 71, 67), fill=(150, 60, 200))
    return image


def test_mask_runs_cover_the_mask_exactly():
    """Row runs, taken on down while rows repeat them, are the mask and nothing else."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        height, width = rng.integers(1, 20, size=2)
        mask = rng.random((height, width)) < rng.uniform(0.05, 0.95)
        if rng.random() < 0.3:
            mask[:] = False
            y1, x1 = rng.integers(0, [height, width])
            mask[y1 : rng.integers(y1 + 1, height + 1), x1 : rng.integers(x1 + 1, width + 1)] = True
        painted = np.zeros_like(mask, dtype=int)
        for x1, y1, x2, y2 in mask_runs(mask):
            painted[y1:y2, x1:x2] += 1
        assert np.array_equal(painted, mask.astype(int))  # every pixel once
    square = np.zeros((10, 10), dtype=bool)
    square[2:8, 3:9] = True
    assert mask_runs(square) == [(3, 2, 9, 8)]
    assert mask_runs(np.zeros((4, 4), dtype=bool)) == []


def test_mask_runs_are_whole_row_runs_carried_down_as_far_as_they_go():
    """Checked by what the runs must be rather than by a second scan: each run's rows are
    whole runs of the mask (a pixel of background, or the mask's edge, on either side), the
    row above and the row below do not repeat it (it went down as far as it could), and the
    runs come by top row, then left end. With the exact cover, these fix the runs one way only."""
    rng = np.random.default_rng(3)
    for _ in range(300):
        height, width = rng.integers(1, 24, size=2)
        mask = rng.random((height, width)) < rng.uniform(0.05, 0.95)
        mask[rng.integers(0, height) :, : rng.integers(0, width + 1)] |= rng.random() < 0.5
        padded = np.pad(mask, 1)  # a frame of background: outside is never the mask
        runs = mask_runs(mask)
        painted = np.zeros(mask.shape, dtype=int)
        for x1, y1, x2, y2 in runs:
            painted[y1:y2, x1:x2] += 1
            rows = padded[y1 + 1 : y2 + 1]
            assert rows[:, x1 + 1 : x2 + 1].all() and not rows[:, x1].any() and not rows[:, x2 + 1].any()
            for y in (y1 - 1, y2):  # the row above and the row below, in the mask's rows
                repeats = padded[y + 1, x1 + 1 : x2 + 1].all() and not padded[y + 1, x1] and not padded[y + 1, x2 + 1]
                assert not repeats
        assert np.array_equal(painted, mask.astype(int))  # every pixel of the mask once, nothing else
        assert runs == sorted(runs, key=lambda run: (run[1], run[0]))


def test_masked_proposals_are_the_plain_boxes_with_their_pixels():
    """segment-masks proposes the boxes segment-parts does, each the bounds of its runs, and
    the disc's mask leaves out the square it overlaps."""
    image = _touching_pair()
    plain, masked = propose(image, "segment-parts"), propose(image, "segment-masks")
    assert [b.as_tuple() for b in masked] == [b.as_tuple() for b in plain]
    assert all(isinstance(b, MaskedBox) and b.runs for b in masked)
    for box in masked:
        runs = region_boxes([box])
        assert min(r.x1 for r in runs) >= box.x1 and max(r.x2 for r in runs) <= box.x2
        assert min(r.y1 for r in runs) >= box.y1 and max(r.y2 for r in runs) <= box.y2
    disc = min(masked, key=lambda b: abs(b.x1 - 44) + abs(b.y1 - 40))
    shown = region_mask(region_boxes([disc]), *image.size)
    pixels = np.asarray(image)
    yellow = (np.abs(pixels.astype(int) - (230, 200, 40)).sum(axis=-1) < 10) & shown
    assert shown.sum() > 0.6 * disc.area and yellow.sum() == 0


def test_a_larger_image_scales_its_runs_with_its_box():
    """Segments are found on a small copy: the runs are scaled back and cut to the box."""
    image = _touching_pair().resize((384, 384), Image.Resampling.NEAREST)
    for box in segment_proposals(image, parts=True, masks=True):
        assert isinstance(box, MaskedBox)
        assert all(box.x1 <= r.x1 < r.x2 <= box.x2 and box.y1 <= r.y1 < r.y2 <= box.y2 for r in box.runs)


def test_a_masked_box_makes_the_same_sub_image_everywhere():
    """PIL, tensors and the key agree: the sub-image of a masked box is that of its runs."""
    image = _touching_pair()
    box = next(b for b in propose(image, "segment-masks") if len(b.runs) > 3)
    runs = list(box.runs)
    for fill in ("black", "background", "mean"):
        reference = np.asarray(make_subimage(image, runs, fill))
        assert np.array_equal(np.asarray(make_subimage(image, [box], fill)), reference)
        tensor = SubimageMaker([image], "cpu").sub(0, [box], fill)
        assert np.array_equal(tensor.permute(1, 2, 0).numpy(), reference)
        assert subimage_key("d", [box], fill, *image.size) == subimage_key("d", runs, fill, *image.size)
    other = Box(60, 60, 80, 80)
    assert subimage_key("d", [box, other], "black", *image.size) == subimage_key("d", [*runs, other], "black", *image.size)
    assert region_pixels([box, other]) == [*box.run_pixels, other.pixels()]


def test_a_masked_box_reads_as_its_box_and_keys_apart_from_it():
    box = MaskedBox(10, 10, 20, 30, runs=(Box(10, 10, 20, 20), Box(12, 20, 18, 30)))
    plain = Box(10, 10, 20, 30)
    assert box.area == plain.area and box.iou(plain) == 1.0 and box.as_list() == plain.as_list()
    assert box != plain and hash(box) != hash(plain)
    assert subimage_key("d", [box], "black", 64, 64) != subimage_key("d", [plain], "black", 64, 64)
    cut = box.clipped(16, 64)
    assert isinstance(cut, MaskedBox) and cut.x2 == 16 and max(r.x2 for r in cut.runs) == 16
    assert box.scaled(2).runs[1] == Box(24, 40, 36, 60)
    known = MaskedBox.of_runs(list(box.runs), [r.pixels() for r in box.runs])
    assert known == box == MaskedBox.of_runs(list(box.runs)) and known.run_pixels == box.run_pixels


@pytest.mark.parametrize("seed", [0, 1])
def test_token_masks_of_many_boxes_are_their_union(seed):
    """The token path paints each region's boxes by corner sums: the union of the boxes'
    rounded view rectangles, as painted one by one."""
    from types import SimpleNamespace

    from comclip.backbones.vit.tokens import _view_masks

    rng = np.random.default_rng(seed)
    regions, geometries = [], []
    for _ in range(12):
        boxes = []
        for _ in range(rng.integers(1, 9)):
            x1, y1 = rng.uniform(-8, 70, size=2)
            width, height = rng.uniform(0.2, 30, size=2)
            boxes.append(Box(x1, y1, x1 + width, y1 + height))
        regions.append(boxes)
        scale = rng.uniform(0.5, 2.0, size=2)
        geometries.append(SimpleNamespace(x0=rng.uniform(-4, 4), y0=rng.uniform(-4, 4), scale_x=scale[0], scale_y=scale[1]))
    extent = 48
    masks = _view_masks(regions, geometries, extent)
    for mask, boxes, g in zip(masks, regions, geometries):
        painted = torch.zeros(extent, extent, dtype=torch.bool)
        for b in boxes:
            x1, x2 = (round(min(max((v - g.x0) * g.scale_x, 0), extent)) for v in (b.x1, b.x2))
            y1, y2 = (round(min(max((v - g.y0) * g.scale_y, 0), extent)) for v in (b.y1, b.y2))
            painted[y1:y2, x1:x2] = True
        assert torch.equal(mask, painted)


def test_comclip_plus_grounds_masked_parts_where_the_model_proposes_segments():
    from comclip.config import PipelineConfig
    from comclip.methods import method_configs

    configs = method_configs(["comclip", "comclip-plus"], PipelineConfig(proposals="segments", region="mask"))
    assert configs["comclip"].proposals == "segments" and configs["comclip-plus"].proposals == "segment-masks"


def test_a_cached_ranking_keeps_its_masked_boxes():
    """A warm run reads the grounder's rankings back from the cache: masked boxes come back
    with their runs (their sub-images are keyed by them), plain ones in the format as before."""
    from comclip.grounding import Detection
    from comclip.pipeline.memory import PACKED, PACKED_RUNS, detections_record, read_detections

    masked = MaskedBox(1.5, 2, 10, 12, runs=(Box(1.5, 2, 10, 7), Box(3, 7, 9, 12)))
    ranking = [
        Detection(boxes=(masked,), score=0.5),
        Detection(boxes=(Box(0, 0, 5, 5), masked), score=0.25),
        Detection(boxes=(Box(1, 1, 3, 3),), score=0.1),
    ]
    record = detections_record(ranking)
    assert record.startswith(PACKED_RUNS) and list(read_detections(record)) == ranking
    back = read_detections(record)[1].boxes[1]
    assert isinstance(back, MaskedBox) and back.runs == masked.runs
    plain = [Detection(boxes=(Box(0, 0, 5, 5),), score=0.3)]
    assert detections_record(plain).startswith(PACKED) and list(read_detections(detections_record(plain))) == plain
