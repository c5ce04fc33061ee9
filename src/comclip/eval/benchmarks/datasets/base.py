"""Evaluation examples: what every dataset module yields."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from comclip.boxes import Box

#: One image, several captions: the first caption is true, the others are negatives.
CAPTION_CHOICE = "caption_choice"
#: One caption, several images: the first image is true, the others are negatives.
IMAGE_CHOICE = "image_choice"
#: Two images and two captions, caption c belongs to image c (Winoground).
WINOGROUND = "winoground"
#: Two images and two captions, caption c belongs to image c, judged as MMVP-VLM and COLA
#: judge them: each caption must prefer its own image.
PAIR_MATCH = "pair_match"
#: One image, two true captions (paraphrases) and one false one (SugarCrepe++).
TWO_POSITIVES = "two_positives"

#: The word-order classes of an example whose captions are compared with each other.
SAME_WORDS, DIFFERENT_WORDS = "same words, other order", "different words"


@dataclass
class Example:
    """One scored unit of a benchmark. ``images`` are paths (or PIL images, for generated
    data); a missing file fails the example
    (counted, with its reason), never silently drops it. ``given`` maps captions to scene
    graphs or triplets supplied by the dataset, for ``--parser given``."""

    id: str
    kind: str
    #: Paths, or images already decoded (generated data).
    images: list[Any]
    texts: list[str]
    subset: str = ""
    tags: list[str] = field(default_factory=list)
    given: dict[str, Any] = field(default_factory=dict)
    #: A box ``(x1, y1, x2, y2)`` every image is cropped to before scoring (ARO does this).
    crop: tuple[float, float, float, float] | None = None
    #: Per image, its true objects as ``(label, box)`` pairs, where the data knows them (the
    #: sandbox's generator): for the oracle grounder and the grounding accuracy measure.
    boxes: tuple[tuple[tuple[str, Box], ...], ...] = ()
    #: Per image, for each of ``boxes``' objects, the box of its pixels that show (an object
    #: partly hidden behind another is seen smaller than its shape), where the data knows it:
    #: grounding to it counts as grounding the object too. A masked box holds those pixels
    #: themselves (the sandbox's), which ``--grounder oracle-masks`` grounds to.
    shown: tuple[tuple[Box, ...], ...] = ()


@dataclass
class Dataset:
    """A loaded benchmark split.

    Example ids are unique: a loader that meets an id again keeps every example and names the
    repeats ``ID#2``, ``ID#3``, ... in file order (stable across runs), counted in
    ``renamed_ids``; no example is ever merged away.
    """

    name: str
    split: str
    examples: Sequence[Example]
    source: str = ""
    licence: str = ""
    #: Where it was read from (a file or folder), or what generated it.
    origin: str = ""
    renamed_ids: int = 0
    #: How the dataset's own code counts a tie between a true and a false option
    #: (:data:`comclip.eval.benchmarks.kinds.TIE_RULES`); reports say so where it is not comclip's strict rule.
    official_ties: str = "strict"
    #: How a report names the split where its name is terse (the sandbox: ``seed 1, tasks
    #: binding, 20 per task``); empty: the split's name.
    title: str = ""
    #: Evaluated example by example (see :class:`comclip.eval.runs.runner.ExampleTask`).
    task: ClassVar[str] = "examples"

    def __post_init__(self) -> None:
        self.renamed_ids = unique_ids(self.examples)

    def __len__(self) -> int:
        return len(self.examples)

    def first(self, n: int) -> Dataset:
        """The first ``n`` examples as a dataset of their own (what ``--limit`` scores); only
        those are read from a dataset that makes its examples when asked (the sandbox)."""
        part = Dataset(self.name, self.split, list(self.examples[:n]), self.source, self.licence, self.origin)
        part.renamed_ids, part.official_ties, part.title = self.renamed_ids, self.official_ties, self.title
        return part

    def image_files(self) -> Iterator:
        """The images its examples read from files (a run checks they are there before any
        model loads); a dataset that draws its images (the sandbox) reads none."""
        return (im for ex in self.examples for im in ex.images)

    def first_problem(self) -> str | None:
        """The first field of the wrong type a loader let through (a caption that is a number,
        null or a list): found before any model loads, not at scoring."""
        for ex in self.examples:
            for k, text in enumerate(ex.texts):
                if not isinstance(text, str):
                    return f"example {ex.id!r}: caption {k + 1} is {json.dumps(text)[:40]}, not text"
        return None

    def content_rows(self) -> Iterator[bytes]:
        """What each example holds (ids, images, captions, subsets, tags, crops, given graphs;
        generated images by their pixels), for the run's content hash."""
        from PIL import Image

        from comclip.digests import image_digest

        for ex in self.examples:
            images = [image_digest(im) if isinstance(im, Image.Image) else str(im) for im in ex.images]
            row = [ex.id, ex.kind, images, ex.texts, ex.subset, ex.tags, ex.crop, ex.given]
            yield json.dumps(row, default=str, sort_keys=True).encode()


def unique_ids(examples: Sequence[Example]) -> int:
    """Rename repeated ids in place (``ID#2``, ``ID#3``, ... in order); the number renamed."""
    seen: dict[str, int] = {}
    taken = {ex.id for ex in examples}
    renamed = 0
    for ex in examples:
        if ex.id not in seen:
            seen[ex.id] = 2  # the suffix the next repeat gets
            continue
        n = seen[ex.id]
        while f"{ex.id}#{n}" in taken:
            n += 1
        seen[ex.id] = n + 1
        ex.id = f"{ex.id}#{n}"
        taken.add(ex.id)
        renamed += 1
    return renamed


def read_csv_rows(path, what: str, columns) -> list[tuple[int, dict]]:
    """``(line number, row)`` pairs of a CSV file that must have ``columns``."""
    import csv
    from pathlib import Path

    from comclip.errors import InputError
    from comclip.jsonfile import checked_input

    path = checked_input(Path(path), f"{what} file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{path}: {what} CSV lacks columns {', '.join(missing)}")
            return list(enumerate(reader, start=2))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read {what} file {path}: {exc}") from None


def one_table(path, what: str):
    """``path`` itself, or the one CSV or JSONL file in the folder ``path``."""
    from pathlib import Path

    from comclip.errors import InputError

    path = Path(path)
    if not path.is_dir():
        return path
    files = sorted(path.glob("*.csv")) + sorted(path.glob("*.jsonl"))
    if len(files) != 1:
        raise InputError(f"{path}: expected one CSV or JSONL file of {what}, found {len(files)}")
    return files[0]


def read_table(path, what: str, columns) -> list[tuple[int, dict]]:
    """``(row or line number, row)`` pairs of a CSV file or a JSONL file of objects, each of
    which must have ``columns``."""
    from comclip.errors import InputError
    from comclip.jsonfile import read_json_lines

    if str(path).lower().endswith(".csv"):
        return read_csv_rows(path, what, columns)
    rows: list[tuple[int, dict]] = []
    for number, row in read_json_lines(path, what):
        missing = [c for c in columns if not isinstance(row, dict) or c not in row]
        if missing:
            raise InputError(f"{path} line {number}: needs {', '.join(missing)}")
        rows.append((number, row))  # type: ignore[arg-type]  # a dict: checked above
    return rows


def find_image(folder, stem: str, suffixes=(".jpg", ".png", ".jpeg")):
    """``folder/stem.<suffix>`` for the first suffix that exists (else the first suffix's path,
    which then fails its example with 'image not found')."""
    from pathlib import Path

    for suffix in suffixes:
        path = Path(folder) / f"{stem}{suffix}"
        if path.exists():
            return path
    return Path(folder) / f"{stem}{suffixes[0]}"


def json_files(path, what: str, recursive: bool = False):
    """``(files, root)``: ``path`` itself, or the JSON files in the folder ``path`` (below it,
    with ``recursive``), sorted; an empty folder is an error naming it."""
    from pathlib import Path

    from comclip.errors import InputError

    path = Path(path)
    if not path.is_dir():
        return [path], path.parent
    files = sorted(path.rglob("*.json") if recursive else path.glob("*.json"))
    if not files:
        raise InputError(f"no {what} JSON files {'under' if recursive else 'in'} {path}")
    return files, path


def bag_of_words(text: str) -> Counter:
    """The words of a caption as a multiset: lower-cased, punctuation dropped, and "an" read
    as "a" (the article follows the next word: "a light under an umbrella" / "an umbrella
    under a light" are the same words)."""
    return Counter("a" if word == "an" else word for word in re.findall(r"[\w']+", text.lower()))
