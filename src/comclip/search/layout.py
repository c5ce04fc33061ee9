"""An index on disk: a folder a user can copy, open read-only and memory-map.

::

    DIR/manifest.json        format, version, identity (model, methods, what shapes the stored
                             side), the build's segments of the queue, counts once complete
    DIR/queue.jsonl          every source path, in the order it was given, each once
    DIR/global.faiss         the global embeddings (normalised, inner product), row = image
    DIR/parts/START-STOP/    the images queue[START:STOP], written whole (a temporary folder
                             renamed into place), so a killed build loses at most the part
                             it was writing:
        records.jsonl        per queued path: path, size, digests, or the reason it was skipped
        global.npy           [images, D]
        cand.G.{vec,box,off}.npy   grounder G's candidate regions: embeddings, boxes, offsets
        cand.G.{runs,nruns}.npy    a masked candidate's runs (none for a plain box), per candidate
        sub.F.{vec,box,off}.npy    each candidate's sub-image with fill F (the box bounding it)
        sub.F.{runs,nruns}.npy     the pixel bounds of each sub-image's region, per row
        union.F.{vec,box,off}.npy  union sub-images of candidate pairs (the box bounding each)
        union.F.pair.npy           the two rows of the image's ``sub.F`` each union joins

``off`` arrays hold ``images + 1`` offsets into the rows of their ``vec`` and ``box`` arrays;
``nruns`` arrays, per row, how many rows of ``runs`` are its own (in row order).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from comclip.errors import InputError
from comclip.jsonfile import read_json_object, write_whole

FORMAT = "comclip-index"
VERSION = 2
MANIFEST = "manifest.json"
QUEUE = "queue.jsonl"
FAISS_FILE = "global.faiss"
PARTS = "parts"


def is_index(folder: Path) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def read_manifest(folder: Path) -> dict:
    if not is_index(folder):
        raise InputError(f"{folder} is not a comclip index (no {MANIFEST}); build one with comclip index build")
    manifest = read_json_object(Path(folder) / MANIFEST, "index manifest", "an index's identity")
    if manifest.get("format") != FORMAT:
        raise InputError(f"{folder} is not a comclip index (its manifest.json has no format {FORMAT!r})")
    if manifest.get("version") != VERSION:
        raise InputError(
            f"{folder}: index format version {manifest.get('version')!r}; this comclip reads version {VERSION}: "
            "build the index again (comclip index build SOURCE... --out NEW_DIR)"
        )
    return manifest


def write_manifest(folder: Path, manifest: dict) -> None:
    write_whole(Path(folder) / MANIFEST, json.dumps({"format": FORMAT, "version": VERSION, **manifest}, indent=1) + "\n")


def read_queue(folder: Path) -> list[str]:
    path = Path(folder) / QUEUE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def write_queue(folder: Path, paths: list[str]) -> None:
    write_whole(Path(folder) / QUEUE, "".join(json.dumps(p) + "\n" for p in paths))


def part_name(start: int, stop: int) -> str:
    return f"{start:09d}-{stop:09d}"


def finished_parts(folder: Path) -> list[tuple[int, int]]:
    """The ranges of the queue whose parts are complete, in order (temporary folders ignored)."""
    root = Path(folder) / PARTS
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        start, _, stop = entry.name.partition("-")
        if entry.is_dir() and start.isdigit() and stop.isdigit():
            found.append((int(start), int(stop)))
    return sorted(found)


def write_part(folder: Path, start: int, stop: int, records: list[dict], arrays: dict[str, np.ndarray]) -> None:
    """Write one part whole: into a temporary folder, flushed, then renamed into place."""
    root = Path(folder) / PARTS
    root.mkdir(parents=True, exist_ok=True)
    temporary = root / f".partial-{part_name(start, stop)}-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        _write_file(temporary / "records.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode())
        for name, array in arrays.items():
            with open(temporary / f"{name}.npy", "wb") as handle:
                np.save(handle, np.ascontiguousarray(array))
                handle.flush()
                os.fsync(handle.fileno())
        os.rename(temporary, root / part_name(start, stop))
    except OSError as exc:
        shutil.rmtree(temporary, ignore_errors=True)
        raise InputError(f"cannot write the index part {part_name(start, stop)} in {folder}: {exc.strerror or exc}") from None


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def clear_partials(folder: Path) -> None:
    """Remove the temporary folders a killed build left (its own files only)."""
    root = Path(folder) / PARTS
    if root.is_dir():
        for entry in root.iterdir():
            if entry.name.startswith(".partial-") and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)


@dataclass
class Part:
    """One finished part, its arrays memory-mapped on first use."""

    folder: Path
    start: int
    stop: int
    _arrays: dict = field(default_factory=dict, repr=False)

    @cached_property
    def records(self) -> list[dict]:
        text = (self.folder / "records.jsonl").read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line]

    @cached_property
    def indexed(self) -> list[dict]:
        """The records of the images indexed (not skipped), in row order."""
        return [r for r in self.records if "skipped" not in r]

    def array(self, name: str) -> np.ndarray:
        """The part's array ``name``: the sub-image and region embeddings memory-mapped, the
        rest (global embeddings, which FAISS holds in memory too; offsets and boxes, a few
        bytes an image) read whole, so a query's first touch of an image does not fault in a
        page of each."""
        if name not in self._arrays:
            mapped = name.endswith(".vec")
            self._arrays[name] = np.load(self.folder / f"{name}.npy", mmap_mode="r" if mapped else None)
        return self._arrays[name]

    def open_all(self) -> None:
        for path in self.folder.glob("*.npy"):
            self.array(path.name[: -len(".npy")])

    def span(self, name: str, local: int) -> tuple[int, int]:
        """The rows of the ragged table ``name`` that are image ``local``'s."""
        a, b = self.array(f"{name}.off")[local : local + 2].tolist()
        return a, b

    def runs(self, name: str, first: int, last: int) -> list[np.ndarray]:
        """The runs of rows ``first`` to ``last`` (exclusive) of table ``name``, row by row."""
        key = f"{name}.nruns.starts"
        if key not in self._arrays:
            self._arrays[key] = np.concatenate([[0], np.cumsum(self.array(f"{name}.nruns"))]).tolist()
        starts, runs = self._arrays[key], self.array(f"{name}.runs")
        return [runs[starts[k] : starts[k + 1]] for k in range(first, last)]


def open_parts(folder: Path) -> list[Part]:
    root = Path(folder) / PARTS
    return [Part(root / part_name(a, b), a, b) for a, b in finished_parts(folder)]


def skipped_records(parts: list[Part]) -> list[dict]:
    """The records of the files the parts could not index, each with its reason."""
    return [r for part in parts for r in part.records if "skipped" in r]


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
