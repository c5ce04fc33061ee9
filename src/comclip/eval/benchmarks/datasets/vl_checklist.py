"""VL-CheckList (Zhao et al., 2022; github.com/om-ai-lab/VL-CheckList).

Its data folder holds JSON files under ``Attribute/``, ``Object/`` and ``Relation/`` (for
example ``Attribute/vaw/color.json``), each a list of ``[image_path, {"POS": [captions],
"NEG": [captions]}]``. ``--data`` is one file or that folder; image paths are relative to
``--image-dir``. Each positive caption is paired with the negative at the same position and
accuracy is the share of pairs whose positive scores higher, per phenomenon (the file's
path without extension, e.g. ``Attribute/vaw/color``); the top folder is a tag.
"""

from __future__ import annotations

from pathlib import Path

from comclip.errors import InputError
from comclip.eval.benchmarks.datasets.base import CAPTION_CHOICE, Dataset, Example, json_files
from comclip.jsonfile import read_json

SOURCE = "https://github.com/om-ai-lab/VL-CheckList"
LICENCE = "as published by VL-CheckList; images under the source datasets' licences"


def load(path: str | Path, image_dir: str | Path | None = None) -> Dataset:
    path = Path(path)
    files, root = json_files(path, "VL-CheckList", recursive=True)
    folder = Path(image_dir) if image_dir else root / "images"
    examples = []
    for file in files:
        phenomenon = file.relative_to(root).with_suffix("").as_posix()
        items = read_json(file, "VL-CheckList file")
        if not isinstance(items, list):
            raise InputError(f"{file}: expected a list of [image, {{'POS': [...], 'NEG': [...]}}] items")
        for n, item in enumerate(items):
            try:
                image, captions = item
                positives, negatives = captions["POS"], captions["NEG"]
            except (TypeError, ValueError, KeyError):
                raise InputError(f"{file} item {n}: expected [image, {{'POS': [...], 'NEG': [...]}}]") from None
            if not positives or len(positives) != len(negatives):
                raise InputError(f"{file} item {n}: POS and NEG must be non-empty lists of equal length")
            for k, (positive, negative) in enumerate(zip(positives, negatives)):
                examples.append(
                    Example(
                        id=f"{phenomenon}/{n}/{k}",
                        kind=CAPTION_CHOICE,
                        images=[str(folder / image)],
                        texts=[positive, negative],
                        subset=phenomenon,
                        tags=[phenomenon.split("/")[0]],
                    )
                )
    return Dataset("vl_checklist", path.stem, examples, SOURCE, LICENCE)
