"""Building an index: the queue of source paths in parts, each part's stored side computed
and written whole, then the FAISS index over every part's global embeddings.

A build is identified by what shapes the stored side (:func:`identity`): resuming or adding
with another model or configuration is refused, naming the fields that differ. Parts are
fixed ranges of the queue, so a build killed at any moment and resumed writes the same parts
as one that ran through. Under torchrun each process computes every ``size``-th pending part
and the first process writes the FAISS index once all are done.
"""

from __future__ import annotations

import contextlib
import gc
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from comclip.backbones.cached import CachedEncoder
from comclip.config import PipelineConfig
from comclip.digests import file_digest
from comclip.errors import InputError
from comclip.eval.runs.process_group import barrier
from comclip.eval.runs.store import HOLDER_FILE, LOCK_FILE, folder_lock
from comclip.imaging.files import LoadedImage, load_image
from comclip.search.layout import (
    FAISS_FILE,
    QUEUE,
    clear_partials,
    finished_parts,
    is_index,
    open_parts,
    read_manifest,
    read_queue,
    skipped_records,
    write_manifest,
    write_part,
    write_queue,
)
from comclip.search.side import StoredSide, compute
from comclip.world import World

#: Images per part: the unit a killed build loses and a torchrun process takes.
DEFAULT_PART_SIZE = 256
DTYPES = ("float32", "float16")


def identity(backbone: CachedEncoder, configs: dict[str, PipelineConfig | None], side: StoredSide, **settings: Any) -> dict:
    """Everything that decides the stored arrays: the model, each method's configuration, the
    stored side (grounders, fills, union cap) and the storage settings."""
    if backbone.image_tokens is not None:
        raise InputError(f"{backbone.name} gives several vectors per image (BLIP-2's query tokens); an index holds one")
    return {
        "model": backbone.name,
        "fingerprint": backbone.fingerprint,
        "precision": backbone.precision,
        "pixels": backbone.pixels,
        "methods": list(configs),
        "configs": {name: None if c is None else c.to_dict() for name, c in configs.items()},
        "side": side.describe(),
        **settings,
    }


def differences(old: dict, new: dict) -> list[str]:
    """The identity fields in which two builds differ, as ``field: old -> new``."""
    return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def pending(folder: Path, segments: list[list[int]], part_size: int) -> list[tuple[int, int]]:
    """The parts of each segment of the queue that are not written yet."""
    done = set(finished_parts(folder))
    planned = [(s, min(s + part_size, b)) for a, b in segments for s in range(a, b, part_size)]
    return [p for p in planned if p not in done]


def fill(
    folder: Path, backbone: CachedEncoder, side: StoredSide, manifest: dict, world: World = World(), progress: bool = True
) -> None:
    """Compute and write every pending part (this process's share of them), then, in the first
    process once all are written, the FAISS index and the counts."""
    queue = read_queue(folder)
    ident = manifest["identity"]
    todo = world.shard(pending(folder, manifest["segments"], ident["part_size"]))
    bar = tqdm(total=sum(b - a for a, b in todo), unit="image", desc="index", disable=not progress or not world.main)
    with _older_objects_unscanned():
        for start, stop in todo:
            records, loaded = _load(queue[start:stop])
            arrays = compute(backbone, side, loaded, ident["dtype"]) if loaded else {}
            write_part(folder, start, stop, records, arrays)
            bar.update(stop - start)
    bar.close()
    barrier(world)
    if world.main:
        finish(folder, manifest)
    barrier(world)  # every process opens the finished index


@contextlib.contextmanager
def _older_objects_unscanned():
    """Objects alive before the build (the model's modules and tensors, the libraries) left
    out of the garbage collector's full scans while it runs (``gc.freeze``): each such scan
    walks all of them (0.2 s for the sandbox model's 420,000 objects), a few times in every
    10,000 images. Nothing is changed where the process has frozen objects of its own."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def locked(folder: Path, world: World):
    """The index folder's lock, held by the first process (the others write only their parts)."""
    return folder_lock(folder) if world.main else contextlib.nullcontext()


def run(
    folder: Path,
    paths: list[str] | None,
    ident: dict,
    resume: bool,
    backbone: CachedEncoder,
    side: StoredSide,
    world: World,
    progress: bool,
) -> None:
    """Start (or resume) a build and fill it; ``paths`` None: add nothing, finish what is pending."""
    with locked(folder, world):
        manifest = start(folder, paths, ident, resume) if world.main and paths is not None else None
        barrier(world)
        fill(folder, backbone, side, manifest or read_manifest(folder), world, progress)


def _load(paths: list[str]) -> tuple[list[dict], list[LoadedImage]]:
    """Each path's record, and the images that decoded; a file that does not is recorded as
    skipped with its reason, never dropped."""
    records, loaded = [], []
    for path in paths:
        try:
            image = load_image(path)
        except InputError as exc:
            records.append({"path": path, "skipped": str(exc)})
            continue
        record: dict[str, Any] = {
            "path": path,
            "file": str(Path(path).resolve()),
            "size": list(image.original_size),
            "decoded": list(image.image.size),
            "digest": image.digest,
            "file_digest": file_digest(path),
        }
        records.append(record)
        loaded.append(image)
    return records, loaded


def finish(folder: Path, manifest: dict) -> None:
    """The FAISS index over every part's global embeddings, and the manifest's counts."""
    import faiss

    parts = open_parts(folder)
    dim = manifest["identity"]["dim"]
    vectors = [np.asarray(p.array("global"), dtype=np.float32) for p in parts if p.indexed]
    matrix = np.ascontiguousarray(np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32))
    spec = manifest["identity"]["faiss"]
    index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        try:
            index.train(matrix)
        except RuntimeError as exc:
            raise InputError(
                f"FAISS index {spec!r} cannot be trained on {len(matrix)} images: {str(exc).splitlines()[0]}"
            ) from None
    index.add(matrix)
    temporary = folder / f".{FAISS_FILE}.partial"
    faiss.write_index(index, str(temporary))
    temporary.replace(folder / FAISS_FILE)
    skipped = skipped_records(parts)
    manifest["counts"] = {"queued": sum(p.stop - p.start for p in parts), "indexed": len(matrix), "skipped": len(skipped)}
    manifest["complete"] = True
    write_manifest(folder, _without_format(manifest))


def _without_format(manifest: dict) -> dict:
    return {k: v for k, v in manifest.items() if k not in ("format", "version")}


def check_folder(out: str | Path, resume: bool) -> Path:
    """``out`` as a build's folder: new, empty, or (with ``resume``) an index to continue;
    anything else is refused before a model loads, and nothing in it is touched."""
    folder = Path(out)
    if is_index(folder):
        if not resume:
            raise InputError(
                f"{folder} already holds an index; --resume continues its build, comclip index add adds images to it"
            )
        return folder
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file; give a folder for the index")
    if folder.is_dir() and any(
        p.name not in (LOCK_FILE, HOLDER_FILE, QUEUE) for p in folder.iterdir()
    ):  # a build killed at its start
        raise InputError(f"{folder} is not empty and holds no comclip index; choose a new or empty folder for --out")
    return folder


def start(folder: Path, paths: list[str], ident: dict, resume: bool) -> dict:
    """The manifest of a new build in ``folder``, or of the build being resumed (refusing
    another model, configuration or set of sources)."""
    if check_folder(folder, resume) and is_index(folder):
        manifest = read_manifest(folder)
        changed = differences(manifest["identity"], ident)
        if changed:
            raise InputError(f"{folder} holds an index built another way ({'; '.join(changed)}); choose another --out")
        if read_queue(folder)[: manifest["segments"][0][1]] != paths:
            raise InputError(f"{folder}: the sources differ from those of the build being resumed; give the same sources")
        clear_partials(folder)
        return manifest
    folder.mkdir(parents=True, exist_ok=True)
    write_queue(folder, paths)
    manifest = {"identity": ident, "segments": [[0, len(paths)]], "complete": False}
    write_manifest(folder, manifest)
    return manifest


def extend(folder: Path, manifest: dict, paths: list[str]) -> tuple[dict, int]:
    """Append the paths not yet queued (by resolved path) as a new segment; returns the
    manifest and how many were already there."""
    queue = read_queue(folder)
    known = {str(Path(p).resolve()) for p in queue}
    new = [p for p in paths if str(Path(p).resolve()) not in known]
    if new:
        write_queue(folder, queue + new)
        manifest["segments"].append([len(queue), len(queue) + len(new)])
        manifest["complete"] = False
        write_manifest(folder, _without_format(manifest))
    return manifest, len(paths) - len(new)
