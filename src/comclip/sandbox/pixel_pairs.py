"""Minimal pairs that box positions cannot decide: relations only pixels show, and crowded scenes.

- ``depth``: two objects whose shapes overlap; image 1 draws the other one on top, every box
  where it was. Captions "A in front of B" / "B in front of A" (subset ``in front of``), or
  the same with ``behind``.
- ``direction``: a pointer leaves the subject towards the object; image 1 attaches it to the
  other object, aimed back. Captions "A points at B" / "B points at A".
- ``crowded-binding``, ``crowded-object-swap``, ``crowded-depth``, ``crowded-direction``: the
  same pairs with 1-3 distractors added (3-5 objects): each distractor shares a shape or a
  colour with a named object, is named by neither caption (no distractor has a named object's
  shape and colour, in either image), may lie partly under a named object of another colour
  (drawn first: one of its own colour would leave no edge between them), and keeps clear of
  the pointer.

Each pair knows its scene graphs, every object's true box (distractors flagged; what shows of
a partly hidden one: :meth:`~comclip.sandbox.scenes.Scene.shown_boxes`) and the box
where its relation shows (:attr:`MinimalPair.relation_boxes`: the overlap of the two boxes,
the pointer), so grounding, parsing and scoring errors can be told apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from comclip.boxes import Box
from comclip.sandbox.classic_pairs import CLASSIC_BUILDERS, MinimalPair, two_objects
from comclip.sandbox.scenes import (
    COLOURS,
    DEPTH_RELATIONS,
    DIRECTION_RELATIONS,
    IMAGE_SIZE,
    PARTIAL_RATE,
    SHAPES,
    SIZES,
    Scene,
    SceneObject,
    partial_phrase,
    pointer_box,
    pointer_length,
    random_background,
    relation_caption,
    scene_graph,
    shape_mask,
    too_close,
)

#: How much the two shapes of a depth pair overlap, as a share of the smaller one's pixels:
#: enough that the one on top visibly covers the other, little enough that both stay whole.
OVERLAP_SHARE = (0.15, 0.45)
#: How far a pointer reaches beyond its source's box at least, in pixels (at 64 px).
MIN_POINTER = 6.0
#: Objects in a crowded scene, the two named ones included.
CROWD = (3, 5)
#: How much of a distractor's box may lie under a named object's box.
MAX_HIDDEN = 0.35


def _overlapping_objects(rng: np.random.Generator) -> tuple[SceneObject, SceneObject]:
    """Two objects (shape, colour and size all different) whose shapes overlap by
    :data:`OVERLAP_SHARE`; the first is drawn first."""
    while True:
        shapes = rng.choice(len(SHAPES), 2, replace=False)
        colours = rng.choice(len(COLOURS), 2, replace=False)
        sizes = list(SIZES)[:: 1 if rng.uniform() < 0.5 else -1]
        sides = [rng.uniform(*SIZES[s]) for s in sizes]
        x, y = rng.uniform(1, IMAGE_SIZE - 1 - sides[0], 2)
        angle, reach = rng.uniform(0, 2 * math.pi), rng.uniform(0.35, 0.75) * (sides[0] + sides[1]) / 2
        cx, cy = x + sides[0] / 2 + reach * math.cos(angle), y + sides[0] / 2 + reach * math.sin(angle)
        boxes = [
            Box(x, y, x + sides[0], y + sides[0]),
            Box(cx - sides[1] / 2, cy - sides[1] / 2, cx + sides[1] / 2, cy + sides[1] / 2),
        ]
        if not all(b.x1 >= 1 and b.y1 >= 1 and b.x2 <= IMAGE_SIZE - 1 and b.y2 <= IMAGE_SIZE - 1 for b in boxes):
            continue
        a, b = (SceneObject(SHAPES[shapes[k]], list(COLOURS)[colours[k]], sizes[k], boxes[k]) for k in range(2))
        mask_a, mask_b = shape_mask(a), shape_mask(b)
        share = (mask_a & mask_b).sum() / max(1, min(mask_a.sum(), mask_b.sum()))
        if OVERLAP_SHARE[0] <= share <= OVERLAP_SHARE[1]:
            return a, b


def _depth(rng: np.random.Generator, item_id: str) -> MinimalPair:
    back, front = _overlapping_objects(rng)
    word = DEPTH_RELATIONS[rng.integers(len(DEPTH_RELATIONS))]
    subject, target = (front, back) if word == "in front of" else (back, front)
    background, noise = random_background(rng), int(rng.integers(2**31))
    scenes = (Scene((back, front), background, noise), Scene((front, back), background, noise))
    captions = (relation_caption(subject, word, target), relation_caption(target, word, subject))
    graphs = (scene_graph(captions[0], (subject, target), word), scene_graph(captions[1], (target, subject), word))
    overlap = back.box.intersection(front.box)
    return MinimalPair(item_id, "depth", word, scenes, captions, graphs, (overlap, overlap))


def _direction(rng: np.random.Generator, item_id: str) -> MinimalPair | None:
    scene, a, b = two_objects(rng)
    if min(pointer_length(a.box, b.box), pointer_length(b.box, a.box)) < MIN_POINTER:
        return None
    word = DIRECTION_RELATIONS[0]
    scenes = (replace(scene, pointers=((0, 1),)), replace(scene, pointers=((1, 0),)))
    captions = (relation_caption(a, word, b), relation_caption(b, word, a))
    predicate = "point at"  # the verb's lemma, as a parser gives it (and the report compares it)
    graphs = (scene_graph(captions[0], (a, b), predicate), scene_graph(captions[1], (b, a), predicate))
    return MinimalPair(
        item_id, "direction", word, scenes, captions, graphs, (pointer_box(a.box, b.box), pointer_box(b.box, a.box))
    )


def _distractor(rng: np.random.Generator, named: list[SceneObject], taken: set, placed: list[Box], clear: list[Box]):
    """One distractor sharing a shape or a colour with a named object, or None if none fits."""
    for _ in range(100):
        like = named[rng.integers(len(named))]
        shape, colour = like.shape, like.colour
        if rng.uniform() < 0.5:
            colour = list(COLOURS)[rng.integers(len(COLOURS))]
        else:
            shape = SHAPES[rng.integers(len(SHAPES))]
        size = list(SIZES)[rng.integers(len(SIZES))]
        side = rng.uniform(*SIZES[size])
        x, y = rng.uniform(1, IMAGE_SIZE - 1 - side, 2)
        box = Box(x, y, x + side, y + side)
        if (shape, colour) in taken or too_close(box, placed + clear) or _badly_hidden(box, colour, named):
            continue
        return SceneObject(shape, colour, size, box, named=False)
    return None


def _badly_hidden(box: Box, colour: str, named: list[SceneObject]) -> bool:
    """Whether a distractor at ``box`` would lie under a named object by more than
    :data:`MAX_HIDDEN` of its box, or at all under one of its own colour (the two would draw
    as one silhouette, with no edge between them)."""
    for obj in named:
        hidden = box.intersection(obj.box).area
        if hidden > MAX_HIDDEN * box.area or (hidden > 0 and obj.colour == colour):
            return True
    return False


def _with_distractors(rng: np.random.Generator, pair: MinimalPair, task: str) -> MinimalPair | None:
    """``pair`` with 1-3 distractors drawn first in both images."""
    named = [o for scene in pair.scenes for o in scene.objects]
    taken = {(o.shape, o.colour) for o in named}
    distractors: list[SceneObject] = []
    for _ in range(int(rng.integers(CROWD[0], CROWD[1] + 1)) - 2):
        found = _distractor(rng, named, taken, [d.box for d in distractors], list(pair.relation_boxes))
        if found is None:
            return None
        distractors.append(found)
        taken.add((found.shape, found.colour))
    k = len(distractors)

    def crowd(scene: Scene) -> Scene:
        return replace(scene, objects=(*distractors, *scene.objects), pointers=tuple((i + k, j + k) for i, j in scene.pointers))

    return replace(pair, task=task, scenes=(crowd(pair.scenes[0]), crowd(pair.scenes[1])))


def crowded(task: str, base: Callable[..., MinimalPair | None]) -> Callable[..., MinimalPair | None]:
    """The builder of ``task``: ``base``'s pairs in crowded scenes."""

    def build(rng: np.random.Generator, item_id: str) -> MinimalPair | None:
        pair = base(rng, item_id)
        return None if pair is None else _with_distractors(rng, pair, task)

    return build


PIXEL_BUILDERS = {"depth": _depth, "direction": _direction}
_CROWDED_BASES = {"binding": CLASSIC_BUILDERS["binding"], "object-swap": CLASSIC_BUILDERS["object-swap"], **PIXEL_BUILDERS}
#: The tasks box positions cannot decide, in the order their random streams are numbered.
NEW_BUILDERS = {
    **PIXEL_BUILDERS,
    **{f"crowded-{name}": crowded(f"crowded-{name}", base) for name, base in _CROWDED_BASES.items()},
}


def pixel_training_example(rng: np.random.Generator, partial_rate: float = PARTIAL_RATE) -> tuple[Scene, str]:
    """One (scene, true caption) pair of a relation only pixels show, from the training
    distribution: a depth relation between two overlapping shapes, or a pointer, in half the
    cases among 1-3 distractors (the tasks' items come from other random streams)."""
    pair: MinimalPair | None = _depth(rng, "training") if rng.uniform() < 0.5 else None
    while pair is None:
        pair = _direction(rng, "training")
    if rng.uniform() < 0.5:
        pair = _with_distractors(rng, pair, pair.task) or pair
    shown = int(rng.integers(2))
    scene, graph = pair.scenes[shown], pair.graphs[shown]
    subject, target = (next(o for o in scene.objects if o.named and o.phrase.endswith(e["phrase"])) for e in graph["entities"])
    phrases = (partial_phrase(subject, rng, partial_rate), partial_phrase(target, rng, partial_rate))
    return scene, relation_caption(subject, pair.subset, target, phrases)
