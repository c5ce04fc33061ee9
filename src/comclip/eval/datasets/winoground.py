"""Winoground (Thrush et al., CVPR 2022), from a local copy.

The gated Hugging Face dataset ``facebook/winoground`` (non-commercial research licence) is
read with ``datasets`` where available and a token is set (``HF_TOKEN``); otherwise a folder
holding the metadata CSV (``id, caption_0, caption_1, tag, secondary_tag, collapsed_tag``)
and ``images/ex_<id>_img_<0|1>.png``. Text, image and group scores per ``collapsed_tag`` and
per ``tag``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ...errors import InputError
from .base import WINOGROUND, Dataset, Example

SOURCE = "https://huggingface.co/datasets/facebook/winoground"
LICENCE = "Winoground licence: non-commercial research only"


def load(metadata: str | Path, image_dir: str | Path | None = None) -> Dataset:
    metadata = Path(metadata)
    if metadata.is_dir():
        candidates = sorted(metadata.glob("*.csv"))
        if not candidates:
            raise InputError(f"no Winoground metadata CSV in {metadata}")
        image_dir = image_dir or metadata / "images"
        metadata = candidates[0]
    image_dir = Path(image_dir) if image_dir else metadata.parent / "images"
    try:
        rows = list(csv.DictReader(open(metadata, newline="", encoding="utf-8")))
    except OSError as exc:
        raise InputError(f"cannot read Winoground metadata {metadata}: {exc}") from None
    examples = []
    for line, row in enumerate(rows, start=2):
        try:
            ex_id, c0, c1 = row["id"], row["caption_0"], row["caption_1"]
        except KeyError:
            raise InputError(f"{metadata} line {line}: needs id, caption_0, caption_1") from None
        images = [str(_find_image(image_dir, ex_id, i)) for i in (0, 1)]
        examples.append(Example(
            id=ex_id, kind=WINOGROUND, images=images, texts=[c0, c1],
            subset=row.get("collapsed_tag", ""), tags=[t for t in (row.get("tag", ""), row.get("secondary_tag", "")) if t],
        ))
    return Dataset("winoground", "test", examples, SOURCE, LICENCE)


def _find_image(folder: Path, ex_id: str, index: int) -> Path:
    for suffix in (".png", ".jpg", ".jpeg"):
        path = folder / f"ex_{ex_id}_img_{index}{suffix}"
        if path.exists():
            return path
    return folder / f"ex_{ex_id}_img_{index}.png"
