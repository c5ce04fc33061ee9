"""The views that pixel relations read (:mod:`comclip.pipeline.pixel_relations`), made and encoded.

A view is a region of an image shown to the image encoder: an entity's sub-image, moved a
pixel or three and mirrored (depth's likeness), completed where it lost a bite (the other's
pixels that a closing of its region or its convex hull reaches, in its own colour), a region
cut to a square and zoomed, or the fill alone. Every view is encoded through the backbone's
cache under a content key of its own, and each entity's sub-image is made once for all its
views.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from comclip.boxes import Box, MaskedBox, region_boxes
from comclip.imaging.files import LoadedImage
from comclip.imaging.subimages import SubimageMaker, region_mask, subimage_key

#: What fills the views outside their region: the background colour, which matches an object's
#: surroundings (development seed 100, `sandbox-bow`, group % on depth / pointer pairs: 34 / 27,
#: against 33 / 26 with the mean colour and 23 / 24 with black, with the likeness evidence).
PIXEL_FILL = "background"
#: The square a ``between`` view is cut to, as a factor of its region's longer side: the region
#: itself (development seed 100, `sandbox-bow`, true boxes: a pointer's source found in 89.5%
#: of images, against 86.0 and 83.5 with entities seen at 1.5 and 2 and 84.0 with the gap at 1.5).
ZOOM = 1.0

#: The shifts of depth's likeness views, as shares of the image's shorter side (1 and 3 pixels
#: at 64, either way), taken on both axes and each also mirrored left to right: 32 views an
#: entity, whose cosines with its phrase give its likeness (their mean, less their spread:
#: :data:`~comclip.pipeline.pixel_relations.JITTER_SPREAD_WEIGHT`; test-time augmentation: a
#: small encoder's reading of a shape moves with where its edges fall on the patch grid).
#: Chosen on development seeds 100 and 101 (`sandbox-bow`, the true caption of 400 images a
#: cell, the likeness alone picking the entity in front, one view against the mean of 32): depth 80.8 / 80.2% -> 86.2 / 88.7%, crowded
#: depth 77.2 / 79.1% -> 87.8 / 88.7%; shifts of 2 pixels, or of 1-5, read up to 1.5 points
#: less, unmirrored up to 2 points less, and rotations by right angles 11-16 points less (the
#: encoder knows a triangle's way up).
JITTER_SHIFTS = (-3 / 64, -1 / 64, 1 / 64, 3 / 64)
JITTER_MIRRORED = (False, True)


class View(NamedTuple):
    """One view. A plain one is the full-size sub-image of its boxes; a zoomed one is its one
    box's square (:data:`ZOOM`) shown at the encoder's size; a jittered one is the plain one
    moved by ``jitter``'s shares of the image's shorter side (right, down), then mirrored
    where it says so, and first completed where ``paint`` says (those pixels in the median
    colour of the entity's own); with no boxes, the blank view: the fill alone, at the
    image's size."""

    image: int
    boxes: tuple[Box, ...]
    zoomed: bool = False
    jitter: tuple[float, float, bool] | None = None
    paint: MaskedBox | None = None  # the pixels painted in the entity's own colour (its completion)


def jitters() -> list[tuple[float, float, bool]]:
    """Each jitter of a likeness view: (right, down, mirrored), see :data:`JITTER_SHIFTS`."""
    return [(dx, dy, mirrored) for dx in JITTER_SHIFTS for dy in JITTER_SHIFTS for mirrored in JITTER_MIRRORED]


def embedded_views(backbone, loaded: list[LoadedImage], views: list[View]) -> dict[View, torch.Tensor]:
    """Each view's normalised embedding, the views encoded in one keyed call."""
    if not views:
        return {}
    maker = SubimageMaker([im.image for im in loaded], None)
    keys = [_view_key(loaded[view.image], view) for view in views]

    @functools.cache
    def plain(image: int, boxes: tuple[Box, ...]) -> Image.Image:  # a jittered view's, made once for its 32
        made = maker.sub(image, boxes, PIXEL_FILL)
        assert isinstance(made, Image.Image)  # a maker without a device makes PIL images
        return made

    @functools.cache
    def completed(image: int, boxes: tuple[Box, ...], paint: MaskedBox | None) -> Image.Image:
        return plain(image, boxes) if paint is None else _painted(plain(image, boxes), loaded[image].image, boxes, paint)

    def make(n: int) -> Image.Image:
        view = views[n]
        if not view.boxes:
            return Image.new("RGB", loaded[view.image].image.size, maker.fill_colour(view.image, PIXEL_FILL))
        if view.jitter is not None:
            shift = _shift(view.jitter, loaded[view.image].image.size)
            source = completed(view.image, view.boxes, view.paint)
            return _jittered(source, shift, view.jitter[2], maker.fill_colour(view.image, PIXEL_FILL))
        made = maker.zoomed(view.image, view.boxes[0], PIXEL_FILL, ZOOM) if view.zoomed else plain(view.image, view.boxes)
        assert isinstance(made, Image.Image)
        return made

    embeddings = torch.nn.functional.normalize(backbone.encode_keyed(keys, make).float(), dim=-1)
    return dict(zip(views, embeddings))


def _painted(view: Image.Image, image: Image.Image, boxes: tuple[Box, ...], paint: MaskedBox) -> Image.Image:
    """``view`` (an entity's sub-image) with the pixels of ``paint`` in the median colour of
    the entity's own pixels in ``image``: the entity completed where it lost a bite."""
    width, height = image.size
    own = np.asarray(image.convert("RGB"))[region_mask(region_boxes(boxes), width, height)]
    pixels = np.array(view)
    pixels[region_mask(region_boxes((paint,)), width, height)] = np.median(own, axis=0).astype(np.uint8)
    return Image.fromarray(pixels)


def _shift(jitter: tuple[float, float, bool], size: tuple[int, int]) -> tuple[int, int]:
    """A jitter's shift in pixels (right, down) for an image of ``size``."""
    side = min(size)
    return round(jitter[0] * side), round(jitter[1] * side)


def _jittered(view: Image.Image, shift: tuple[int, int], mirrored: bool, colour: tuple[int, int, int]) -> Image.Image:
    """``view`` moved by ``shift`` pixels (what it leaves uncovered in ``colour``), then
    mirrored left to right where asked."""
    moved = Image.new("RGB", view.size, colour)
    moved.paste(view, shift)
    return moved.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirrored else moved


def _view_key(image: LoadedImage, view: View) -> str:
    """A view's content key: a sub-image's, and for a completed, zoomed or jittered one that
    key under a prefix of its own (it is another image, never read as the sub-image; a
    completion's names the pixels it paints); the blank view's, its fill's under the image's
    digest."""
    if not view.boxes:
        return f"blank:{PIXEL_FILL}:{image.digest}"
    width, height = image.image.size
    key = subimage_key(image.digest, view.boxes, PIXEL_FILL, width, height)
    if view.paint is not None:
        key = f"painted[{view.paint.run_text}]:{key}"
    if view.jitter is not None:
        (dx, dy), mirrored = _shift(view.jitter, (width, height)), view.jitter[2]
        return f"jitter{dx},{dy}{'m' if mirrored else ''}:{key}"
    return f"zoom{ZOOM}:{key}" if view.zoomed else key
