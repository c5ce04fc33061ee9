"""What'sUp (Kamath, Hessel, Chang, EMNLP 2023; github.com/amitakamath/whatsup_vlms, MIT):
spatial relations between everyday objects, where CLIP-family models are near chance.

Four files, read as that repository's ``dataset_zoo/aro_datasets.py`` reads them; every item
is one image with its true caption first and foils after (caption choice, accuracy):

- Controlled-A ``controlled_images_dataset.json`` and Controlled-B
  ``controlled_clevr_dataset.json``: lists of ``{"image_path", "caption_options"}`` (four
  captions: on / under / left of / right of, or in front of / behind / left of / right of);
  images in ``controlled_images/`` or ``controlled_clevr/``, found by file name. The subset is
  the preposition of the image's file name (``mug_left_of_plate.jpeg``).
- COCO-spatial ``coco_qa_one_obj.json`` / ``coco_qa_two_obj.json`` and GQA-spatial
  ``vg_qa_one_obj.json`` / ``vg_qa_two_obj.json``: lists of ``[image id, true caption, false
  caption]``; images ``val2017/<id, 12 digits>.jpg`` or ``vg_images/<id>.jpg``. The subset is
  the preposition: the true caption's last word (one object) or its left / right / above /
  below / front / behind / top (two objects).

``--image-dir`` overrides the image folder. Licence: MIT (annotations and controlled
images); COCO and Visual Genome images CC BY 4.0.

Ties: What'sUp's own code takes the argmax over the caption options, which meets the true
caption first, so a tie counts as correct there; comclip's default counts it wrong. Reports
say how many examples a tie decided, and ``--ties first`` reproduces the published rule.
"""

from __future__ import annotations

from pathlib import Path

from comclip.errors import InputError
from comclip.eval.benchmarks.datasets.base import CAPTION_CHOICE, Dataset, Example
from comclip.jsonfile import read_json

SOURCE = "https://github.com/amitakamath/whatsup_vlms"
LICENCE = "MIT (annotations, controlled images); COCO / Visual Genome images CC BY 4.0"
#: File stem -> (default image folder, kind).
FILES = {
    "controlled_images_dataset": ("controlled_images", "controlled"),
    "controlled_clevr_dataset": ("controlled_clevr", "controlled"),
    "coco_qa_one_obj": ("val2017", "coco"),
    "coco_qa_two_obj": ("val2017", "coco"),
    "vg_qa_one_obj": ("vg_images", "gqa"),
    "vg_qa_two_obj": ("vg_images", "gqa"),
}
#: The prepositions of the controlled images' file names, in the order they are tested.
CONTROLLED_PREPOSITIONS = ("left_of", "right_of", "in-front_of", "behind", "on", "under")
TWO_OBJECT_WORDS = {"coco": ("left", "right", "above", "below"), "gqa": ("left", "right", "front", "behind", "top")}


def load(path: str | Path, image_dir: str | Path | None = None) -> Dataset:
    path = Path(path)
    if path.stem not in FILES:
        raise InputError(f"{path}: not a What'sUp file; expected one of {', '.join(f + '.json' for f in FILES)}")
    folder_name, kind = FILES[path.stem]
    folder = Path(image_dir) if image_dir else path.parent / folder_name
    items = read_json(path, "What'sUp file")
    if not isinstance(items, list):
        raise InputError(f"{path}: expected a list of What'sUp items")
    read = _controlled if kind == "controlled" else _question
    examples = [read(item, n, folder, kind, path.stem.endswith("one_obj")) for n, item in enumerate(items)]
    return Dataset("whatsup", path.stem, examples, SOURCE, LICENCE, official_ties="first")


def _controlled(item, n: int, folder: Path, kind: str, one_object: bool) -> Example:
    try:
        name, texts = Path(item["image_path"]).name, [str(t) for t in item["caption_options"]]
    except (KeyError, TypeError):
        raise InputError(f"item {n}: needs image_path and caption_options") from None
    if len(texts) < 2:
        raise InputError(f"item {n}: needs a true caption and at least one foil")
    stem = Path(name).stem
    subset = next((p for p in CONTROLLED_PREPOSITIONS if f"_{p}_" in f"_{stem}_"), "")
    return Example(id=stem, kind=CAPTION_CHOICE, images=[str(folder / name)], texts=texts, subset=subset)


def _question(item, n: int, folder: Path, kind: str, one_object: bool) -> Example:
    try:
        image_id, true, false = item
        image = f"{int(image_id):012d}.jpg" if kind == "coco" else f"{image_id}.jpg"
    except (TypeError, ValueError):
        raise InputError(f"item {n}: needs [image id, true caption, false caption]") from None
    words = str(true).split()
    if one_object:
        subset = words[-1] if words else ""
    else:
        subset = next(
            (w for w in TWO_OBJECT_WORDS[kind] if w in words), TWO_OBJECT_WORDS[kind][-1]
        )  # as theirs: the last by default
    return Example(id=f"{n}", kind=CAPTION_CHOICE, images=[str(folder / image)], texts=[str(true), str(false)], subset=subset)
