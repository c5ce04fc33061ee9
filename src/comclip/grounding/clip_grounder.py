"""Training-free grounding with the scoring backbone itself.

Candidate regions (a multi-scale grid of windows) are cropped and encoded once per image, in
batches; each query ("a photo of a {noun}") is then ranked against all candidates. Encodings
are kept per image content, so every phrase and caption of an image reuses them.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Sequence

import torch
from PIL import Image

from ..backbones import Backbone
from .base import Box, Detection, Grounder

DEFAULT_PROMPT = "a photo of a {}"
#: (window side as a fraction of the image side, stride as a fraction of the image side).
DEFAULT_SCALES = ((1.0, 1.0), (0.75, 0.25), (0.5, 0.25), (1 / 3, 1 / 6))


def image_key(image: Image.Image) -> str:
    """A content hash identifying an image regardless of where it came from."""
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    digest.update(f"{image.size}{image.mode}".encode())
    return digest.hexdigest()


def grid_windows(width: int, height: int, scales=DEFAULT_SCALES) -> list[Box]:
    """Windows covering the image at several scales, each window inside the image."""
    boxes: list[Box] = []
    for side, stride in scales:
        w, h = width * side, height * side
        steps = max(1, round((1 - side) / stride) + 1) if side < 1 else 1  # per axis
        for iy in range(steps):
            for ix in range(steps):
                x1 = 0.0 if steps == 1 else (width - w) * ix / (steps - 1)
                y1 = 0.0 if steps == 1 else (height - h) * iy / (steps - 1)
                boxes.append(Box(x1, y1, x1 + w, y1 + h))
    unique = list(dict.fromkeys(Box(*(round(v, 3) for v in (b.x1, b.y1, b.x2, b.y2))) for b in boxes))
    return unique


class CLIPGrounder(Grounder):
    """Ranks grid windows by the backbone's similarity between the crop and the query prompt."""

    name = "clip"

    def __init__(self, backbone: Backbone, prompt: str = DEFAULT_PROMPT, scales=DEFAULT_SCALES, cache_images: int = 64):
        self.backbone = backbone
        self.prompt = prompt
        self.scales = tuple(tuple(s) for s in scales)
        self._cache: OrderedDict[str, tuple[list[Box], torch.Tensor]] = OrderedDict()
        self._cache_images = cache_images

    def describe(self) -> dict:
        return {"name": self.name, "prompt": self.prompt, "scales": [list(s) for s in self.scales]}

    def candidates(self, image: Image.Image) -> tuple[list[Box], torch.Tensor]:
        """Candidate boxes and their crop embeddings, computed once per image content."""
        key = image_key(image)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        boxes = grid_windows(image.width, image.height, self.scales)
        crops = [image.crop(b.pixels()) for b in boxes]
        embeddings = self.backbone.encode_images(crops)
        self._cache[key] = (boxes, embeddings)
        while len(self._cache) > self._cache_images:
            self._cache.popitem(last=False)
        return boxes, embeddings

    def ground(self, image: Image.Image, queries: Sequence[str], source: str | None = None) -> list[list[Detection]]:
        if not queries:
            return []
        boxes, region_embeddings = self.candidates(image)
        text_embeddings = self.backbone.encode_texts([self.prompt.format(q) for q in queries])
        similarity = text_embeddings @ region_embeddings.T  # [queries, regions]
        results = []
        for row in similarity:
            order = torch.argsort(row, descending=True, stable=True).tolist()
            results.append([Detection(boxes=(boxes[i],), score=float(row[i]), label="") for i in order])
        return results
