"""The parts of many segments at once (``comclip.grounding.segment_stacks``) against the
single-segment steps: the same masks, in the same order, on every sandbox task."""

from __future__ import annotations

import numpy as np
from PIL import Image

from comclip.grounding.proposals import propose, propose_many, segment_proposals_many
from comclip.grounding.segment_parts import segment_parts
from comclip.grounding.segment_stacks import STACK_CELLS, _stacks, segment_parts_many
from comclip.sandbox.pairs import ALL_TASKS, minimal_pairs


def _images(n: int = 3, seed: int = 7) -> list[Image.Image]:
    """Scenes of every task, and some of them resized (other sizes share the stacks, and
    images larger than the analysed copy are shrunk first)."""
    scenes = [scene.render() for task in ALL_TASKS for pair in minimal_pairs(task, seed, n) for scene in pair.scenes]
    return scenes + [im.resize((150, 97)) for im in scenes[::7]] + [im.resize((300, 220)) for im in scenes[3::11]]


def _segments(images: list[Image.Image]) -> list[tuple]:
    """Every kept segment of ``images`` as the proposals hand it to the parts."""
    from comclip.grounding.proposals import _segments as found

    return [segment for image in images for segment, _, _ in found(image, 128, 40.0, 0.002, 0.5)[1]]


def test_the_parts_of_many_segments_are_each_segments_own_in_order():
    segments = _segments(_images())
    many = segment_parts_many(segments)
    one = [list(segment_parts(*segment)) for segment in segments]
    assert len(many) == len(one) == len(segments)
    for ours, theirs in zip(many, one):
        assert len(ours) == len(theirs)
        assert all(a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(ours, theirs))
    # every kind of outcome was met: no parts, one part, several (colour groups, narrow joins, peaks)
    counts = {len(parts) for parts in one}
    assert {0, 1} <= counts and max(counts) >= 3


def test_proposals_of_many_images_are_each_images_own():
    images = _images(n=2, seed=8)
    for kind in ("segments", "segment-parts", "segment-masks", "grid+segment-masks"):
        many = propose_many(images, kind)
        one = [propose(image, kind) for image in images]
        assert many == one
        assert [[getattr(b, "runs", None) for b in boxes] for boxes in many] == [
            [getattr(b, "runs", None) for b in boxes] for boxes in one
        ]
    assert segment_proposals_many([]) == [] and propose_many([], "segment-masks") == []
    blank = Image.new("RGB", (40, 30), (10, 10, 10))
    assert propose_many([blank, images[0]], "segment-masks")[0] == []


def test_stacks_hold_each_mask_once_within_their_cells():
    rng = np.random.default_rng(0)
    shapes = [(int(h), int(w)) for h, w in rng.integers(3, 140, size=(300, 2))]
    seen = []
    for batch, (height, width) in _stacks(shapes, 2):
        assert all(shapes[n][0] + 4 <= height and shapes[n][1] + 4 <= width for n in batch)
        assert len(batch) == 1 or len(batch) * height * width <= STACK_CELLS
        seen += batch
    assert sorted(seen) == list(range(len(shapes)))
