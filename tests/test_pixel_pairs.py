"""Sandbox pairs that box positions cannot decide (comclip.sandbox.pixel_pairs): the two images
of a depth or direction pair differ only where the relation shows, crowded scenes hold
distractors no caption names, and the classic tasks are what they were."""

from __future__ import annotations

import numpy as np
import pytest

from comclip.sandbox.pairs import ALL_TASKS, TASKS, make_pair, minimal_pairs
from comclip.sandbox.pixel_pairs import CROWD, OVERLAP_SHARE
from comclip.sandbox.scenes import shape_mask


def _changed(pair) -> np.ndarray:
    """Pixels the two images differ in by more than their shared noise could."""
    first, second = (np.asarray(s.render(), dtype=np.float32) for s in pair.scenes)
    return np.abs(first - second).max(axis=-1) > 1


def _within(boxes, pad: int = 1) -> np.ndarray:
    inside = np.zeros((64, 64), dtype=bool)
    for box in boxes:
        x1, y1, x2, y2 = box.pixels()
        inside[max(0, y1 - pad) : y2 + pad, max(0, x1 - pad) : x2 + pad] = True
    return inside


@pytest.mark.parametrize("task", ["depth", "crowded-depth"])
def test_a_depth_pair_changes_only_which_shape_is_on_top(task):
    for pair in minimal_pairs(task, seed=3, n=20):
        first, second = pair.scenes
        assert sorted(o.box.as_list() for o in first.objects) == sorted(o.box.as_list() for o in second.objects)
        back, front = [o for o in first.objects if o.named]
        assert [o for o in second.objects if o.named] == [front, back]  # drawn the other way round
        share = (shape_mask(back) & shape_mask(front)).sum() / min(shape_mask(back).sum(), shape_mask(front).sum())
        assert OVERLAP_SHARE[0] <= share <= OVERLAP_SHARE[1]
        changed = _changed(pair)
        assert changed.sum() > 0 and not (changed & ~_within(pair.relation_boxes[:1])).any()
        word = pair.subset
        subject = front if word == "in front of" else back
        assert pair.captions[0].startswith(subject.phrase + " " + word)


@pytest.mark.parametrize("task", ["direction", "crowded-direction"])
def test_a_direction_pair_changes_only_the_pointer_and_where_it_leaves(task):
    for pair in minimal_pairs(task, seed=3, n=20):
        first, second = pair.scenes
        assert first.objects == second.objects
        ((source, target),), ((back, forth),) = first.pointers, second.pointers
        assert (back, forth) == (target, source)
        a, b = first.objects[source], first.objects[target]
        assert pair.captions == (f"{a.phrase} points at {b.phrase}", f"{b.phrase} points at {a.phrase}")
        changed = _changed(pair)
        allowed = _within([a.box, b.box, *pair.relation_boxes])
        assert changed.sum() > 10 and not (changed & ~allowed).any()
        for region in pair.relation_boxes:  # the pointer shows outside both boxes
            assert (changed & _within([region], pad=0) & ~_within([a.box, b.box], pad=0)).sum() > 3


@pytest.mark.parametrize("task", [t for t in ALL_TASKS if t.startswith("crowded-")])
def test_crowded_distractors_share_a_shape_or_colour_and_are_never_named(task):
    counts = set()
    for pair in minimal_pairs(task, seed=4, n=25):
        named = [o for s in pair.scenes for o in s.objects if o.named]
        distractors = [o for o in pair.scenes[0].objects if not o.named]
        assert distractors == [o for o in pair.scenes[1].objects if not o.named]  # the same in both images
        counts.add(len(pair.scenes[0].objects))
        for d in distractors:
            assert any(d.shape == o.shape or d.colour == o.colour for o in named)
            assert all((d.shape, d.colour) != (o.shape, o.colour) for o in named)
            assert d.phrase not in pair.captions[0] and d.phrase not in pair.captions[1]
            under = [o for o in named if d.box.intersection(o.box).area > 0]
            assert all(o.colour != d.colour for o in under)  # an edge shows between them
    assert counts == set(range(CROWD[0], CROWD[1] + 1))


def test_shown_boxes_are_what_no_later_object_covers():
    """The box of each object's pixels that show: the one on top is whole, the one behind is
    cut to what is left of it, against a reference computed from the masks here."""
    cut = 0
    for pair in minimal_pairs("crowded-depth", seed=6, n=6):
        for scene in pair.scenes:
            masks = [shape_mask(o) for o in scene.objects]
            for k, box in enumerate(scene.shown_boxes()):
                seen = masks[k] & ~np.logical_or.reduce([np.zeros((64, 64), bool), *masks[k + 1 :]])
                ys, xs = np.nonzero(seen)
                assert box.as_list() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
                whole = np.nonzero(masks[k])
                cut += box.area < (np.ptp(whole[0]) + 1) * (np.ptp(whole[1]) + 1)
            assert scene.shown_boxes()[-1] != scene.objects[-1].box  # pixel bounds, not the shape's box
    assert cut >= 6  # the one behind, in most images


def test_the_classic_tasks_keep_their_items_and_the_default_run():
    """A new task never changes an old one's items (their random streams keep their numbers),
    and a run that names no task evaluates the classic four; groups name the new ones."""
    from comclip.sandbox.dataset import TASK_GROUPS, parse_tasks

    assert ALL_TASKS[: len(TASKS)] == TASKS
    assert parse_tasks(None) == list(TASKS) and parse_tasks("all") == list(ALL_TASKS)
    assert parse_tasks("pixels,crowded-depth") == ["depth", "direction", "crowded-depth"]
    assert set(TASK_GROUPS["crowded"]) | set(TASK_GROUPS["pixels"]) | set(TASKS) == set(ALL_TASKS)
    first = make_pair("binding", 5, 0)  # as the code before the new tasks made it
    assert first.captions == ("a small blue circle and a large yellow diamond", "a small yellow circle and a large blue diamond")


def test_the_oracle_and_the_true_boxes_cover_the_named_objects_only(tmp_path):
    from comclip.eval.reports.grounding_accuracy import grounding_hits, oracle_grounder
    from comclip.sandbox.dataset import load

    dataset = load(task="crowded-object-swap,depth,direction", seed=2, n=4)
    assert all(len(boxes) == 2 for ex in dataset.examples for boxes in ex.boxes)
    hits = grounding_hits(oracle_grounder(dataset), dataset)
    assert len(hits) == 3 * 4 * 2 * 2 and all(hits)
    assert [len(shown) for ex in dataset.examples for shown in ex.shown] == [2] * 3 * 4 * 2


def test_the_masks_oracle_grounds_each_object_to_its_pixels_that_show():
    """``--grounder oracle-masks``: each named object's region is its shape less what the
    objects drawn after it cover, computed here from the shapes; the box oracle gives the shape's box."""
    from comclip.boxes import MaskedBox, region_boxes
    from comclip.errors import InputError
    from comclip.eval.reports.grounding_accuracy import grounding_hits, known_boxes
    from comclip.grounding import create_grounder
    from comclip.grounding.pool import GrounderPool
    from comclip.imaging.subimages import region_mask
    from comclip.sandbox.dataset import load

    dataset = load(task="depth,crowded-depth", seed=3, n=3)
    masks, boxes = (create_grounder(name, None, known=known_boxes(dataset)) for name in ("oracle-masks", "oracle"))
    assert masks.name == "oracle-masks" and all(grounding_hits(masks, dataset))
    hidden = 0
    for k, example in enumerate(dataset.examples):
        pair = make_pair(example.subset, 3, k % 3)
        for image, scene in zip(example.images, pair.scenes):
            for n, obj in enumerate(scene.objects):
                if not obj.named:
                    continue
                later = np.logical_or.reduce([shape_mask(o) for o in scene.objects[n + 1 :]] + [np.zeros((64, 64), bool)])
                truth = shape_mask(obj) & ~later
                (found,) = [
                    d.boxes[0]
                    for d in masks.ground(image, [obj.shape])[0]
                    if (region_mask(region_boxes(d.boxes), 64, 64) == truth).all()
                ]
                assert isinstance(found, MaskedBox) and obj.box in [d.boxes[0] for d in boxes.ground(image, [obj.shape])[0]]
                hidden += bool((shape_mask(obj) & later).any())
    assert hidden >= 6  # the one behind, in every depth image
    with pytest.raises(InputError, match="--grounder oracle-masks needs data with known boxes"):
        GrounderPool(None).get("oracle-masks")


def test_pixel_training_captions_are_true_of_their_scenes():
    """What `comclip sandbox train --pixel-share` adds: each caption names two objects of its
    scene and the relation between them as drawn (which is on top; which one the pointer leaves)."""
    from comclip.sandbox.pixel_pairs import pixel_training_example

    rng = np.random.default_rng(0)
    words = set()
    for _ in range(60):
        scene, caption = pixel_training_example(rng)
        word = next(w for w in ("in front of", "behind", "points at") if f" {w} " in caption)
        words.add(word)
        first, second = caption.split(f" {word} ")
        named = [n for n, o in enumerate(scene.objects) if o.named]
        subject, target = (
            next(n for n in named if set(p.split()) <= set(scene.objects[n].phrase.split())) for p in (first, second)
        )
        if word == "points at":
            assert scene.pointers == ((subject, target),)
        else:
            assert (subject > target) == (word == "in front of")  # drawn later: on top
    assert words == {"in front of", "behind", "points at"}


def test_training_takes_a_share_of_pixel_relations(cli, tmp_path):
    code, _, err = cli("sandbox", "train", "--out", tmp_path / "m", "--pixel-share", "1.5")
    assert code == 2 and "--pixel-share" in err and len(err.strip().splitlines()) == 1
