"""Backbones from ``open_clip`` (``pip install 'comclip[openclip]'``).

Named ``open_clip:ARCH/PRETRAINED``, e.g. ``open_clip:ViT-B-32/openai``; PRETRAINED may
also be the path of a local checkpoint file.
"""

from __future__ import annotations

import importlib.util

import torch
from PIL import Image

from comclip.backbones.base import Backbone
from comclip.backbones.runtime import RUNTIME
from comclip.errors import ComclipError, ModelNotFoundError

PREFIX = "open_clip:"


def _import_open_clip():
    from comclip._optional import broken, hide_broken

    hide_broken()
    try:
        import open_clip
    except ImportError as exc:
        if broken("torchvision") and importlib.util.find_spec("open_clip") is not None:
            raise ComclipError(
                f"open_clip backbones need torchvision, which is installed but cannot load here ({broken('torchvision')}): "
                f"install the torchvision built for this torch {torch.__version__} (with the constraints file: "
                "pip install -c constraints/cpu.txt -e '.[openclip]'), or uninstall it to use the other backbones"
            ) from None
        raise ComclipError(
            f"open_clip backbones need the optional dependency open_clip_torch: pip install -c constraints/cpu.txt "
            f"'comclip[openclip]' (the constraints keep your torch) ({exc})"
        ) from None
    return open_clip


def split_open_clip_name(name: str) -> tuple[str, str]:
    """``open_clip:ViT-B-32/openai`` -> (``ViT-B-32``, ``openai``); the tag may be a path."""
    spec = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    arch, sep, pretrained = spec.partition("/")
    if not arch or not sep or not pretrained:
        raise ModelNotFoundError(
            f"open_clip model names look like open_clip:ARCH/PRETRAINED (e.g. open_clip:ViT-B-32/openai), got {name!r}"
        )
    return arch, pretrained


class OpenCLIPBackbone(Backbone):
    """An ``open_clip`` model created by ``create_model_and_transforms``."""

    def __init__(
        self,
        source: str,
        name: str | None = None,
        device=None,
        batch_size: int = RUNTIME.batch_size,
        precision: str = RUNTIME.precision,
        pixels: str = RUNTIME.pixels,
    ):
        super().__init__(name or source, device=device, batch_size=batch_size, precision=precision, pixels=pixels)
        open_clip = _import_open_clip()
        arch, pretrained = split_open_clip_name(source)
        if arch not in open_clip.list_models():
            raise ModelNotFoundError(f"unknown open_clip architecture {arch!r} in {self.name!r}; see open_clip.list_models()")
        try:
            self.model, _, self.preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=pretrained, device=self.device
            )
        except (RuntimeError, OSError, ValueError) as exc:
            raise ModelNotFoundError(f"cannot load open_clip model {self.name!r}: {exc}") from None
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(arch)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp())

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def context_length(self) -> int:
        return int(getattr(self.tokenizer, "context_length", None) or self.model.context_length)

    # open_clip's transforms (resize modes, torchvision filters) are not described as a
    # PixelSpec yet, so its models keep the PIL path: ``pixel_spec`` stays None.
    def _processor_pixels(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([self.preprocess(image) for image in images])

    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(texts).to(self.device))

    def _token_count(self, text: str) -> int:
        encode = getattr(self.tokenizer, "encode", None)
        if encode is None:  # hf-hub tokenizers wrap a transformers tokenizer
            inner = getattr(self.tokenizer, "tokenizer", None)
            return len(inner(text)["input_ids"]) if inner is not None else 0
        return len(encode(text)) + 2  # start and end tokens
