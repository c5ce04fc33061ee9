"""ARO (Yuksekgonul et al., ICLR 2023; github.com/mertyg/vision-language-models-are-bows, MIT):
Visual Genome Relation and Visual Genome Attribution.

``visual_genome_relation.json`` / ``visual_genome_attribution.json``: lists of
``{"image_path", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "true_caption", "false_caption"}``
plus ``relation_name`` (VG-Relation) or ``attributes`` (VG-Attribution). As in ARO's own
code, each image is cropped to the box before scoring. Accuracy: the true caption scores
higher than the false one; per relation (VG-Relation) or attribute pair (VG-Attribution).
VG-Relation items are tagged ``spatial`` where their predicate is one the geometric check
reads from boxes (``--relations geometry``: left of, above, on, under, ...), else ``other``.
Image paths are taken relative to ``--image-dir`` (the Visual Genome image folder) by their
file name.
"""

from __future__ import annotations

from pathlib import Path

from comclip.composition.geometry import spatial_rule
from comclip.errors import InputError
from comclip.eval.benchmarks.datasets.base import CAPTION_CHOICE, Dataset, Example
from comclip.jsonfile import read_json

SOURCE = "https://github.com/mertyg/vision-language-models-are-bows"
LICENCE = "MIT (annotations); Visual Genome images CC BY 4.0"


def load(path: str | Path, image_dir: str | Path | None = None) -> Dataset:
    path = Path(path)
    folder = Path(image_dir) if image_dir else path.parent / "images"
    items = read_json(path, "ARO file")
    if not isinstance(items, list):
        raise InputError(f"{path}: expected a list of ARO items")
    relation = "relation" in path.stem
    examples = []
    for n, item in enumerate(items):
        try:
            x, y, w, h = (float(item[k]) for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"))
            texts = [item["true_caption"], item["false_caption"]]
            image = folder / Path(item["image_path"]).name
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path} item {n}: needs image_path, bbox_x/y/w/h, true_caption and false_caption") from None
        tags = []
        if "relation_name" in item:
            subset = str(item["relation_name"])
            tags = ["spatial" if spatial_rule(subset) else "other"]
        elif "attributes" in item:
            subset = "-".join(str(a) for a in item["attributes"])
        else:
            subset = ""
        examples.append(
            Example(
                id=str(n),
                kind=CAPTION_CHOICE,
                images=[str(image)],
                texts=texts,
                subset=subset,
                tags=tags,
                crop=(x, y, x + w, y + h),
            )
        )
    name = "aro_vg_relation" if relation else "aro_vg_attribution"
    return Dataset(name, path.stem, examples, SOURCE, LICENCE)
