"""Users' own minimal pairs, Winoground-style, without code: a CSV or JSONL file with one row
per pair, ``image_0, image_1, caption_0, caption_1`` (caption c describes image c) and
optionally ``tag`` and ``id``. Image paths are relative to the file's folder (or
``--image-dir``); a folder given as ``--data`` holds one such file.

Text, image and group scores (Thrush et al., CVPR 2022) and pairwise accuracy, per ``tag``.
"""

from __future__ import annotations

from pathlib import Path

from comclip.errors import InputError
from comclip.eval.benchmarks.datasets.base import WINOGROUND, Dataset, Example, one_table, read_table

COLUMNS = ("image_0", "image_1", "caption_0", "caption_1")


def load(path: str | Path, image_dir: str | Path | None = None) -> Dataset:
    path = Path(one_table(path, "minimal pairs"))
    base = Path(image_dir) if image_dir else path.parent
    examples = []
    for number, row in read_table(path, "minimal pairs", COLUMNS):
        where = f"{path} {'row' if path.suffix == '.csv' else 'line'} {number}"
        missing = [c for c in COLUMNS if not isinstance(row.get(c), str) or not row[c].strip()]
        if missing:
            raise InputError(f"{where}: needs {', '.join(missing)}")
        tag = str(row.get("tag") or "")
        examples.append(
            Example(
                id=str(row.get("id") or number),
                kind=WINOGROUND,
                images=[str(base / row["image_0"]), str(base / row["image_1"])],
                texts=[row["caption_0"], row["caption_1"]],
                subset=tag,
                tags=[tag] if tag else [],
            )
        )
    return Dataset("minimal_pairs", path.stem, examples, "user data", "user data")
