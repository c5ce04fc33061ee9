"""Grounding: where in the image is each entity? Boxes, detections and the grounder contract."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

from comclip.boxes import Box
from comclip.registry import Registry

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Detection:
    """One candidate location of a query: one or more boxes (a label may cover several
    instances, whose union is used) and the grounder's confidence."""

    boxes: tuple[Box, ...]
    score: float
    label: str = ""


class Grounder(ABC):
    """Finds image regions for text queries (entity head nouns)."""

    name: str = "grounder"
    #: Whether the boxes it returns are in the original image's pixels (read from a file made
    #: for the full-size image) rather than those of the image it was given, which may have
    #: been decoded at reduced scale; the pipeline then rescales them.
    original_pixels: bool = False
    #: Whether its rankings may be kept in the persistent cache (see :mod:`comclip.pipeline.memory`).
    cacheable: bool = False

    def prepare(self, images: Sequence[Image.Image], keys: Sequence[str] | None = None) -> list[torch.Tensor | None]:
        """Do per-image work for many images at once (batched), before :meth:`ground` is
        called on each. Returns, per image, its global embedding where that work computed it
        as a by-product (a patch-token grounder does), else None, so the caller encodes only
        the rest. ``keys``: the images' content digests where the caller has them (so they
        are not hashed again). Grounders with no such work need not override it."""
        return [None] * len(images)

    def texts(self, queries: Sequence[str]) -> list[str]:
        """The texts :meth:`ground` will encode with the backbone for ``queries`` (and has not
        kept already), so a caller can encode them in one call with its own: with a cache,
        each model call costs a pass over the text tower's weights however few the texts."""
        return []

    @abstractmethod
    def ground(self, image: Image.Image, queries: Sequence[str], source: str | None = None) -> list[list[Detection]]:
        """For each query, detections ranked best first (an empty list: not found).

        ``source`` names the image file, for grounders reading per-image data.
        """

    def ground_many(
        self, images: Sequence[Image.Image], queries: Sequence[Sequence[str]], sources: Sequence[str | None]
    ) -> list[list[list[Detection]]]:
        """:meth:`ground` of each image with its own queries; a grounder that can rank many
        images at once (one similarity for all their candidates) overrides it."""
        return [self.ground(image, q, source=s) for image, q, s in zip(images, queries, sources)]

    def describe(self) -> dict:
        return {"name": self.name}


#: What an entity is grounded by: ``query(entity) -> text`` for the grounder.
GROUND_BY: Registry = Registry("ground-by")
GROUND_BY.add("head", lambda entity: entity.head)  # the head noun, as the paper
GROUND_BY.add("phrase", lambda entity: entity.phrase)  # the whole phrase, attributes included
