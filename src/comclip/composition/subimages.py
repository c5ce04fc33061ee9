"""Sub-images: the image with everything outside an entity's region removed.

As in the paper's code, a sub-image keeps the full image size and blacks out the pixels
outside the region (the union of the entity's boxes); a relation's sub-image is the union of
its subject's and object's regions. Other fills exist because black masks are out of
distribution for some backbones: ``blur``, ``mean`` (the image's mean colour) and ``crop``
(the region's bounding box, cut out).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageFilter

from ..errors import InputError
from ..grounding.base import Box, bounding_box

FILLS = ("black", "blur", "mean", "crop")


def region_mask(boxes: Sequence[Box], width: int, height: int) -> np.ndarray:
    """Boolean ``[height, width]`` mask of the union of ``boxes`` (clipped to the image)."""
    if not boxes:
        raise InputError("a sub-image needs at least one box")
    mask = np.zeros((height, width), dtype=bool)
    for box in boxes:
        x1, y1, x2, y2 = box.clipped(width, height).pixels()
        mask[y1:y2, x1:x2] = True
    return mask


def make_subimage(image: Image.Image, boxes: Sequence[Box], fill: str = "black") -> Image.Image:
    """The sub-image of ``image`` for the union of ``boxes`` with the given ``fill``."""
    if fill not in FILLS:
        raise InputError(f"unknown fill {fill!r}; choose one of {', '.join(FILLS)}")
    image = image.convert("RGB")
    width, height = image.size
    mask = region_mask(boxes, width, height)
    if fill == "crop":
        x1, y1, x2, y2 = bounding_box([b.clipped(width, height) for b in boxes]).pixels()
        return image.crop((x1, y1, x2, y2))
    pixels = np.asarray(image)
    if fill == "black":
        background = np.zeros_like(pixels)
    elif fill == "mean":
        background = np.broadcast_to(pixels.reshape(-1, 3).mean(axis=0).round().astype(np.uint8), pixels.shape)
    else:  # blur: strong enough that no object outside the region stays recognisable
        radius = max(2.0, max(width, height) / 16)
        background = np.asarray(image.filter(ImageFilter.GaussianBlur(radius)))
    out = np.where(mask[..., None], pixels, background)
    return Image.fromarray(np.ascontiguousarray(out, dtype=np.uint8), mode="RGB")
