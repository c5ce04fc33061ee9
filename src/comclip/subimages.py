"""Sub-images: the image with everything outside a region (the union of some boxes) removed.

As in the paper's code, a sub-image keeps the full image size and blacks out the pixels
outside the region; a relation's sub-image is the union of its subject's and object's
regions. Other fills exist because black masks are out of distribution for some backbones:
``blur``, ``mean`` (the image's mean colour) and ``crop`` (the region's bounding box, cut
out). Each fill is one function in :data:`FILLS`; the grounder's masked candidate views and
the pipeline's sub-images are both made here.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageFilter

from .boxes import Box, bounding_box
from .errors import InputError
from .registry import Registry

#: ``fill(image, boxes) -> sub-image``; ``image`` is RGB and ``boxes`` lie inside it.
FILLS: Registry[Callable[[Image.Image, Sequence[Box]], Image.Image]] = Registry("fill")


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
    make = FILLS[fill]
    if not boxes:
        raise InputError("a sub-image needs at least one box")
    image = image.convert("RGB")
    return make(image, [b.clipped(image.width, image.height) for b in boxes])


def subimage_key(parent_key: str, boxes: Sequence[Box], fill: str, width: int, height: int) -> str:
    """The content key of a sub-image without making it: the parent image's key, the pixel
    bounds of its clipped boxes (all that decides the mask and the crop) and the fill; a region
    that covers the whole image makes the image itself, with every fill, so it has its key."""
    pixels = [b.clipped(width, height).pixels() for b in boxes]
    if (0, 0, width, height) in pixels:  # the region is the whole image: the sub-image is the image itself
        return parent_key
    bounds = ";".join(",".join(map(str, p)) for p in pixels)
    return f"sub:{parent_key}|{FILLS.check(fill)}|{bounds}"


def _outside_replaced(image: Image.Image, boxes: Sequence[Box], background: np.ndarray) -> Image.Image:
    """``image`` with the pixels outside ``boxes`` taken from ``background`` (same shape)."""
    pixels = np.asarray(image)
    mask = region_mask(boxes, image.width, image.height)
    out = np.where(mask[..., None], pixels, background)
    return Image.fromarray(np.ascontiguousarray(out, dtype=np.uint8), mode="RGB")


@FILLS.register("black")
def black_fill(image: Image.Image, boxes: Sequence[Box]) -> Image.Image:
    """Black outside the region, as in the paper."""
    return _outside_replaced(image, boxes, np.zeros((image.height, image.width, 3), dtype=np.uint8))


@FILLS.register("blur")
def blur_fill(image: Image.Image, boxes: Sequence[Box]) -> Image.Image:
    """A blur outside the region, strong enough that no object there stays recognisable."""
    radius = max(2.0, max(image.size) / 16)
    return _outside_replaced(image, boxes, np.asarray(image.filter(ImageFilter.GaussianBlur(radius))))


@FILLS.register("mean")
def mean_fill(image: Image.Image, boxes: Sequence[Box]) -> Image.Image:
    """The image's mean colour outside the region."""
    pixels = np.asarray(image)
    mean = pixels.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
    return _outside_replaced(image, boxes, np.broadcast_to(mean, pixels.shape))


@FILLS.register("crop")
def crop_fill(image: Image.Image, boxes: Sequence[Box]) -> Image.Image:
    """The region's bounding box, cut out (the image size is not kept)."""
    return image.crop(bounding_box(boxes).pixels())
