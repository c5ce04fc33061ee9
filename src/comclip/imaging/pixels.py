"""Image preprocessing as tensor operations on the model's device.

A backbone's processor (transformers' ``CLIPImageProcessor``, SigLIP's, open_clip's
transforms) works on PIL images on the CPU: resize the short side (or both sides) with a
bicubic filter, centre-crop, scale to [0, 1], normalise. :func:`preprocess` does the same
with ``torch.nn.functional.interpolate`` (antialiased, as PIL filters) on uint8 tensors
already on the device, so that sub-images are built and resized there in batches and
nothing goes back to PIL on the hot path. It rounds to 8 bits after resizing as the PIL
processors do; the remaining difference is the filters' arithmetic (about 1/255 a pixel).

:class:`PixelSpec` says what a processor does; a backbone that cannot describe its
processor this way (``pixel_spec`` None) keeps the PIL path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

#: ``--pixels`` values: build and preprocess images with torch on the model's device, or with
#: PIL and the backbone's own processor (the reference the torch path is tested against).
PIXEL_PATHS = ("torch", "pil")
#: PIL's resampling filter numbers (``Image.Resampling``) -> interpolate modes.
_MODES = {int(Image.Resampling.BICUBIC): "bicubic", int(Image.Resampling.BILINEAR): "bilinear"}


@dataclass(frozen=True)
class PixelSpec:
    """What a processor does to an RGB image: resize (``shortest`` side to ``resize`` keeping
    the aspect ratio, or ``squash`` to ``resize`` x ``resize``), centre-crop to ``crop``
    (``None``: no crop), scale by ``rescale`` and normalise by ``mean`` and ``std``."""

    resize: int
    crop: tuple[int, int] | None
    resize_mode: str = "shortest"
    interpolation: str = "bicubic"
    rescale: float = 1 / 255
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def describe(self) -> dict:
        return asdict(self)


def spec_from_hf_processor(processor) -> PixelSpec | None:
    """The spec of a transformers image processor (CLIP's, SigLIP's and those like them), or
    None where it does something this module does not (padding, other filters, no resize)."""
    size, crop = getattr(processor, "size", None), getattr(processor, "crop_size", None)
    number = _filter_number(getattr(processor, "resample", None))
    mode = _MODES.get(number) if number is not None else None
    if size is None or mode is None or not getattr(processor, "do_resize", True) or getattr(processor, "do_pad", False):
        return None
    if size.get("shortest_edge"):
        resize, resize_mode = int(size.get("shortest_edge")), "shortest"
    elif size.get("height") and size.get("height") == size.get("width"):
        resize, resize_mode = int(size.get("height")), "squash"
    else:
        return None
    cropped = bool(getattr(processor, "do_center_crop", False)) and crop is not None
    normalise = getattr(processor, "do_normalize", True)
    return PixelSpec(
        resize=resize,
        crop=(int(crop.get("height")), int(crop.get("width"))) if cropped and crop is not None else None,
        resize_mode=resize_mode,
        interpolation=mode,
        rescale=float(processor.rescale_factor) if getattr(processor, "do_rescale", True) else 1.0,
        mean=_triple(processor.image_mean) if normalise else (0.0, 0.0, 0.0),
        std=_triple(processor.image_std) if normalise else (1.0, 1.0, 1.0),
    )


def _filter_number(resample) -> int | None:
    """A processor's ``resample`` as PIL's filter number (an int or enum; anything else None)."""
    try:
        return int(resample)
    except (TypeError, ValueError):
        return None


def to_tensor(image: Image.Image, device: torch.device | str = "cpu") -> torch.Tensor:
    """An RGB PIL image as a uint8 ``[3, H, W]`` tensor on ``device`` (one copy to it)."""
    array = np.asarray(image.convert("RGB"))
    tensor = torch.from_numpy(array.copy() if not array.flags.writeable else array).permute(2, 0, 1)
    return tensor.to(device, non_blocking=True)


def resized_size(height: int, width: int, spec: PixelSpec) -> tuple[int, int]:
    """The size before cropping, as transformers and torchvision compute it (the long side
    truncated, not rounded)."""
    if spec.resize_mode == "squash":
        return spec.resize, spec.resize
    if height <= width:
        return spec.resize, int(spec.resize * width / height)
    return int(spec.resize * height / width), spec.resize


def _triple(values) -> tuple[float, float, float]:
    first, second, third = (float(v) for v in values)
    return first, second, third


def preprocess(images: Sequence[torch.Tensor], spec: PixelSpec) -> torch.Tensor:
    """``[N, 3, S, S]`` model inputs from uint8 ``[3, H, W]`` images (any sizes, on one device):
    images of one size are resized together in one call."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for n, image in enumerate(images):
        by_size.setdefault((int(image.shape[-2]), int(image.shape[-1])), []).append(n)
    out: list[torch.Tensor] = list(images)  # each replaced by its model input below
    for (height, width), members in by_size.items():
        batch = torch.stack([images[n] for n in members]).float()
        for n, row in zip(members, _resize_crop(batch, height, width, spec)):
            out[n] = row
    pixels = torch.stack(out) * spec.rescale
    mean = torch.tensor(spec.mean, device=pixels.device)[:, None, None]
    std = torch.tensor(spec.std, device=pixels.device)[:, None, None]
    return (pixels - mean) / std


def _resize_crop(batch: torch.Tensor, height: int, width: int, spec: PixelSpec) -> torch.Tensor:
    """Resize (antialiased, rounded to 8 bits as a PIL image is) and centre-crop, as
    transformers' processors do (the crop's offset rounded down)."""
    size = resized_size(height, width, spec)
    if size != (height, width):
        batch = (
            torch.nn.functional.interpolate(batch, size=size, mode=spec.interpolation, antialias=True, align_corners=False)
            .round_()
            .clamp_(0, 255)
        )
    if spec.crop is None:
        return batch
    crop_h, crop_w = spec.crop
    if crop_h > size[0] or crop_w > size[1]:  # pad as the processors do: zeros around
        pad_h, pad_w = max(crop_h - size[0], 0), max(crop_w - size[1], 0)
        batch = torch.nn.functional.pad(batch, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
    top, left = (batch.shape[-2] - crop_h) // 2, (batch.shape[-1] - crop_w) // 2
    return batch[..., top : top + crop_h, left : left + crop_w]


def gaussian_blur(image: torch.Tensor, radius: float) -> torch.Tensor:
    """PIL's ``GaussianBlur(radius)`` on a uint8 ``[3, H, W]`` tensor: three passes of an
    extended box blur per axis with the box PIL derives from the radius (its variance is
    ``radius**2``), edges extended; rounded to uint8 at the end."""
    box = _box_radius(radius, passes=3)
    out = image.float()
    for _ in range(3):
        out = _box_blur_axis(_box_blur_axis(out, box, dim=-1), box, dim=-2)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _box_radius(radius: float, passes: int) -> float:
    """The extended box's radius whose ``passes`` passes have variance ``radius**2``
    (Gwosdek et al. 2011, as PIL's BoxBlur.c computes it)."""
    sigma2 = radius * radius / passes
    length = math.sqrt(12.0 * sigma2 + 1.0)
    whole = math.floor((length - 1.0) / 2.0)
    fraction = (2 * whole + 1) * (whole * (whole + 1) - 3 * sigma2) / (6 * (sigma2 - (whole + 1) ** 2))
    return whole + fraction


def _box_blur_axis(image: torch.Tensor, radius: float, dim: int) -> torch.Tensor:
    """One extended box blur along ``dim``: the mean of the 2r+1 window, with the fractional
    part of ``radius`` weighting the two pixels just outside it; edges extended."""
    whole, fraction = int(radius), radius - int(radius)
    length = image.shape[dim]
    index = torch.arange(-whole - 1, length + whole + 1, device=image.device).clamp_(0, length - 1)
    padded = image.index_select(dim, index)
    sums = torch.cumsum(padded, dim=dim)
    zero = torch.zeros_like(sums.narrow(dim, 0, 1))
    sums = torch.cat([zero, sums], dim=dim)
    window = sums.narrow(dim, 2 * whole + 2, length) - sums.narrow(dim, 1, length)
    edges = padded.narrow(dim, 0, length) + padded.narrow(dim, 2 * whole + 2, length)
    return (window + fraction * edges) / (2 * radius + 1)
