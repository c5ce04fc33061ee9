"""The sandbox's classic minimal pairs, Winoground-style: two images, two captions with the
same words (or one word apart), caption c true of image c only.

Tasks:

- ``binding``: two objects; image 1 swaps their colours (subset ``colour``) or sizes
  (``size``); the captions swap the attribute words between the nouns.
- ``object-swap``: two objects; image 1 swaps their shapes in place; the captions swap the
  nouns and keep the attributes where they are.
- ``order-swap``: a spatial relation; image 1 swaps the objects' positions; the captions swap
  subject and object ("A left of B" / "B left of A").
- ``substitution``: image 1 changes one attribute of one object; the captions differ in that
  one word; subsets ``colour``, ``size``, ``shape``.

Every item keeps its two scenes, so the true boxes of every object are known. Items are a
pure function of (task, seed, index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from comclip.sandbox.scenes import (
    COLOURS,
    IMAGE_SIZE,
    SHAPES,
    SIZES,
    Scene,
    SceneObject,
    conjunction,
    place_boxes,
    random_background,
    relation_between,
    relation_caption,
    scene_graph,
    too_close,
)

#: The four classic tasks: what a run that names no task evaluates.
TASKS = ("binding", "object-swap", "order-swap", "substitution")
_VALUES = {"shape": SHAPES, "colour": tuple(COLOURS), "size": tuple(SIZES)}


@dataclass(frozen=True)
class MinimalPair:
    """Caption c describes scene c; ``subset`` names the attribute or relation varied;
    ``graphs`` are the captions' true scene graphs (for ``--parser given``)."""

    id: str
    task: str
    subset: str
    scenes: tuple[Scene, Scene]
    captions: tuple[str, str]
    graphs: tuple[dict, dict] | tuple[()] = ()
    #: Per scene, where the relation shows (the pointer, the overlap), where the task has one.
    relation_boxes: tuple = ()


def two_objects(rng: np.random.Generator, require_relation: bool = False) -> tuple[Scene, SceneObject, SceneObject]:
    """A two-object scene; the objects differ in shape, colour and size (so any swap is visible)."""
    while True:
        shapes = rng.choice(len(SHAPES), 2, replace=False)
        colours = rng.choice(len(COLOURS), 2, replace=False)
        sizes = list(SIZES)[:: 1 if rng.uniform() < 0.5 else -1]
        sides = [rng.uniform(*SIZES[s]) for s in sizes]
        boxes = place_boxes(rng, sides)
        if boxes is None:
            continue
        a, b = (SceneObject(SHAPES[shapes[k]], list(COLOURS)[colours[k]], sizes[k], boxes[k]) for k in range(2))
        if require_relation and relation_between(a, b) is None:
            continue
        return Scene((a, b), random_background(rng), int(rng.integers(2**31))), a, b


def _same_place(obj: SceneObject, like: SceneObject) -> SceneObject:
    """``obj`` moved to ``like``'s centre (keeping its own size)."""
    (cx, cy), (ox, oy) = like.box.centre, obj.box.centre
    from comclip.boxes import Box

    return SceneObject(
        obj.shape,
        obj.colour,
        obj.size,
        Box(obj.box.x1 + cx - ox, obj.box.y1 + cy - oy, obj.box.x2 + cx - ox, obj.box.y2 + cy - oy),
    )


def inside(scene: Scene) -> bool:
    """Every object's box lies within the image."""
    return all(b.x1 >= 0 and b.y1 >= 0 and b.x2 <= IMAGE_SIZE and b.y2 <= IMAGE_SIZE for b in scene.boxes())


def fits_apart(scene: Scene) -> bool:
    """Every box within the image and no two boxes closer than the scenes' gap."""
    boxes = scene.boxes()
    return inside(scene) and not any(too_close(b, boxes[:i]) for i, b in enumerate(boxes))


def _binding(rng, item_id):
    scene, a, b = two_objects(rng)
    attribute = "colour" if rng.uniform() < 0.5 else "size"
    a2, b2 = a.with_attribute(attribute, getattr(b, attribute)), b.with_attribute(attribute, getattr(a, attribute))
    return _conjunctions(item_id, "binding", attribute, scene, (a, b), (a2, b2))


def _object_swap(rng, item_id):
    scene, a, b = two_objects(rng)
    a2, b2 = a.with_attribute("shape", b.shape), b.with_attribute("shape", a.shape)
    return _conjunctions(item_id, "object-swap", "shape", scene, (a, b), (a2, b2))


def _order_swap(rng, item_id):
    scene, a, b = two_objects(rng, require_relation=True)
    relation = relation_between(a, b)
    other = scene.with_objects((_same_place(a, b), _same_place(b, a)))
    a2, b2 = other.objects
    if relation_between(b2, a2) != relation:
        return None
    captions = (relation_caption(a, relation, b), relation_caption(b2, relation, a2))
    graphs = (scene_graph(captions[0], (a, b), relation), scene_graph(captions[1], (b2, a2), relation))
    return MinimalPair(item_id, "order-swap", relation, (scene, other), captions, graphs)


def _substitution(rng, item_id):
    scene, a, b = two_objects(rng)
    attribute = ("colour", "size", "shape")[rng.integers(3)]
    taken = {getattr(a, attribute), getattr(b, attribute)} if attribute != "size" else {a.size}
    choices = [v for v in _VALUES[attribute] if v not in taken]
    a2 = a.with_attribute(attribute, choices[rng.integers(len(choices))])
    return _conjunctions(item_id, "substitution", attribute, scene, (a, b), (a2, b))


def _conjunctions(item_id: str, task: str, subset: str, scene: Scene, objects, other_objects) -> MinimalPair:
    """A pair whose captions are conjunctions of each scene's objects, in the same order."""
    captions = (conjunction(objects), conjunction(other_objects))
    graphs = (scene_graph(captions[0], objects), scene_graph(captions[1], other_objects))
    return MinimalPair(item_id, task, subset, (scene, scene.with_objects(other_objects)), captions, graphs)


CLASSIC_BUILDERS = {"binding": _binding, "object-swap": _object_swap, "order-swap": _order_swap, "substitution": _substitution}
