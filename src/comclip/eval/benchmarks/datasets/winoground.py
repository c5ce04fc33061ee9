"""Winoground (Thrush et al., CVPR 2022): the gated Hugging Face dataset or a local copy.

- ``--data hf:facebook/winoground`` downloads ``data/examples.jsonl`` and ``data/images.zip``
  from the gated dataset (accept its terms on huggingface.co; the token is read from
  ``HF_TOKEN``) into the Hugging Face cache, once.
- ``--data FOLDER`` (or the CSV itself) reads a local copy: the metadata CSV (``id,
  caption_0, caption_1, tag, secondary_tag, collapsed_tag``) and
  ``images/ex_<id>_img_<0|1>.png``.

Text, image and group scores per ``collapsed_tag`` (subsets) and per ``tag`` (tags).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from comclip.errors import InputError
from comclip.eval.benchmarks.datasets.base import WINOGROUND, Dataset, Example, find_image, read_csv_rows
from comclip.eval.benchmarks.datasets.hub import hub_error, hub_repo, hub_token
from comclip.jsonfile import read_json_lines

SOURCE = "https://huggingface.co/datasets/facebook/winoground"
LICENCE = "Winoground licence: non-commercial research only"
HF_REPO = "facebook/winoground"


def load(metadata: str | Path, image_dir: str | Path | None = None) -> Dataset:
    repo = hub_repo(metadata, HF_REPO)
    if repo:
        metadata, image_dir = download(repo)
    metadata = Path(metadata)
    if metadata.is_dir():
        candidates = sorted(metadata.glob("*.csv")) or sorted(metadata.glob("*.jsonl"))
        if not candidates:
            raise InputError(f"no Winoground metadata (CSV or examples.jsonl) in {metadata}")
        image_dir = image_dir or metadata / "images"
        metadata = candidates[0]
    image_dir = Path(image_dir) if image_dir else metadata.parent / "images"
    rows = (
        _jsonl_rows(metadata)
        if metadata.suffix == ".jsonl"
        else [row for _, row in read_csv_rows(metadata, "Winoground metadata", ("id", "caption_0", "caption_1"))]
    )
    examples = []
    for row in rows:
        ex_id = str(row["id"])
        examples.append(
            Example(
                id=ex_id,
                kind=WINOGROUND,
                images=[str(find_image(image_dir, f"ex_{ex_id}_img_{i}", (".png", ".jpg", ".jpeg"))) for i in (0, 1)],
                texts=[row["caption_0"], row["caption_1"]],
                subset=row.get("collapsed_tag", "") or "",
                tags=[t for t in (row.get("tag", ""), row.get("secondary_tag", "")) if t],
            )
        )
    return Dataset("winoground", "test", examples, SOURCE, LICENCE)


def _jsonl_rows(path: Path) -> list[dict]:
    rows = []
    for number, row in read_json_lines(path, "Winoground metadata"):
        if not isinstance(row, dict) or not all(k in row for k in ("id", "caption_0", "caption_1")):
            raise InputError(f"{path} line {number}: needs a JSON object with id, caption_0, caption_1")
        rows.append(row)
    return rows


def download(repo: str = HF_REPO) -> tuple[Path, Path]:
    """Fetch the gated dataset's metadata and images (once) and return their local paths."""
    from huggingface_hub import hf_hub_download

    try:
        examples = Path(hf_hub_download(repo, "data/examples.jsonl", repo_type="dataset", token=hub_token()))
        archive = Path(hf_hub_download(repo, "data/images.zip", repo_type="dataset", token=hub_token()))
    except Exception as exc:  # network, auth and gating errors all end here
        raise hub_error(repo, exc, gated=True) from None
    images = archive.parent / "images"
    if not (images / ".complete").exists():
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.namelist():
                if member.endswith("/"):
                    continue
                target = images / Path(member).name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zipped.read(member))
        (images / ".complete").write_text("")
    return examples, images
