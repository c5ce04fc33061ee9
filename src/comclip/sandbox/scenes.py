"""Procedural scenes: coloured shapes on a noisy tinted background, with exact boxes and a
caption grammar (single objects, conjunctions with attributes, spatial relations).

Everything is a pure function of a seed, so a scene, its captions and its boxes can be
regenerated anywhere. The world is small on purpose: 6 shapes x 7 colours x 2 sizes, 64 px
images, which a CLIP-architecture model can learn on a CPU in half an hour, while the
compositional failures of real CLIP (attribute binding, word order) appear in it plainly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from comclip.boxes import Box, stored_box
from comclip.imaging.masks import mask_region

IMAGE_SIZE = 64
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "star")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "green": (35, 165, 55),
    "blue": (45, 75, 235),
    "yellow": (240, 220, 40),
    "purple": (150, 55, 205),
    "orange": (250, 135, 25),
    "white": (248, 248, 248),
}
#: Object side in pixels (at 64 px) for each size word: far enough apart to be unambiguous.
SIZES: dict[str, tuple[int, int]] = {"small": (12, 15), "large": (21, 25)}
#: Relation words, as "A <relation> B".
RELATIONS = ("to the left of", "to the right of", "above", "below")
#: Relations that no pair of boxes shows, only pixels: which object is drawn over the other
#: (their boxes overlap), and which one a pointer is attached to.
DEPTH_RELATIONS = ("in front of", "behind")
DIRECTION_RELATIONS = ("points at",)
ATTRIBUTES = ("colour", "size", "shape")
_SUPERSAMPLE = 4
_MIN_GAP = 2  # pixels between object boxes


@dataclass(frozen=True)
class SceneObject:
    """One shape: what it is and exactly where (``box`` in pixels of the rendered image)."""

    shape: str
    colour: str
    size: str
    box: Box
    #: False for a crowded scene's distractor: drawn, but named by no caption.
    named: bool = True

    @property
    def phrase(self) -> str:
        """The noun phrase naming this object, e.g. ``"a small red circle"``."""
        return f"a {self.size} {self.colour} {self.shape}"

    def with_attribute(self, attribute: str, value: str) -> SceneObject:
        """The same object with one attribute changed; a new size keeps the box's centre."""
        if attribute == "size":
            cx, cy = self.box.centre
            side = sum(SIZES[value]) / 2
            return replace(self, size=value, box=Box(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))
        return replace(self, **{attribute: value})  # type: ignore[arg-type]  # a str field (colour, shape)


@dataclass(frozen=True)
class Scene:
    """A list of objects on a background; :meth:`render` draws it deterministically, objects in
    order (a later one over an earlier one where they overlap), each pointer (``(from, to)``
    indices of objects) under them all."""

    objects: tuple[SceneObject, ...]
    background: tuple[int, int, int]
    noise_seed: int
    size: int = IMAGE_SIZE
    pointers: tuple[tuple[int, int], ...] = ()

    def render(self) -> Image.Image:
        """The scene as an RGB image (shapes drawn supersampled, then Gaussian pixel noise)."""
        big = self.size * _SUPERSAMPLE
        canvas = Image.new("RGB", (big, big), self.background)
        draw = ImageDraw.Draw(canvas)
        for source, target in self.pointers:
            tail, tip, head = pointer_geometry(self.objects[source].box, self.objects[target].box)
            colour = COLOURS[self.objects[source].colour]
            scaled = [(x * _SUPERSAMPLE, y * _SUPERSAMPLE) for x, y in (tail, tip)]
            draw.line(scaled, fill=colour, width=round(POINTER_WIDTH * _SUPERSAMPLE))
            draw.polygon([(x * _SUPERSAMPLE, y * _SUPERSAMPLE) for x, y in head], fill=colour)
        for obj in self.objects:
            _draw_shape(draw, obj.shape, obj.box.scaled(_SUPERSAMPLE), COLOURS[obj.colour])
        small = np.asarray(canvas.resize((self.size, self.size), Image.Resampling.BOX), dtype=np.float32)
        noise = np.random.default_rng(self.noise_seed).normal(0.0, 6.0, small.shape)
        return Image.fromarray(np.clip(small + noise, 0, 255).astype(np.uint8), "RGB")

    def with_objects(self, objects) -> Scene:
        return replace(self, objects=tuple(objects))

    def boxes(self) -> list[Box]:
        return [obj.box for obj in self.objects]

    def shown_regions(self) -> list[Box]:
        """Each object's pixels that show (those no object drawn after it covers), as a masked
        box; one wholly hidden keeps its whole box."""
        masks = [shape_mask(obj, self.size) for obj in self.objects]
        covered = np.zeros((self.size, self.size), dtype=bool)
        shown: list[Box] = []
        for obj, mask in zip(reversed(self.objects), reversed(masks)):  # the last drawn first
            shown.append(mask_region(mask & ~covered) or obj.box)
            covered |= mask
        return shown[::-1]

    def shown_boxes(self) -> list[Box]:
        """The box of each object's pixels that show (:meth:`shown_regions`): an object partly
        hidden is boxed as what is seen of it, as COCO boxes objects; one wholly hidden keeps
        its whole box."""
        return [stored_box(seen.as_tuple()) for seen in self.shown_regions()]

    def named_shown(self) -> list[tuple[SceneObject, Box]]:
        """Each named object with the box of what shows of it (:meth:`shown_boxes`), the one
        list both the dataset's truth and the pairs export read."""
        return [(obj, shown) for obj, shown in zip(self.objects, self.shown_boxes()) if obj.named]


#: A pointer's line width, its head's length and half-width, and its gap to the target's box, in pixels.
POINTER_WIDTH, HEAD_LENGTH, HEAD_HALF_WIDTH, POINTER_GAP = 1.5, 4.0, 2.5, 2.5


def _ray_box(origin: tuple[float, float], direction: tuple[float, float], box: Box) -> tuple[float, float]:
    """Where the ray ``origin + t * direction`` enters and leaves ``box`` (slab method)."""
    near, far = -math.inf, math.inf
    for o, d, low, high in ((origin[0], direction[0], box.x1, box.x2), (origin[1], direction[1], box.y1, box.y2)):
        if abs(d) < 1e-12:
            if not low <= o <= high:
                return math.inf, -math.inf
            continue
        t1, t2 = sorted(((low - o) / d, (high - o) / d))
        near, far = max(near, t1), min(far, t2)
    return near, far


def _pointer_line(source: Box, target: Box) -> tuple[tuple[float, float], tuple[float, float], float, float]:
    """A pointer's line: ``source``'s centre, the unit direction towards ``target``'s, and how
    far along it the line leaves ``source``'s box and stops (:data:`POINTER_GAP` before
    ``target``'s)."""
    (sx, sy), (tx, ty) = source.centre, target.centre
    length = math.hypot(tx - sx, ty - sy)
    direction = ((tx - sx) / length, (ty - sy) / length)
    leave = _ray_box((sx, sy), direction, source)[1]
    return (sx, sy), direction, leave, _ray_box((sx, sy), direction, target)[0] - POINTER_GAP


def pointer_geometry(source: Box, target: Box) -> tuple[tuple[float, float], tuple[float, float], list]:
    """A pointer from ``source``'s centre (drawn under the shape, so it leaves it at its
    outline) towards ``target``'s centre, stopping :data:`POINTER_GAP` before its box: the
    line's tail and tip, and the head's triangle."""
    (sx, sy), (ux, uy), _, stop = _pointer_line(source, target)
    tip = (sx + ux * stop, sy + uy * stop)
    base = (tip[0] - ux * HEAD_LENGTH, tip[1] - uy * HEAD_LENGTH)
    head = [
        tip,
        (base[0] - uy * HEAD_HALF_WIDTH, base[1] + ux * HEAD_HALF_WIDTH),
        (base[0] + uy * HEAD_HALF_WIDTH, base[1] - ux * HEAD_HALF_WIDTH),
    ]
    return (sx, sy), tip, head


def pointer_box(source: Box, target: Box) -> Box:
    """The box of the part of a pointer outside its source's box (where the relation shows)."""
    (sx, sy), tip, head = pointer_geometry(source, target)
    length = math.hypot(tip[0] - sx, tip[1] - sy)  # the direction as drawn, from the tip
    leave = _ray_box((sx, sy), ((tip[0] - sx) / length, (tip[1] - sy) / length), source)[1]
    start = (sx + (tip[0] - sx) * leave / length, sy + (tip[1] - sy) * leave / length)
    xs, ys = [start[0], *(p[0] for p in head)], [start[1], *(p[1] for p in head)]
    pad = POINTER_WIDTH / 2
    return Box(min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad)


def pointer_length(source: Box, target: Box) -> float:
    """How far a pointer reaches outside its source's box, to its tip."""
    _, _, leave, stop = _pointer_line(source, target)
    return stop - leave


def shape_mask(obj: SceneObject, size: int = IMAGE_SIZE) -> np.ndarray:
    """The pixels ``obj``'s shape covers, as a boolean ``[size, size]`` array (drawn at twice the
    size and halved, counting a pixel at least half covered)."""
    canvas = Image.new("L", (2 * size, 2 * size), 0)
    _draw_shape(ImageDraw.Draw(canvas), obj.shape, obj.box.scaled(2), 255)
    return np.asarray(canvas.resize((size, size), Image.Resampling.BOX)) >= 128


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: Box, colour) -> None:
    x1, y1, x2, y2 = box.x1, box.y1, box.x2, box.y2
    cx, cy, r = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2
    if shape == "circle":
        draw.ellipse((x1, y1, x2, y2), fill=colour)
    elif shape == "square":
        inset = r * 0.1
        draw.rectangle((x1 + inset, y1 + inset, x2 - inset, y2 - inset), fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, y1), (x2, y2), (x1, y2)], fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, y1), (x2, cy), (cx, y2), (x1, cy)], fill=colour)
    elif shape == "cross":
        t = r * 0.36
        draw.rectangle((cx - t, y1, cx + t, y2), fill=colour)
        draw.rectangle((x1, cy - t, x2, cy + t), fill=colour)
    elif shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.45
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle) + r * 0.08))
        draw.polygon(points, fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


# -- sampling -----------------------------------------------------------------------------


def random_background(rng: np.random.Generator) -> tuple[int, int, int]:
    """A grey of any brightness (near black to light), slightly tinted."""
    grey = rng.uniform(20, 190)
    red, green, blue = (int(np.clip(grey + rng.uniform(-18, 18), 0, 255)) for _ in range(3))
    return red, green, blue


def too_close(box: Box, others) -> bool:
    return any(
        box.x1 < o.x2 + _MIN_GAP and o.x1 < box.x2 + _MIN_GAP and box.y1 < o.y2 + _MIN_GAP and o.y1 < box.y2 + _MIN_GAP
        for o in others
    )


def place_boxes(rng: np.random.Generator, sides, size: int = IMAGE_SIZE, tries: int = 200) -> list[Box] | None:
    """Non-overlapping square boxes with the given sides, uniformly placed; None if they don't fit."""
    for _ in range(tries):
        boxes: list[Box] = []
        for side in sides:
            for _ in range(50):
                x, y = rng.uniform(1, size - 1 - side), rng.uniform(1, size - 1 - side)
                box = Box(float(x), float(y), float(x + side), float(y + side))
                if not too_close(box, boxes):
                    boxes.append(box)
                    break
            else:
                break
        if len(boxes) == len(sides):
            return boxes
    return None


def random_attributes(rng: np.random.Generator) -> tuple[str, str, str]:
    """(shape, colour, size) drawn uniformly."""
    return SHAPES[rng.integers(len(SHAPES))], list(COLOURS)[rng.integers(len(COLOURS))], list(SIZES)[rng.integers(len(SIZES))]


def random_scene(rng: np.random.Generator, n_objects: int, distinct: bool = True) -> Scene:
    """A scene of ``n_objects`` random objects; with ``distinct`` no two share shape and colour."""
    while True:
        attrs = [random_attributes(rng) for _ in range(n_objects)]
        if distinct and len({(s, c) for s, c, _ in attrs}) < n_objects:
            continue
        sides = [rng.uniform(*SIZES[size]) for _, _, size in attrs]
        boxes = place_boxes(rng, sides)
        if boxes is None:
            continue
        objects = tuple(SceneObject(s, c, z, b) for (s, c, z), b in zip(attrs, boxes))
        return Scene(objects, random_background(rng), int(rng.integers(2**31)))


def relation_between(a: SceneObject, b: SceneObject, min_offset: float = 6.0, dominance: float = 1.5) -> str | None:
    """The relation word that is unambiguously true of "a ... b", or None if none clearly is."""
    (ax, ay), (bx, by) = a.box.centre, b.box.centre
    dx, dy = bx - ax, by - ay
    if abs(dx) >= min_offset and abs(dx) >= dominance * abs(dy):
        return "to the left of" if dx > 0 else "to the right of"
    if abs(dy) >= min_offset and abs(dy) >= dominance * abs(dx):
        return "above" if dy > 0 else "below"
    return None


PARTIAL_RATE = 0.25


def partial_phrase(obj: SceneObject, rng: np.random.Generator, rate: float = PARTIAL_RATE) -> str:
    """The object's phrase, in ``rate`` of cases with the size, the colour or both left out
    (real captions are not exhaustive, and grounding queries name just the noun)."""
    u = rng.uniform() / max(rate, 1e-9) * PARTIAL_RATE
    if u >= PARTIAL_RATE:
        return obj.phrase
    if u < 0.1:
        return f"a {obj.shape}"
    if u < 0.18:
        return f"a {obj.colour} {obj.shape}"
    return f"a {obj.size} {obj.shape}"


def conjunction(objects, phrases=None) -> str:
    """ "a small red circle and a large blue square" (commas before the last "and")."""
    phrases = list(phrases) if phrases is not None else [obj.phrase for obj in objects]
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def relation_caption(a: SceneObject, relation: str, b: SceneObject, phrases=None) -> str:
    first, second = phrases if phrases is not None else (a.phrase, b.phrase)
    return f"{first} {relation} {second}"


def scene_graph(caption: str, objects, relation: str | None = None) -> dict:
    """The true scene graph of a caption the grammar wrote about ``objects`` (a conjunction, or
    with ``relation`` "objects[0] <relation> objects[1]"), as ``comclip parse --json`` prints one."""
    entities = [
        {"id": n, "head": o.shape, "phrase": f"{o.size} {o.colour} {o.shape}", "attributes": [o.size, o.colour]}
        for n, o in enumerate(objects)
    ]
    relations = [{"subject": 0, "predicate": relation, "object": 1}] if relation else []
    return {"text": caption, "entities": entities, "relations": relations}


def training_example(rng: np.random.Generator, partial_rate: float = PARTIAL_RATE) -> tuple[Scene, str]:
    """One (scene, true caption) pair from the training distribution.

    15% single-object scenes with their phrase (so entity phrases of ComCLIP are in
    distribution), the rest 2-3 objects described by a conjunction in random order (45%) or a
    spatial relation between two of them (40%).
    """
    u = rng.uniform()
    if u < 0.15:
        scene = random_scene(rng, 1)
        return scene, partial_phrase(scene.objects[0], rng, partial_rate)
    scene = random_scene(rng, int(rng.integers(2, 4)))
    objects = list(scene.objects)
    pairs = [(a, b) for a in objects for b in objects if a is not b and relation_between(a, b)]
    if u < 0.6 or not pairs:
        ordered = [objects[i] for i in rng.permutation(len(objects))]
        return scene, conjunction(ordered, [partial_phrase(o, rng, partial_rate) for o in ordered])
    a, b = pairs[rng.integers(len(pairs))]
    predicate = relation_between(a, b)
    assert predicate is not None  # the pairs were chosen for having one
    return scene, relation_caption(a, predicate, b, (partial_phrase(a, rng, partial_rate), partial_phrase(b, rng, partial_rate)))


def vocabulary() -> list[str]:
    """Every word the caption grammar can produce (the relations only pixels show included)."""
    words = {"a", "and", "the", "of", "to", "left", "right", "above", "below", ",", "in", "front", "behind", "points", "at"}
    words.update(SHAPES, COLOURS, SIZES)
    return sorted(words)
