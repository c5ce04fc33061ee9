"""COLA, multi-object setting (Ray et al., NeurIPS 2023; github.com/arijitray1993/COLA, MIT).

Format: ``data/COLA_multiobjects_matching_benchmark.json``, a list of
``[image 1 link, caption 1, image 2 link, caption 2]``: the two images hold the same objects
with their attributes swapped, and caption c describes image c only. The links are Visual
Genome / GQA image URLs (``.../vg_gqa_images/<id>.jpg``); the images are read from
``--image-dir`` by the URL's file name (default: ``images/`` beside the JSON, else its folder).

Metric: pair accuracy as COLA's ``ColaMultiObjAcc``: caption 1 scores higher with image 1
than with image 2, and caption 2 higher with image 2 than with image 1.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from comclip.errors import InputError
from comclip.eval.benchmarks.datasets.base import PAIR_MATCH, Dataset, Example
from comclip.jsonfile import read_json

SOURCE = "https://github.com/arijitray1993/COLA"
LICENCE = "MIT (annotations); Visual Genome / GQA images under CC BY 4.0"
FILE = "COLA_multiobjects_matching_benchmark.json"


def load(path: str | Path, image_dir: str | Path | None = None) -> Dataset:
    path = Path(path)
    if path.is_dir():
        path = next((p for p in (path / FILE, path / "data" / FILE) if p.exists()), path / FILE)
    rows = read_json(path, "COLA multi-object file")
    if not isinstance(rows, list):
        raise InputError(f"{path}: expected a list of [image 1, caption 1, image 2, caption 2]")
    images = Path(image_dir) if image_dir else (path.parent / "images" if (path.parent / "images").is_dir() else path.parent)
    examples = []
    for number, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 4 and all(isinstance(v, str) and v for v in row)):
            raise InputError(
                f"{path} item {number}: expected [image 1, caption 1, image 2, caption 2], got {json.dumps(row)[:60]}"
            )
        first, caption_1, second, caption_2 = row
        examples.append(
            Example(
                id=str(number),
                kind=PAIR_MATCH,
                images=[str(images / _file_name(first)), str(images / _file_name(second))],
                texts=[caption_1, caption_2],
            )
        )
    return Dataset("cola", "multiobjects", examples, SOURCE, LICENCE)


def _file_name(link: str) -> str:
    """``https://.../vg_gqa_images/2414605.jpg`` -> ``2414605.jpg`` (a local path keeps its name too)."""
    return PurePosixPath(link.split("?", 1)[0]).name
