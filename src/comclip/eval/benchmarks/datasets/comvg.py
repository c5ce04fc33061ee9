"""ComVG, the ComCLIP paper's Compositional Visual Genome set (github.com/eric-ai-lab/ComCLIP).

CSV columns: ``id, sentence, pos_triplet, neg_triplet, pos_image_id, neg_image_id, neg_value,
sentence_id``. Each row compares a positive and a negative Visual Genome image for one
sentence; accuracy = the positive image scores higher, per ``neg_value`` (subject, verb,
object). ``pos_triplet`` is offered as the ``given`` parse. Images are ``<image_id>.jpg`` in
a Visual Genome folder.
"""

from __future__ import annotations

from pathlib import Path

from comclip.errors import InputError
from comclip.eval.benchmarks.datasets.base import IMAGE_CHOICE, Dataset, Example, read_csv_rows

SOURCE = "https://github.com/eric-ai-lab/ComCLIP"
LICENCE = "as published by the ComCLIP authors; Visual Genome images CC BY 4.0"
COLUMNS = ("id", "sentence", "pos_triplet", "neg_triplet", "pos_image_id", "neg_image_id", "neg_value")


def load(path: str | Path, image_dir: str | Path | None = None) -> Dataset:
    path = Path(path)
    image_dir = Path(image_dir) if image_dir else path.parent / "images"
    examples = []
    for line, row in read_csv_rows(path, "ComVG", COLUMNS):
        if not row["sentence"] or not row["pos_image_id"] or not row["neg_image_id"]:
            raise InputError(f"{path} line {line}: empty sentence or image id")
        examples.append(
            Example(
                id=row["id"],
                kind=IMAGE_CHOICE,
                images=[str(image_dir / f"{row['pos_image_id']}.jpg"), str(image_dir / f"{row['neg_image_id']}.jpg")],
                texts=[row["sentence"]],
                subset=row["neg_value"],
                given={row["sentence"]: row["pos_triplet"]},
            )
        )
    return Dataset("comvg", path.stem, examples, SOURCE, LICENCE)
