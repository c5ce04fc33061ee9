"""Sub-images: the image with everything outside a region (the union of some boxes) removed.

As in the paper's code, a sub-image keeps the full image size and blacks out the pixels
outside the region; a relation's sub-image is the union of its subject's and object's
regions. Other fills exist because black masks are out of distribution for some backbones:
``blur``, ``mean`` (the image's mean colour), ``background`` (the median colour of its border) and ``crop`` (the region's bounding box, cut
out). Each fill is one function in :data:`FILLS`; the grounder's masked candidate views and
the pipeline's sub-images are both made here.

Each fill also has a tensor form in :data:`TENSOR_FILLS` that builds the sub-image on the
model's device from a :class:`Canvas` (the image uploaded once as uint8, with the background
its fill needs computed once for all its sub-images). The PIL form is the reference; a fill
registered only in PIL form still works on the tensor path, made with PIL and uploaded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageFilter

from comclip.boxes import Box, MaskedBox, bounding_box, region_boxes, region_pixels
from comclip.errors import InputError
from comclip.imaging.pixels import gaussian_blur, to_tensor
from comclip.registry import Registry

#: ``fill(image, boxes) -> sub-image``; ``image`` is RGB and ``boxes`` lie inside it.
FILLS: Registry[Callable[[Image.Image, Sequence[Box]], Image.Image]] = Registry("fill")

#: ``--subimage`` values: ``fill`` (the paper: the full-size image, the pixels outside the region
#: replaced by the fill), ``tokens`` (a ViT sees only the patch tokens the region covers, with
#: their own position embeddings, and its class token: a sub-image costs its area), or
#: ``auto`` (tokens where the backbone can and the fill is one colour, else the fill).
SUBIMAGE_MODES = ("fill", "tokens", "auto")
#: The prefix of a tokens sub-image's source where a fill's name goes (cache keys, index
#: tables): ``tokens-black`` is the black fill's sub-image made from tokens.
TOKENS = "tokens-"


def subimage_source(subimage: str, fill: str) -> str:
    """What a sub-image is made of, as keys and index tables name it: the fill, or with
    ``--subimage tokens`` :data:`TOKENS` + the fill."""
    return TOKENS + fill if subimage == "tokens" else fill


def tokens_stand_for(fill: str, backbone) -> bool:
    """Whether sub-images with ``fill`` can be encoded from patch tokens by ``backbone``: a fill
    of one colour, and a backbone that supports tokens (``supports_tokens``)."""
    return fill in COLOUR_FILLS and bool(backbone.supports_tokens)


def check_source(source: str) -> str:
    """A sub-image's source (see :func:`subimage_source`), checked."""
    fill = source.removeprefix(TOKENS)
    if source.startswith(TOKENS) and fill not in COLOUR_FILLS:
        raise InputError(
            f"sub-images from tokens (--subimage tokens) stand for a fill of one colour ({', '.join(COLOUR_FILLS)}), not --subimage-fill {fill}"
        )
    FILLS.check(fill)
    return source


@dataclass(frozen=True)
class TokenRegion:
    """A sub-image to encode from patch tokens: its parent image (PIL, or on the tensor path the
    uint8 ``[3, H, W]`` canvas, the same object for every region of one image), the boxes of
    the region, clipped to it, and the colour its fill puts outside the region. A backbone that
    supports tokens (``supports_tokens``) encodes it."""

    image: Image.Image | torch.Tensor
    boxes: tuple[Box, ...]
    colour: tuple[int, int, int]
    #: The object that stands for the parent's content between calls (its PIL image, which
    #: every maker of it shares, where ``image`` is one maker's canvas); None: ``image``.
    parent: object = field(default=None, compare=False)

    @property
    def identity(self) -> object:
        """What a backbone keeps the parent's patches under (see ``TokenMemory``)."""
        return self.image if self.parent is None else self.parent

    @property
    def size(self) -> tuple[int, int]:
        """The parent's (width, height)."""
        if isinstance(self.image, torch.Tensor):
            return int(self.image.shape[-1]), int(self.image.shape[-2])
        return self.image.size


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
    return make(image, region_boxes(b.clipped(image.width, image.height) for b in boxes))


def subimage_key(parent_digest: str, boxes: Sequence[Box], fill: str, width: int, height: int) -> str:
    """The content key of a sub-image without making it: the parent image's key, the pixel
    bounds of its clipped boxes (all that decides the mask and the crop) and the fill; a region
    that covers the whole image makes the image itself, with every fill, so it has its key."""
    clipped = [b.clipped(width, height) for b in boxes]
    if (0, 0, width, height) in region_pixels(clipped):  # the region is the whole image: the sub-image is the image itself
        return parent_digest
    bounds = ";".join(b.run_text if isinstance(b, MaskedBox) else ",".join(map(str, b.pixels())) for b in clipped)
    return f"sub:{parent_digest}|{check_source(fill)}|{bounds}"


def blur_radius(width: int, height: int) -> float:
    """The blur fill's radius: strong enough that no object outside the region stays recognisable."""
    return max(2.0, max(width, height) / 16)


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
    blurred = image.filter(ImageFilter.GaussianBlur(blur_radius(image.width, image.height)))
    return _outside_replaced(image, boxes, np.asarray(blurred))


def mean_colour(pixels: np.ndarray) -> np.ndarray:
    """The mean colour of an image's pixels (``[H, W, 3]`` uint8), rounded."""
    return pixels.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)


@FILLS.register("mean")
def mean_fill(image: Image.Image, boxes: Sequence[Box]) -> Image.Image:
    """The image's mean colour outside the region."""
    pixels = np.asarray(image)
    return _outside_replaced(image, boxes, np.broadcast_to(mean_colour(pixels), pixels.shape))


def border_colour(pixels: np.ndarray) -> np.ndarray:
    """The median colour of an image's border pixels (``[H, W, 3]`` uint8), channel by channel
    (the lower median, so the tensor form gives the same value): its background, where the
    objects stand free of the edges (a product photo, a diagram, a sandbox scene)."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return np.sort(border, axis=0)[(len(border) - 1) // 2].astype(np.uint8)


@FILLS.register("background")
def background_fill(image: Image.Image, boxes: Sequence[Box]) -> Image.Image:
    """The image's background colour (the median of its border) outside the region: unlike
    the mean, it matches the region's own surroundings, so the box's edge does not show."""
    pixels = np.asarray(image)
    return _outside_replaced(image, boxes, np.broadcast_to(border_colour(pixels), pixels.shape))


#: The fills a tokens sub-image can stand for, those that put one colour outside the region,
#: each with that colour as it computes it from an image's pixels (``[H, W, 3]`` uint8).
FILL_COLOURS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "black": lambda pixels: np.zeros(3, dtype=np.uint8),
    "mean": mean_colour,
    "background": border_colour,
}
COLOUR_FILLS = tuple(FILL_COLOURS)


@FILLS.register("crop")
def crop_fill(image: Image.Image, boxes: Sequence[Box]) -> Image.Image:
    """The region's bounding box, cut out (the image size is not kept)."""
    return image.crop(bounding_box(boxes).pixels())


# --- the same fills as tensor operations on the model's device ------------------------------
class Canvas:
    """One decoded image on the model's device: ``pixels`` (uint8 ``[3, H, W]``, uploaded once)
    and the backgrounds its fills need, each computed once for all its sub-images."""

    def __init__(self, image: Image.Image, device: torch.device | str):
        self.image = image  # kept for fills that only have a PIL form
        self.pixels = to_tensor(image, device)
        self._backgrounds: dict[str, torch.Tensor] = {}

    @property
    def height(self) -> int:
        return self.pixels.shape[-2]

    @property
    def width(self) -> int:
        return self.pixels.shape[-1]

    def background(self, name: str, compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if name not in self._backgrounds:
            self._backgrounds[name] = compute(self.pixels)
        return self._backgrounds[name]


#: ``fill(canvas, boxes) -> uint8 [3, h, w]`` on the canvas's device; ``boxes`` lie inside it.
TENSOR_FILLS: Registry[Callable[[Canvas, Sequence[Box]], torch.Tensor]] = Registry("fill")


def render(canvas: Canvas, boxes: Sequence[Box], fill: str = "black") -> torch.Tensor:
    """:func:`make_subimage` as a uint8 ``[3, h, w]`` tensor on the canvas's device."""
    FILLS.check(fill)
    if not boxes:
        raise InputError("a sub-image needs at least one box")
    boxes = region_boxes(b.clipped(canvas.width, canvas.height) for b in boxes)
    if fill not in TENSOR_FILLS:
        return to_tensor(FILLS[fill](canvas.image, boxes), canvas.pixels.device)
    return TENSOR_FILLS[fill](canvas, boxes)


def _tensor_outside_replaced(canvas: Canvas, boxes: Sequence[Box], background: torch.Tensor) -> torch.Tensor:
    """The canvas with the pixels outside ``boxes`` taken from ``background`` (broadcastable)."""
    out = background.expand_as(canvas.pixels).clone()
    for box in boxes:
        x1, y1, x2, y2 = box.pixels()
        out[:, y1:y2, x1:x2] = canvas.pixels[:, y1:y2, x1:x2]
    return out


@TENSOR_FILLS.register("black")
def black_fill_tensor(canvas: Canvas, boxes: Sequence[Box]) -> torch.Tensor:
    return _tensor_outside_replaced(canvas, boxes, torch.zeros((3, 1, 1), dtype=torch.uint8, device=canvas.pixels.device))


@TENSOR_FILLS.register("blur")
def blur_fill_tensor(canvas: Canvas, boxes: Sequence[Box]) -> torch.Tensor:
    blurred = canvas.background("blur", lambda px: gaussian_blur(px, blur_radius(canvas.width, canvas.height)))
    return _tensor_outside_replaced(canvas, boxes, blurred)


@TENSOR_FILLS.register("mean")
def mean_fill_tensor(canvas: Canvas, boxes: Sequence[Box]) -> torch.Tensor:
    mean = canvas.background("mean", lambda px: px.double().mean(dim=(1, 2)).round().to(torch.uint8)[:, None, None])
    return _tensor_outside_replaced(canvas, boxes, mean)


def _border_colour_tensor(pixels: torch.Tensor) -> torch.Tensor:
    border = torch.cat([pixels[:, 0], pixels[:, -1], pixels[:, :, 0], pixels[:, :, -1]], dim=1)  # [3, n]
    return border.sort(dim=1).values[:, (border.shape[1] - 1) // 2][:, None, None]


@TENSOR_FILLS.register("background")
def background_fill_tensor(canvas: Canvas, boxes: Sequence[Box]) -> torch.Tensor:
    return _tensor_outside_replaced(canvas, boxes, canvas.background("background", _border_colour_tensor))


@TENSOR_FILLS.register("crop")
def crop_fill_tensor(canvas: Canvas, boxes: Sequence[Box]) -> torch.Tensor:
    x1, y1, x2, y2 = bounding_box(boxes).pixels()
    return canvas.pixels[:, y1:y2, x1:x2]


class SubimageMaker:
    """Makes the images and sub-images of a list of images for encoding: with PIL
    (``device`` None, the reference), or as tensors on ``device``, each image uploaded once
    (its :class:`Canvas`, made on first use) however many sub-images it gives."""

    def __init__(self, images: Sequence[Image.Image], device: torch.device | str | None):
        self.images = images
        self.device = device
        self._canvases: dict[int, Canvas] = {}
        self._colours: dict[tuple[int, str], tuple[int, int, int]] = {}

    def canvas(self, index: int) -> Canvas:
        if index not in self._canvases:
            self._canvases[index] = Canvas(self.images[index], self.device or "cpu")
        return self._canvases[index]

    def whole(self, index: int) -> Image.Image | torch.Tensor:
        """Image ``index`` itself."""
        return self.images[index] if self.device is None else self.canvas(index).pixels

    def sub(self, index: int, boxes: Sequence[Box], fill: str) -> Image.Image | torch.Tensor:
        """The sub-image of image ``index`` for the union of ``boxes`` with ``fill``."""
        if self.device is None:
            return make_subimage(self.images[index], boxes, fill)
        return render(self.canvas(index), boxes, fill)

    def region(self, index: int, boxes: Sequence[Box], source: str) -> Image.Image | torch.Tensor | TokenRegion:
        """What a backbone encodes for the sub-image of image ``index`` and ``boxes`` made of
        ``source`` (see :func:`subimage_source`): the filled sub-image, or for tokens the region."""
        if source.startswith(TOKENS):
            return self._token_region(index, boxes, check_source(source).removeprefix(TOKENS))
        return self.sub(index, boxes, source)

    def _token_region(self, index: int, boxes: Sequence[Box], fill: str) -> TokenRegion:
        if not boxes:
            raise InputError("a sub-image needs at least one box")
        image = self.images[index]
        return TokenRegion(
            self.whole(index),
            tuple(b.clipped(image.width, image.height) for b in boxes),  # a masked box's runs: the token path reads them
            self.fill_colour(index, fill),
            image,
        )

    def fill_colour(self, index: int, fill: str) -> tuple[int, int, int]:
        """The colour ``fill`` (one of :data:`FILL_COLOURS`) paints outside a region of image
        ``index``, computed once an image and fill."""
        if (index, fill) not in self._colours:
            colour = FILL_COLOURS[fill](np.asarray(self.images[index].convert("RGB")))
            self._colours[index, fill] = (int(colour[0]), int(colour[1]), int(colour[2]))
        return self._colours[index, fill]

    def zoomed(self, index: int, box: Box, fill: str, factor: float) -> Image.Image | torch.Tensor:
        """The sub-image of ``box`` cut to a square ``factor`` times the box's longer side,
        centred on it (see :func:`zoom_window`); beyond the image its edge is repeated."""
        masked = self.sub(index, [box], fill)
        image = self.images[index]
        x1, y1, x2, y2 = zoom_window(box, factor)
        pad = (max(0, -x1), max(0, -y1), max(0, x2 - image.width), max(0, y2 - image.height))  # left, top, right, bottom
        if not isinstance(masked, torch.Tensor):
            pixels = np.pad(np.asarray(masked), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), mode="edge")
            window = pixels[y1 + pad[1] : y2 + pad[1], x1 + pad[0] : x2 + pad[0]]
            return Image.fromarray(np.ascontiguousarray(window), mode="RGB")
        padded = torch.nn.functional.pad(masked[None].float(), (pad[0], pad[2], pad[1], pad[3]), mode="replicate")[0]
        return padded[:, y1 + pad[1] : y2 + pad[1], x1 + pad[0] : x2 + pad[0]].round().to(torch.uint8)


def encode_subimages(
    backbone, maker: SubimageMaker, digests: Sequence[str], regions: Sequence[tuple[int, Sequence[Box]]], source: str
) -> torch.Tensor:
    """Embeddings of the sub-images ``regions`` (an image of ``maker``, known by its digest in
    ``digests``, and boxes) made of ``source``, through ``backbone.encode_keyed`` under their
    :func:`subimage_key`: one key for one sub-image whoever asks (the masked candidate an
    entity is grounded to and the entity's sub-image are one encoding), each made only where
    the backbone's cache lacks it."""
    keys = [subimage_key(digests[n], boxes, source, *maker.images[n].size) for n, boxes in regions]
    return backbone.encode_keyed(keys, lambda k: maker.region(regions[k][0], list(regions[k][1]), source))


def zoom_window(box: Box, factor: float) -> tuple[int, int, int, int]:
    """Integer bounds of the square of side ``factor`` x the box's longer side centred on it
    (it may reach beyond the image): shown at the encoder's input size, a small object appears
    at the size a large one has in the whole image."""
    side = max(1, round(max(box.width, box.height) * factor))
    cx, cy = box.centre
    x1, y1 = round(cx - side / 2), round(cy - side / 2)
    return x1, y1, x1 + side, y1 + side
