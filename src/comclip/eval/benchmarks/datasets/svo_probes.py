"""SVO-Probes (Hendricks & Nematzadeh, Findings of ACL 2021; github.com/deepmind/svo_probes,
CC BY 4.0; images are web photos fetched from their URLs by the user).

CSV columns: ``sentence, pos_triplet, neg_triplet, subj_neg, verb_neg, obj_neg, pos_url,
neg_url`` and, in most copies, ``pos_image_id, neg_image_id``. Each row asks whether the
positive image scores higher than the negative one for the sentence; accuracy per negated
part (subject, verb, object). Images are looked up in ``--image-dir`` as ``<image_id>.jpg``
(or ``.png``), else by the file name at the end of the URL. ``pos_triplet`` is the ``given``
parse.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from comclip.errors import InputError
from comclip.eval.benchmarks.datasets.base import IMAGE_CHOICE, Dataset, Example, find_image, read_csv_rows

SOURCE = "https://github.com/deepmind/svo_probes"
LICENCE = "CC BY 4.0 (annotations); images under their owners' terms"
COLUMNS = ("sentence", "pos_triplet", "neg_triplet", "subj_neg", "verb_neg", "obj_neg", "pos_url", "neg_url")


def _truthy(value: str) -> bool:
    return str(value).strip().lower() in {"true", "1", "yes"}


def _image(folder: Path, image_id: str, url: str) -> str:
    if image_id:
        path = find_image(folder, image_id)
        if path.exists():
            return str(path)
    name = Path(urlparse(url).path).name
    return str(folder / name) if name else str(find_image(folder, image_id))


def load(path: str | Path, image_dir: str | Path | None = None) -> Dataset:
    path = Path(path)
    folder = Path(image_dir) if image_dir else path.parent / "images"
    examples = []
    for line, row in read_csv_rows(path, "SVO-Probes", COLUMNS):
        negated = [
            part for part, col in (("subject", "subj_neg"), ("verb", "verb_neg"), ("object", "obj_neg")) if _truthy(row[col])
        ]
        if not row["sentence"] or len(negated) != 1:
            raise InputError(f"{path} line {line}: needs a sentence and exactly one of subj_neg, verb_neg, obj_neg true")
        examples.append(
            Example(
                id=str(row.get("") or row.get("index") or row.get("id") or line - 2),
                kind=IMAGE_CHOICE,
                images=[
                    _image(folder, row.get("pos_image_id", ""), row["pos_url"]),
                    _image(folder, row.get("neg_image_id", ""), row["neg_url"]),
                ],
                texts=[row["sentence"]],
                subset=negated[0],
                given={row["sentence"]: row["pos_triplet"]},
            )
        )
    return Dataset("svo_probes", path.stem, examples, SOURCE, LICENCE)
