"""VALSE (Parcalabescu et al., ACL 2022; github.com/Heidelberg-NLP/VALSE, MIT licence).

One JSON file per piece (``existence.json``, ``counting-hard.json``, ``relations.json``, ...),
each an object of ``id -> {"image_file", "caption", "foil", "linguistic_phenomena", ...}``;
``--data`` is one file or the folder of them, ``--image-dir`` the images of the source
datasets (Visual7W, COCO, SWiG, VisDial, ...) gathered in one folder. Accuracy: the caption
scores higher than its foil (VALSE's pairwise ``acc_r``), per phenomenon; the piece (file
name) is a tag.
"""

from __future__ import annotations

from pathlib import Path

from comclip.errors import InputError
from comclip.eval.benchmarks.datasets.base import CAPTION_CHOICE, Dataset, Example, json_files
from comclip.jsonfile import read_json_object

SOURCE = "https://github.com/Heidelberg-NLP/VALSE"
LICENCE = "MIT (annotations); images under the source datasets' licences"


def load(path: str | Path, image_dir: str | Path | None = None) -> Dataset:
    path = Path(path)
    files, root = json_files(path, "VALSE")
    folder = Path(image_dir) if image_dir else root / "images"
    examples = []
    for file in files:
        piece = file.stem
        for key, item in read_json_object(file, "VALSE file", "id -> item").items():
            if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("image_file", "caption", "foil")):
                raise InputError(f"{file} item {key!r}: needs 'image_file', 'caption' and 'foil' strings")
            examples.append(
                Example(
                    id=f"{piece}/{key}",
                    kind=CAPTION_CHOICE,
                    images=[str(folder / item["image_file"])],
                    texts=[item["caption"], item["foil"]],
                    subset=str(item.get("linguistic_phenomena") or piece),
                    tags=[piece],
                )
            )
    return Dataset("valse", path.stem, examples, SOURCE, LICENCE)
