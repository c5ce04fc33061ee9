"""Image-text retrieval on COCO / Flickr30K (Recall@K in both directions).

Two formats are read:

- a captions JSON, ``[{"image": "val2017/x.jpg", "captions": ["...", ...]}, ...]`` (as in
  ``shared/data/coco-mini/captions.json``), image paths relative to the JSON's folder or
  ``--image-dir``;
- Andrej Karpathy's split files (``dataset_coco.json``, ``dataset_flickr30k.json``:
  ``{"images": [{"filepath"?, "filename", "split", "sentences": [{"raw": ...}]}]}``), from
  which one split is taken (``test`` by default, the 5k / 1k test sets of the literature).

Sources and licences: COCO captions (cocodataset.org, CC BY 4.0; images under their Flickr
licences), Flickr30K (shannon.cs.illinois.edu/DenotationGraph, non-commercial research),
Karpathy splits (cs.stanford.edu/people/karpathy/deepimagesent, BSD).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from comclip.errors import InputError
from comclip.jsonfile import read_json

SOURCE = "COCO captions / Flickr30K, captions JSON or Karpathy split format"
LICENCE = "COCO annotations CC BY 4.0; Flickr30K non-commercial research; images under their own licences"


@dataclass
class RetrievalDataset:
    """A gallery of images and captions; caption t describes image ``caption_image[t]``."""

    name: str
    split: str
    images: list[str]
    captions: list[str]
    caption_image: list[int]
    source: str = SOURCE
    licence: str = LICENCE
    origin: str = ""
    #: Evaluated by ranking (see :mod:`comclip.eval.runs.recall`), not example by example.
    task: ClassVar[str] = "retrieval"

    def __len__(self) -> int:
        return len(self.images)

    def first_problem(self) -> str | None:
        """The first caption that is not text (see :meth:`Dataset.first_problem`)."""
        bad = next((t for t, text in enumerate(self.captions) if not isinstance(text, str)), None)
        return None if bad is None else f"caption {bad + 1} is {json.dumps(self.captions[bad])[:40]}, not text"

    def first(self, n: int) -> RetrievalDataset:
        """The first ``n`` images of the gallery with their captions."""
        kept = [(c, i) for c, i in zip(self.captions, self.caption_image) if i < n]
        return RetrievalDataset(
            self.name,
            self.split,
            self.images[:n],
            [c for c, _ in kept],
            [i for _, i in kept],
            self.source,
            self.licence,
            self.origin,
        )

    def content_rows(self) -> Iterator[bytes]:
        """What the gallery holds, for the run's content hash (see :func:`comclip.eval.runs.store.dataset_digest`)."""
        yield json.dumps([list(map(str, self.images)), self.captions, self.caption_image]).encode()


def load(path: str | Path, image_dir: str | Path | None = None, split: str | None = None) -> RetrievalDataset:
    """Load a captions JSON or a Karpathy split file (``split`` picks the Karpathy split)."""
    path = Path(path)
    data = read_json(path, "retrieval captions file")
    if isinstance(data, dict) and "images" in data:
        rows, split = _karpathy_rows(data, path, split or "test")
    elif isinstance(data, list):
        rows, split = _caption_rows(data, path), split or path.stem
    else:
        raise InputError(
            f"{path}: expected a list of {{'image', 'captions'}} objects or a Karpathy split file "
            "({'images': [...]}), got " + type(data).__name__
        )
    base = Path(image_dir) if image_dir is not None else path.parent
    images, captions, owner = [], [], []
    for n, (image, texts) in enumerate(rows):
        images.append(str(base / image))
        for text in texts:
            captions.append(text)
            owner.append(n)
    if not images:
        raise InputError(f"{path}: no images (split {split!r})")
    return RetrievalDataset("retrieval", split, images, captions, owner)


def _caption_rows(data: list, path: Path) -> list[tuple[str, list[str]]]:
    rows = []
    for n, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("image"), str) or not isinstance(item.get("captions"), list):
            raise InputError(f"{path} item {n}: needs 'image' (a path) and 'captions' (a list of strings)")
        if not all(isinstance(c, str) for c in item["captions"]):
            raise InputError(f"{path} item {n}: every caption must be a string")
        rows.append((item["image"], list(item["captions"])))
    return rows


def _karpathy_rows(data: dict, path: Path, split: str) -> tuple[list[tuple[str, list[str]]], str]:
    rows = []
    for n, item in enumerate(data["images"]):
        try:
            if item.get("split") != split:
                continue
            image = str(Path(item.get("filepath", "")) / item["filename"])
            captions = [s["raw"] if "raw" in s else " ".join(s["tokens"]) for s in item["sentences"]]
        except (KeyError, TypeError, AttributeError):
            raise InputError(f"{path} image {n}: needs 'filename' and 'sentences' with 'raw' or 'tokens'") from None
        rows.append((image, captions))
    return rows, split
