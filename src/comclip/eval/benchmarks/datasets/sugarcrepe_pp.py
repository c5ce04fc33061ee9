"""SugarCrepe++ (Dumpala et al., NeurIPS 2024 Datasets and Benchmarks; github.com/Sri-Harsha/scpp,
MIT; huggingface.co/datasets/Aman-J/SugarCrepe_pp).

Format: one JSON file per subset (``replace_att``, ``replace_obj``, ``replace_rel``,
``swap_att``, ``swap_obj``), each a list (or id-keyed object) of items with ``filename`` (a
COCO val2017 image), ``caption`` and ``caption2`` (two positives with different words) and
``negative_caption``.

- ``--data hf:Aman-J/SugarCrepe_pp`` fetches the caption files once (they hold no images);
- ``--data FOLDER`` (or one JSON file) reads a local copy.

Images: ``--image-dir`` (COCO val2017); else ``images/`` or ``val2017/`` beside the files.

Metrics per subset, as the benchmark's evaluation code: ``itt`` (image to text): both
positives score above the negative; ``tot`` (text only): the two positives are closer to
each other than either is to the negative, by the backbone's text side (which ComCLIP leaves
as CLIP's, so the two methods share it).
"""

from __future__ import annotations

import json
from pathlib import Path

from comclip.errors import InputError
from comclip.eval.benchmarks.datasets.base import TWO_POSITIVES, Dataset, Example, json_files
from comclip.eval.benchmarks.datasets.hub import hub_repo, local_or_hub
from comclip.jsonfile import read_json

SOURCE = "https://github.com/Sri-Harsha/scpp"
LICENCE = "MIT (captions); COCO images under their Flickr licences"
HF_REPO = "Aman-J/SugarCrepe_pp"
FIELDS = ("caption", "caption2", "negative_caption")


def load(path: str | Path, image_dir: str | Path | None = None) -> Dataset:
    if hub_repo(path, HF_REPO) and image_dir is None:
        raise InputError(f"{HF_REPO} holds the captions only: give the COCO val2017 images with --image-dir")
    files, root = json_files(local_or_hub(path, HF_REPO, ["*.json", "**/*.json"])[0], "SugarCrepe++", recursive=True)
    images = Path(image_dir) if image_dir else _image_folder(root)
    examples = []
    for file in files:
        examples += _examples(file, images)
    return Dataset("sugarcrepe_pp", "val2017", examples, SOURCE, LICENCE)


def _image_folder(root: Path) -> Path:
    candidates = [root / "images", root / "val2017", root.parent / "images", root.parent / "val2017"]
    return next((c for c in candidates if c.is_dir()), candidates[0])


def _examples(file: Path, images: Path) -> list[Example]:
    data = read_json(file, "SugarCrepe++ file")
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else None
    if items is None:
        raise InputError(f"{file}: expected a list (or an id-keyed object) of items")
    examples = []
    for key, item in items:
        where = f"{file} item {key}"
        if not isinstance(item, dict) or not all(isinstance(item.get(f), str) for f in (*FIELDS, "filename")):
            raise InputError(f"{where}: needs filename, {', '.join(FIELDS)}; got {json.dumps(item)[:60]}")
        examples.append(
            Example(
                id=f"{file.stem}/{item.get('id', key)}",
                kind=TWO_POSITIVES,
                subset=file.stem,
                images=[str(images / item["filename"])],
                texts=[item[f] for f in FIELDS],
            )
        )
    return examples
