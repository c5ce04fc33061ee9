"""Boxes in pixel coordinates and their arithmetic, shared by every stage that deals in regions
(grounding, sub-images, evaluation, the sandbox)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from comclip.errors import InputError


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixel coordinates, ``x2``/``y2`` exclusive. ``source`` names where
    a box read from a user's file came from, for errors found later (a box outside its image);
    it takes no part in comparisons."""

    x1: float
    y1: float
    x2: float
    y2: float
    source: str = field(default="", compare=False, repr=False)

    @property
    def width(self) -> float:
        return max(0.0, self.x2 - self.x1)

    @property
    def height(self) -> float:
        return max(0.0, self.y2 - self.y1)

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2

    @property
    def area(self) -> float:
        return _area(self)

    def clipped(self, width: int, height: int) -> Box:
        """This box cut to an image of ``width`` x ``height``; an error if nothing is left."""
        if 0.0 <= self.x1 < self.x2 <= width and 0.0 <= self.y1 < self.y2 <= height:
            return self  # already inside (the common case)
        box = Box(max(0.0, self.x1), max(0.0, self.y1), min(float(width), self.x2), min(float(height), self.y2))
        if box.area <= 0:
            where = f"{self.source}: " if self.source else ""
            raise InputError(f"{where}box {self.as_list()} has zero area inside the {width}x{height} image")
        return box

    def pixels(self) -> tuple[int, int, int, int]:
        """Integer pixel bounds covering the box (floor of the start, ceiling of the end)."""
        return math.floor(self.x1), math.floor(self.y1), math.ceil(self.x2), math.ceil(self.y2)

    def intersection(self, other: Box) -> Box:
        """The box both boxes cover (empty, area 0, where they do not meet)."""
        return Box(max(self.x1, other.x1), max(self.y1, other.y1), min(self.x2, other.x2), min(self.y2, other.y2))

    def iou(self, other: Box) -> float:
        # The intersection's area as Box(...).area computes it, without making the box.
        inter = max(0.0, min(self.x2, other.x2) - max(self.x1, other.x1)) * max(
            0.0, min(self.y2, other.y2) - max(self.y1, other.y1)
        )
        union = _area(self) + _area(other) - inter
        return inter / union if union > 0 else 0.0

    def scaled(self, factor: float) -> Box:
        return Box(self.x1 * factor, self.y1 * factor, self.x2 * factor, self.y2 * factor, self.source)

    def as_tuple(self) -> tuple[float, float, float, float]:
        return self.x1, self.y1, self.x2, self.y2

    def as_list(self) -> list[float]:
        return [round(v, 2) for v in (self.x1, self.y1, self.x2, self.y2)]

    @classmethod
    def from_sequence(cls, values: Sequence[float], source: str = "box") -> Box:
        try:
            x1, y1, x2, y2 = (float(v) for v in values)
        except (TypeError, ValueError):
            raise InputError(f"{source}: a box must be [x1, y1, x2, y2], got {values!r}") from None
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):  # NaN read as 0, infinity as the whole image
            raise InputError(f"{source}: box {list(values)} holds a value that is not a finite number")
        if x2 <= x1 or y2 <= y1:
            raise InputError(f"{source}: box {list(values)} has zero area (needs x2 > x1 and y2 > y1)")
        return cls(x1, y1, x2, y2, "" if source == "box" else source)


@dataclass(frozen=True)
class MaskedBox(Box):
    """A box whose region is a mask inside it: the union of ``runs`` (boxes, row runs of the
    mask's pixels). A sub-image of it shows the mask's pixels only, so what touches or overlaps
    the object inside its box is left out; everything that reads where a region is (geometry,
    IoU, drawing, the crop fill) reads the box."""

    runs: tuple[Box, ...] = ()

    @classmethod
    def of_runs(cls, runs: Sequence[Box], pixels: Sequence[tuple[int, int, int, int]] | None = None) -> MaskedBox:
        """The masked box of ``runs``, bounded by them; ``pixels``, where the caller has them (a
        pair's union: its two boxes'), become its :attr:`run_pixels` rather than being made again."""
        bounds = bounding_box(runs)
        box = cls(bounds.x1, bounds.y1, bounds.x2, bounds.y2, runs=tuple(runs))
        if pixels is not None:
            box.__dict__["run_pixels"] = tuple(pixels)  # where cached_property keeps it
        return box

    def clipped(self, width: int, height: int) -> Box:
        box = Box.clipped(self, width, height)
        if box is self:
            return self
        runs = tuple(r.intersection(box) for r in self.runs)
        return MaskedBox(box.x1, box.y1, box.x2, box.y2, self.source, tuple(r for r in runs if r.area > 0) or (box,))

    @cached_property
    def run_pixels(self) -> tuple[tuple[int, int, int, int], ...]:
        """Each run's integer pixel bounds (see :meth:`Box.pixels`), computed once."""
        return tuple(run.pixels() for run in self.runs)

    @cached_property
    def run_corners(self) -> np.ndarray:
        """``[runs, 4]``: each run's ``x1, x2, y1, y2`` (the order the token path reads them), made once."""
        return np.array([(r.x1, r.x2, r.y1, r.y2) for r in self.runs], dtype=np.float64).reshape(-1, 4)

    @cached_property
    def run_text(self) -> str:
        """:attr:`run_pixels` as a sub-image key writes them (``x1,y1,x2,y2;...``), made once."""
        return ";".join(",".join(map(str, p)) for p in self.run_pixels)

    def __hash__(self) -> int:
        # The box and how many runs: equal masked boxes hash alike, and hashing never walks
        # the runs (a search's joint grounding hashes every candidate many times).
        return hash((self.x1, self.y1, self.x2, self.y2, len(self.runs)))

    def scaled(self, factor: float) -> Box:
        return MaskedBox(*Box.scaled(self, factor).as_tuple(), self.source, tuple(r.scaled(factor) for r in self.runs))


def stored_box(values: Iterable[float], runs: Iterable[Iterable[float]] = ()) -> Box:
    """A box as a cache record or an index stores it (not checked: not a user's input, as
    :meth:`Box.from_sequence` reads): its four numbers and, for a masked box, its runs'."""
    x1, y1, x2, y2 = (float(v) for v in values)
    kept = tuple(stored_box(run) for run in runs)
    return MaskedBox(x1, y1, x2, y2, runs=kept) if kept else Box(x1, y1, x2, y2)


def region_boxes(boxes: Iterable[Box]) -> list[Box]:
    """The boxes whose union is the region of ``boxes``: a masked box's runs in its place."""
    return [run for box in boxes for run in (box.runs if isinstance(box, MaskedBox) else (box,))]


def region_pixels(boxes: Iterable[Box]) -> list[tuple[int, int, int, int]]:
    """The integer pixel bounds of the boxes whose union is the region of ``boxes``."""
    found: list[tuple[int, int, int, int]] = []
    for box in boxes:
        if isinstance(box, MaskedBox):
            found += box.run_pixels
        else:
            found.append(box.pixels())
    return found


def _area(box: Box) -> float:
    """A box's area (zero where it is empty), as a function: the joint grounding computes it
    for every pair of a search's candidates, where property calls cost."""
    return max(0.0, box.x2 - box.x1) * max(0.0, box.y2 - box.y1)


def bounding_box(boxes: Iterable[Box]) -> Box:
    """The smallest box containing all ``boxes``."""
    boxes = list(boxes)
    if not boxes:
        raise InputError("no boxes to bound")
    if len(boxes) == 1:  # a box bounds itself (the common case: a detection of one box)
        return boxes[0]
    return Box(min(b.x1 for b in boxes), min(b.y1 for b in boxes), max(b.x2 for b in boxes), max(b.y2 for b in boxes))
