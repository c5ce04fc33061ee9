"""MMVP-VLM (Tong et al., "Eyes Wide Shut?", CVPR 2024; github.com/tsb0601/MMVP, MIT licence).

- ``--data hf:MMVP/MMVP_VLM`` fetches the benchmark from the Hugging Face Hub, once;
- ``--data FOLDER`` reads a local copy in the same layout: ``Questions.csv`` (``Question ID,
  Type, Statement``) and ``MLLM_VLM Images/<Type>/<Question ID>.jpg``.

Rows 2k-1 and 2k form a pair: two images, one statement each, of one of nine visual
patterns (``Type``). As the benchmark's ``evaluate_vlm.py``, each statement is scored as
"a photo of <statement>", and a pair counts only if each statement prefers its own image
(``pair``); per visual pattern.
"""

from __future__ import annotations

from pathlib import Path

from comclip.errors import InputError
from comclip.eval.benchmarks.datasets.base import PAIR_MATCH, Dataset, Example, find_image, read_csv_rows
from comclip.eval.benchmarks.datasets.hub import local_or_hub

SOURCE = "https://huggingface.co/datasets/MMVP/MMVP_VLM"
LICENCE = "MIT (github.com/tsb0601/MMVP)"
HF_REPO = "MMVP/MMVP_VLM"
IMAGES = "MLLM_VLM Images"
PROMPT = "a photo of {}"
COLUMNS = ("Question ID", "Type", "Statement")


def load(path: str | Path, image_dir: str | Path | None = None) -> Dataset:
    folder, _ = local_or_hub(path, HF_REPO)
    questions = folder / "Questions.csv" if folder.is_dir() else folder
    images = Path(image_dir) if image_dir else questions.parent / IMAGES
    rows = sorted(read_csv_rows(questions, "MMVP-VLM questions", COLUMNS), key=lambda r: _qid(questions, *r))
    if len(rows) % 2:
        raise InputError(f"{questions}: {len(rows)} statements; MMVP-VLM pairs them two by two")
    examples = []
    for (_, first), (_, second) in zip(rows[0::2], rows[1::2]):
        category = first["Type"].strip()
        ids = [first["Question ID"].strip(), second["Question ID"].strip()]
        examples.append(
            Example(
                id=f"{ids[0]}-{ids[1]}",
                kind=PAIR_MATCH,
                subset=category,
                images=[str(find_image(images / category, qid, (".jpg", ".jpeg", ".png"))) for qid in ids],
                texts=[PROMPT.format(first["Statement"].strip()), PROMPT.format(second["Statement"].strip())],
            )
        )
    return Dataset("mmvp", "test", examples, SOURCE, LICENCE)


def _qid(path: Path, number: int, row: dict) -> int:
    try:
        return int(row["Question ID"])
    except ValueError:
        raise InputError(f"{path} row {number}: Question ID must be a number, got {row['Question ID']!r}") from None
