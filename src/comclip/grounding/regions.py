"""Precomputed regions, as the paper's GRiT dense captions provide them.

Each image has a JSON object ``{"label text": [[x1, y1, x2, y2], ...], ...}``: either one
file per image in a folder (``<image stem>.json``) or one file mapping image file names to
such objects. Entities are matched to labels by the backbone's text-embedding similarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from comclip.backbones import Backbone
from comclip.errors import InputError
from comclip.grounding.base import Box, Detection, Grounder
from comclip.jsonfile import read_json_object


def load_regions(path: str | Path, source: str | None) -> dict[str, list[Box]]:
    """Regions of the image ``source`` from a folder of per-image JSON files or one JSON file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"regions file or folder not found: {path}")
    if path.is_dir():
        if source is None:
            raise InputError("a regions folder needs the image's file name to find <stem>.json")
        file = path / f"{Path(source).stem}.json"
        if not file.exists():
            raise InputError(f"no regions for image {source}: {file} does not exist")
        data = _read_json(file)
    else:
        data = _read_json(path)
        if source is not None and all(isinstance(v, dict) for v in data.values()):
            keys = [source, Path(source).name, Path(source).stem]
            found = next((data[k] for k in keys if k in data), None)
            if found is None:
                raise InputError(f"no regions for image {source} in {path}")
            data = found
    regions: dict[str, list[Box]] = {}
    for label, boxes in data.items():
        if not isinstance(boxes, list) or not boxes:
            raise InputError(f"{path}: regions of {label!r} must be a non-empty list of [x1, y1, x2, y2]")
        if not isinstance(boxes[0], (list, tuple)):
            boxes = [boxes]
        regions[str(label)] = [Box.from_sequence(b, source=f"{path} [{label!r}]") for b in boxes]
    return regions


def _read_json(file: Path) -> dict:
    return read_json_object(file, "regions file", "label -> boxes")


class RegionsGrounder(Grounder):
    """Matches each query to the most similar region label; that label's boxes are its region."""

    name = "regions"
    original_pixels = True

    def __init__(self, backbone: Backbone, regions: str | Path | None = None, min_similarity: float = -1.0):
        if regions is None:
            raise InputError("the regions grounder needs --regions FILE_OR_FOLDER")
        if not Path(regions).exists():  # found before any work, not once per image
            raise InputError(f"regions file or folder not found: {regions}")
        self.backbone = backbone
        self.path = Path(regions)
        self.min_similarity = min_similarity

    def describe(self) -> dict:
        return {"name": self.name, "regions": str(self.path), "min_similarity": self.min_similarity}

    def ground(self, image: Image.Image, queries: Sequence[str], source: str | None = None) -> list[list[Detection]]:
        regions = load_regions(self.path, source)
        if not queries:
            return []
        if not regions:
            return [[] for _ in queries]
        labels = list(regions)
        similarity = self.backbone.encode_texts(list(queries)) @ self.backbone.encode_texts(labels).T
        results = []
        for row in similarity:
            ranked = sorted(range(len(labels)), key=lambda j: -float(row[j]))
            results.append(
                [
                    Detection(boxes=tuple(regions[labels[j]]), score=float(row[j]), label=labels[j])
                    for j in ranked
                    if float(row[j]) >= self.min_similarity
                ]
            )
        return results
