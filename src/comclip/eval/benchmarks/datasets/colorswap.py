"""ColorSwap (Burapacheep et al., 2024; huggingface.co/datasets/stanfordnlp/colorswap, MIT).

1,000 Winoground-style examples: two images and two captions with the same words, the
colour words swapped between objects; caption 1 describes image 1.

- ``--data hf:stanfordnlp/colorswap`` (gated: accept its terms, set ``HF_TOKEN``) fetches the
  Parquet files once; their images are written once to ``$COMCLIP_CACHE/datasets/``;
- ``--data FOLDER`` reads a local copy: those Parquet files (columns ``id, image_1, image_2,
  caption_1, caption_2``; the ``pyarrow`` package reads them), or a CSV / JSONL file with the
  same columns and image paths relative to it (or to ``--image-dir``);
- the official release (github.com/Top34051/colorswap): ``--data data/test.json`` (or the
  folder ``data`` with ``--split``), a JSON array of ``{"id", "caption_1", "caption_2",
  "image_1": "images/img_0_1.png", "image_2", ...}`` with ``images.zip`` extracted beside it,
  so image paths are relative to the JSON file's folder (or to ``--image-dir``).

``--split test`` (default where the files name splits) or ``train``. Text, image and group
scores (Thrush et al., CVPR 2022), and pairwise accuracy.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from comclip.errors import ComclipError, InputError
from comclip.eval.benchmarks.datasets.base import WINOGROUND, Dataset, Example, one_table, read_table
from comclip.eval.benchmarks.datasets.hub import local_or_hub
from comclip.jsonfile import read_json

SOURCE = "https://huggingface.co/datasets/stanfordnlp/colorswap"
LICENCE = "MIT"
HF_REPO = "stanfordnlp/colorswap"
COLUMNS = ("id", "image_1", "image_2", "caption_1", "caption_2")


def load(path: str | Path, image_dir: str | Path | None = None, split: str | None = None) -> Dataset:
    source, _ = local_or_hub(path, HF_REPO, ["*.parquet", "**/*.parquet"], gated=True)
    tables = sorted(source.rglob("*.parquet")) if source.is_dir() else ([source] if source.suffix == ".parquet" else [])
    release = None if tables else _release_file(source, split)
    if release is not None:
        rows, base = _release_rows(release), Path(image_dir) if image_dir else release.parent
        split = split or release.stem
    elif tables:
        split = split or ("test" if any(p.name.startswith("test") for p in tables) else None)
        chosen = [p for p in tables if split is None or p.name.startswith(split)]
        if not chosen:
            raise InputError(f"{source}: no Parquet file of split {split!r}")
        rows, base = _parquet_rows(chosen), None
    else:
        table = one_table(source, "ColorSwap examples")
        rows = [row for _, row in read_table(table, "ColorSwap", COLUMNS)]
        base = Path(image_dir) if image_dir else table.parent
    examples = [
        Example(
            id=str(row["id"]),
            kind=WINOGROUND,
            texts=[row["caption_1"], row["caption_2"]],
            images=[str(row[f"image_{k}"] if base is None else base / row[f"image_{k}"]) for k in (1, 2)],
        )
        for row in rows
    ]
    return Dataset("colorswap", split or "all", examples, SOURCE, LICENCE)


def _release_file(source: Path, split: str | None) -> Path | None:
    """The official release's JSON file: ``source`` itself, or ``SPLIT.json`` (default
    ``test.json``) in the folder ``source``; None where the data is in another form."""
    if source.is_file():
        return source if source.suffix.lower() == ".json" else None
    found = sorted(source.glob("*.json")) if source.is_dir() else []
    if not found:
        return None
    chosen = source / f"{split or 'test'}.json"
    if not chosen.is_file():
        raise InputError(f"{source}: no {chosen.name} (found {', '.join(p.name for p in found)}); choose one with --split")
    return chosen


def _release_rows(file: Path) -> list[dict]:
    """The examples of a release file: a JSON array of objects with :data:`COLUMNS`."""
    data = read_json(file, "ColorSwap file")
    if not isinstance(data, list):
        raise InputError(f"{file}: a ColorSwap release file holds a JSON array of examples")
    for n, row in enumerate(data):
        missing = [c for c in COLUMNS if not isinstance(row, dict) or c not in row]
        if missing:
            raise InputError(f"{file} example {n + 1}: needs {', '.join(missing)}")
    return data


def _parquet_rows(files: list[Path]) -> list[dict]:
    """The rows of the Hub's Parquet files, each image written once to the comclip cache folder
    (the user's folder is only read) and replaced by its path."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ComclipError("reading ColorSwap's Parquet files needs pyarrow: pip install pyarrow") from None
    rows = []
    for file in files:
        folder = _image_folder(file)
        for row in pq.read_table(file, columns=list(COLUMNS)).to_pylist():
            for k in (1, 2):
                row[f"image_{k}"] = _written(row[f"image_{k}"], folder / f"{row['id']}_{k}", file)
            rows.append(row)
    return rows


def _image_folder(file: Path) -> Path:
    from comclip.cache.embeddings import default_cache_path

    digest = hashlib.sha256(f"{file.resolve()}:{file.stat().st_size}:{file.stat().st_mtime_ns}".encode()).hexdigest()[:16]
    folder = default_cache_path().parent / "datasets" / f"colorswap-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _written(image: dict | None, stem: Path, file: Path) -> Path:
    """An image cell (``{"bytes", "path"}``) as a file; a cell without bytes fails its example."""
    data = image.get("bytes") if isinstance(image, dict) else None
    suffix = Path((image or {}).get("path") or "x.png").suffix or ".png"
    target = stem.with_suffix(suffix)
    if data and not target.exists():
        partial = target.with_suffix(target.suffix + ".partial")
        partial.write_bytes(data)
        partial.replace(target)
    return target if data else stem.with_suffix(".missing")
