"""Evaluation examples: what every dataset module yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: One image, several captions: the first caption is true, the others are negatives.
CAPTION_CHOICE = "caption_choice"
#: One caption, several images: the first image is true, the others are negatives.
IMAGE_CHOICE = "image_choice"
#: Two images and two captions, caption c belongs to image c (Winoground).
WINOGROUND = "winoground"


@dataclass
class Example:
    """One scored unit of a benchmark. ``images`` are paths; a missing file fails the example
    (counted, with its reason), never silently drops it. ``given`` maps captions to scene
    graphs or triplets supplied by the dataset, for ``--parser given``."""

    id: str
    kind: str
    images: list[str]
    texts: list[str]
    subset: str = ""
    tags: list[str] = field(default_factory=list)
    given: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dataset:
    """A loaded benchmark split."""

    name: str
    split: str
    examples: list[Example]
    source: str = ""
    licence: str = ""
