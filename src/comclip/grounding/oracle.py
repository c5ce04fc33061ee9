"""The oracle grounders: the true boxes of data that knows them (the sandbox's generator).

An upper bound for any grounder. ``oracle`` gives each object's whole shape's box;
``oracle-masks`` the pixels of it that show, as a masked box (an object partly hidden is what
is seen of it, as a mask grounder gives it), where the data knows them. A box holds what
overlaps its object too, so the relations read from the entities' own pixels (depth) need
the masks to read as a grounder's masked regions do.

Images are recognised by content, so any copy of a registered image is grounded exactly; a query matches the boxes whose label (the object's
head noun) it names: the label itself, or a phrase that holds its words in a row ("a small
yellow diamond" names "diamond", "a red traffic light" names "traffic light"), as a grounder
asked by the whole phrase queries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from PIL import Image

from comclip.boxes import Box
from comclip.digests import image_digest
from comclip.grounding.base import Detection, Grounder

#: One image's true objects: ``(label, box)`` pairs.
LabelledBoxes = Sequence[tuple[str, Box]]
#: One image as the data knows it: the image, its objects, and optionally what shows of each
#: (a box or a masked box per object, in the same order).
KnownImage = tuple[Image.Image, LabelledBoxes] | tuple[Image.Image, LabelledBoxes, Sequence[Box | None]]


class OracleGrounder(Grounder):
    """Grounds each query to the true boxes labelled with it; with ``masks``, to what shows of
    each object where the data knows it (its whole box where not)."""

    def __init__(self, backbone=None, known: Iterable[KnownImage] = (), masks: bool = False):
        self.name = "oracle-masks" if masks else "oracle"
        self._objects: dict[str, LabelledBoxes] = {}
        for image, objects, *shown in known:
            if masks and shown:
                objects = [(label, seen or box) for (label, box), seen in zip(objects, shown[0])]
            self.add(image, objects)

    def add(self, image: Image.Image, objects: LabelledBoxes) -> None:
        self._objects[image_digest(image)] = tuple(objects)

    def ground(self, image: Image.Image, queries: Sequence[str], source: str | None = None) -> list[list[Detection]]:
        objects = self._objects.get(image_digest(image), ())
        padded = [f" {' '.join(q.lower().split())} " for q in queries]  # words between single spaces
        return [[Detection(boxes=(box,), score=1.0, label=label) for label, box in objects if f" {label} " in q] for q in padded]
