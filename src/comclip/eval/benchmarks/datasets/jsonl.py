"""Users' own data: one JSON object per line, ``{"image": ..., "positive": ..., "negatives": [...]}``.

Optional keys: ``id``, ``subset``. Image paths are relative to the file's folder.
Accuracy: the positive caption scores higher than every negative.
"""

from __future__ import annotations

from pathlib import Path

from comclip.errors import InputError
from comclip.eval.benchmarks.datasets.base import CAPTION_CHOICE, Dataset, Example
from comclip.jsonfile import read_json_lines


def load(path: str | Path, image_dir: str | Path | None = None) -> Dataset:
    path = Path(path)
    base = Path(image_dir) if image_dir else path.parent
    examples = []
    for number, row in read_json_lines(path, "JSONL dataset"):
        where = f"{path} line {number}"
        if not isinstance(row, dict) or not isinstance(row.get("image"), str) or not isinstance(row.get("positive"), str):
            raise InputError(f"{where}: needs 'image' and 'positive' strings")
        negatives = row.get("negatives")
        if not isinstance(negatives, list) or not negatives or not all(isinstance(n, str) for n in negatives):
            raise InputError(f"{where}: 'negatives' must be a non-empty list of captions")
        examples.append(
            Example(
                id=str(row.get("id", number)),
                kind=CAPTION_CHOICE,
                images=[str(base / row["image"])],
                texts=[row["positive"], *negatives],
                subset=str(row.get("subset", "")),
            )
        )
    return Dataset("jsonl", path.stem, examples, "user data", "user data")
