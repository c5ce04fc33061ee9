"""One module per benchmark; each ``load(path, image_dir=None) -> Dataset``."""

from __future__ import annotations

from ...errors import InputError
from . import comvg, jsonl, sugarcrepe, winoground
from .base import CAPTION_CHOICE, IMAGE_CHOICE, WINOGROUND, Dataset, Example

DATASETS = {
    "sugarcrepe": sugarcrepe.load,
    "comvg": comvg.load,
    "winoground": winoground.load,
    "jsonl": jsonl.load,
}


def load_dataset(name: str, path, image_dir=None) -> Dataset:
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    return DATASETS[name](path, image_dir)


__all__ = ["CAPTION_CHOICE", "DATASETS", "Dataset", "Example", "IMAGE_CHOICE", "WINOGROUND", "load_dataset"]
