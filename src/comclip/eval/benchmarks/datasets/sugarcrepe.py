"""SugarCrepe (Hsieh et al., NeurIPS 2023; github.com/RAIVNLab/sugar-crepe, MIT licence).

Format: a JSON object keyed by task (``add_att``, ``replace_rel``, ``swap_obj``, ...), each a
list (or id-keyed object) of items with ``caption``, ``negative_caption`` and ``filename``
(a COCO val2017 file) or ``image`` (a path relative to the data folder). Accuracy: the true
caption scores higher than the hard negative, per task.
"""

from __future__ import annotations

import json
from pathlib import Path

from comclip.errors import InputError
from comclip.eval.benchmarks.datasets.base import CAPTION_CHOICE, Dataset, Example
from comclip.jsonfile import read_json_object

SOURCE = "https://github.com/RAIVNLab/sugar-crepe"
LICENCE = "MIT (annotations); COCO images under their Flickr licences"


def load(path: str | Path, image_dir: str | Path | None = None) -> Dataset:
    """Load a SugarCrepe JSON. Images: ``image_dir/filename`` if given, else ``image`` resolved
    against the JSON file's parent folders (the shared layout puts it under ``data/``)."""
    path = Path(path)
    data = read_json_object(path, "SugarCrepe file", "task -> items")
    examples = []
    for task, items in data.items():
        if not isinstance(items, (dict, list)):
            raise InputError(f"{path}: task {task!r} must hold a list or an object of items, got {json.dumps(items)[:40]}")
        rows = items.values() if isinstance(items, dict) else items
        for n, item in enumerate(rows):
            where = f"{path} task {task!r} item {n}"
            try:
                caption, negative = item["caption"], item["negative_caption"]
            except (KeyError, TypeError):
                raise InputError(f"{where}: needs 'caption' and 'negative_caption'") from None
            examples.append(
                Example(
                    id=f"{task}/{item.get('id', n)}",
                    kind=CAPTION_CHOICE,
                    images=[str(_image_path(item, path, image_dir, where))],
                    texts=[caption, negative],
                    subset=task,
                )
            )
    return Dataset("sugarcrepe", path.stem, examples, SOURCE, LICENCE)


def _image_path(item: dict, json_path: Path, image_dir, where: str) -> Path:
    if image_dir is not None and item.get("filename"):
        return Path(image_dir) / item["filename"]
    if item.get("image"):
        relative = Path(item["image"])
        for base in (json_path.parent, *json_path.parents):
            if (base / relative).exists():
                return base / relative
        return json_path.parent.parent / relative
    if item.get("filename"):
        return json_path.parent / item["filename"]
    raise InputError(f"{where}: no 'image' or 'filename'")
