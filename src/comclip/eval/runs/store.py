"""The result store of a run: its folder, ``run.json`` (what made the run), the record log
``per_example.jsonl`` with resume, and the shards of several processes merged into it.

``per_example.jsonl`` holds one line per (method, example): the score matrix (images x
texts) or the reason it failed. A run killed half way resumes from that file with
``resume=True`` and produces the same report as an uninterrupted one; a folder is resumed
only when its ``run.json`` proves the same run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from comclip.config import renamed
from comclip.errors import ComclipError, InputError
from comclip.eval.runs.options import EVAL
from comclip.eval.runs.process_group import World, barrier
from comclip.jsonfile import write_whole

PER_EXAMPLE = "per_example.jsonl"
#: One process's records when several score one run (see :mod:`comclip.eval.runs.process_group`).
SHARD_NAME, SHARD_GLOB = "per_example.rank{rank}.jsonl", "per_example.rank*.jsonl"
#: What made the run (see :func:`run_manifest`), written when it starts.
RUN_FILE = "run.json"
#: The report of a finished run (see :mod:`comclip.eval.reports.report`).
REPORT_JSON, REPORT_MD = "report.json", "report.md"
#: Held by the run that writes the folder, and the holder's process id beside it (see :func:`folder_lock`).
LOCK_FILE, HOLDER_FILE = ".comclip.lock", ".comclip.lock.pid"
#: A record's key: (method, example or query id).
Key = tuple[str, str]


class RunFinished(ComclipError):
    """``--resume`` on a run that is complete with the same configuration: nothing to do."""


def make_folder(out: Path) -> Path:
    """``out`` as a folder that exists, or the error saying why it cannot be one."""
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder {out} is a file; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
    return out


@contextmanager
def run_folder(out: Path) -> Iterator[Path]:
    """``out`` as a folder for the run inside the block. If the block made it and ends by an
    error while it is still empty (a model that does not load), it is removed again: a run
    that fails before writing anything leaves no folder behind."""
    made = [folder for folder in (out, *out.parents) if not folder.exists()]  # innermost first
    make_folder(out)
    try:
        yield out
    except BaseException:
        for folder in made:
            if not folder.is_dir() or any(folder.iterdir()):
                break
            folder.rmdir()
        raise


@contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """Hold the folder's exclusive lock (``.comclip.lock``, through ``filelock``, so on Windows
    too) for a run's life: a second run on the same folder is refused instead of mixing its
    records and reports with this one's. The promise that the refusal names the holder's
    process is kept by hand: ``filelock`` empties the lock file when another process tries it,
    so the id is written beside it (``.comclip.lock.pid``). Both files go when the run ends;
    the lock is released when the process ends, however it ends."""
    from filelock import FileLock, Timeout

    make_folder(out)
    lock = FileLock(out / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        holder = _read_holder(out)
        raise InputError(
            f"{out} is in use by another comclip run (process {holder}); wait for it to end or choose another --out"
        ) from None
    except OSError as exc:  # a read-only folder or file system: found before the model loads
        raise InputError(f"cannot write in the output folder {out}: {exc.strerror or exc}; choose another --out") from None
    try:
        (out / HOLDER_FILE).write_text(str(os.getpid()), encoding="utf-8")
        yield
    finally:
        (out / HOLDER_FILE).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # Windows keeps a locked file: filelock leaves it then
            (out / LOCK_FILE).unlink(missing_ok=True)  # still held: no other run took it meanwhile
        lock.release()


def _read_holder(out: Path) -> str:
    try:
        return (out / HOLDER_FILE).read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return "unknown"


def clear_run(out: Path) -> None:
    """Remove a run's own files from ``out`` (records, shards, ``run.json``, the reports), for
    commands that recompute their folder from scratch (the demo, the ablation's test run);
    nothing else in the folder is touched."""
    for path in [*record_files(out), out / RUN_FILE, out / REPORT_JSON, out / REPORT_MD]:
        path.unlink(missing_ok=True)


def check_folder(out: Path, resume: bool) -> None:
    """What can be known of ``out`` before a model loads: no other run holds it, and without
    ``resume`` it holds no results."""
    with folder_lock(out):
        pass
    if not resume:
        _refuse_results(out)


def _has_records(out: Path) -> bool:
    return any(p.exists() and p.stat().st_size > 0 for p in record_files(out))


def _refuse_results(out: Path) -> None:
    """An error, naming what it holds, if ``out`` holds a run (records, ``run.json`` or a report)."""
    held = PER_EXAMPLE if _has_records(out) else next((n for n in (RUN_FILE, REPORT_JSON) if (out / n).exists()), None)
    if held is not None:
        raise InputError(f"{out / held} already holds results: pass --resume to continue that run, or choose another --out")


def dataset_digest(dataset: Any) -> str:
    """A hash of what a dataset holds (see each dataset's ``content_rows``), whatever file
    format it came from."""
    digest = hashlib.sha256()
    for row in dataset.content_rows():
        digest.update(row)
    return digest.hexdigest()


def run_manifest(dataset: Any, backbone: Any, configs: dict, limit: int | None, ties: str = EVAL.ties) -> dict:
    """What makes a run what it is; ``--resume`` continues only a run whose manifest matches
    (``limit`` may grow or shrink: the scores of an example do not depend on it)."""
    return {
        "dataset": {
            "name": dataset.name,
            "split": dataset.split,
            "origin": getattr(dataset, "origin", ""),
            "content_sha256": dataset_digest(dataset),
        },
        "model": {
            "name": backbone.name,
            "fingerprint": backbone.fingerprint,
            "precision": backbone.precision,
            "pixels": backbone.pixels,
        },
        "methods": configs,
        "ties": ties,
        "limit": limit,
    }


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``path: old -> new`` for every leaf where two manifests differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            d for key in sorted(set(old) | set(new), key=str) for d in differences(old.get(key), new.get(key), f"{prefix}{key}.")
        ]
    if old == new:
        return []
    return [f"{prefix.rstrip('.')}: {json.dumps(old)[:80]} -> {json.dumps(new)[:80]}"]


def read_manifest(out: Path) -> dict:
    """The folder's ``run.json``, with configuration fields recorded under a former name
    (before a rename, see :func:`comclip.config.renamed`) under their current one: a rename
    does not make another run. Raises OSError or JSONDecodeError where it cannot be read."""
    stored = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
    if isinstance(stored, dict) and isinstance(stored.get("methods"), dict):
        former = renamed()
        stored["methods"] = {
            method: {former.get(k, k): v for k, v in config.items()} if isinstance(config, dict) else config
            for method, config in stored["methods"].items()
        }
    return stored


def _as_current(stored: Any, manifest: dict) -> Any:
    """A ``run.json`` written before a field existed, with the value the field then had: a run
    from before ties could be judged otherwise was judged strictly."""
    if isinstance(stored, dict) and "ties" in manifest and "ties" not in stored:
        return {**stored, "ties": "strict"}
    return stored


def _check_same_run(out: Path, manifest: dict) -> None:
    try:
        stored = read_manifest(out)
    except (OSError, ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InputError(
            f"cannot resume {out}: it has no readable {RUN_FILE}, so nothing proves its results come from "
            "the same run; choose another --out"
        ) from None
    found = differences({**_as_current(stored, manifest), "limit": None}, {**manifest, "limit": None})
    if found:
        raise InputError(
            f"cannot resume {out}: it holds another run ({'; '.join(found[:6])}"
            f"{'; ...' if len(found) > 6 else ''}); choose another --out"
        )


def finished(out_dir: str | Path, manifest: dict) -> bool:
    """Whether ``out_dir`` holds the report of a complete run with exactly this manifest: both
    report files exist, ``report.json`` parses, gives every method's metrics and counts as many
    records as the log holds.
    Anything less (a report cut short, one file missing) is rebuilt by ``--resume``."""
    out = Path(out_dir)
    try:
        stored = read_manifest(out)
        report = json.loads((out / REPORT_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return False
    if _as_current(stored, manifest) != manifest or not (out / REPORT_MD).is_file() or not isinstance(report, dict):
        return False
    if not has_metrics(report):
        return False  # a report that lost its runs or their metrics is rebuilt from the records
    records = read_all(out)
    return sum(run.get("n_examples", 0) for run in report["runs"]) == len(records) and not any(map(stale, records.values()))


def has_metrics(report: dict) -> bool:
    """Whether a report's runs are a list of runs that each give their metrics (one that lost
    them is not a finished run's)."""
    runs = report.get("runs")
    return isinstance(runs, list) and all(isinstance(run, dict) and isinstance(run.get("metrics"), dict) for run in runs)


def file_stamps(images: list) -> list[list]:
    """``[path, size, mtime_ns]`` of each image read from a file (drawn images have none): what
    a record keeps to notice, on resume, a file replaced since it was scored."""
    stamps = []
    for image in images:
        if isinstance(image, (str, Path)):
            try:
                stat = os.stat(image)
                stamps.append([str(image), stat.st_size, stat.st_mtime_ns])
            except OSError:
                stamps.append([str(image), None, None])
    return stamps


def stale(record: dict) -> bool:
    """Whether an image file of the record's example changed (size or modification time) since
    it was scored; records written before files were stamped are taken as they are."""
    stamps = record.get("files") or []
    return any(file_stamps([path]) != [[path, size, mtime]] for path, size, mtime in stamps)


def record_files(out: Path) -> list[Path]:
    """The folder's record files: ``per_example.jsonl``, then the shards of several processes."""
    return [out / PER_EXAMPLE, *sorted(out.glob(SHARD_GLOB))]


def read_records(path: Path) -> dict[Key, dict]:
    """The records of one file by key; a line cut by a kill is skipped (scored again). A line
    that parses but is not a record (no text ``method`` and ``id``) is not this program's: one
    error naming the file and the line, since nothing proves the rest is."""
    done = {}
    if path.exists():
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                continue
            if not (isinstance(record, dict) and isinstance(record.get("method"), str) and isinstance(record.get("id"), str)):
                raise InputError(f"{path} line {number}: not a record of comclip eval (no method and id); choose another --out")
            done[(record["method"], record["id"])] = record
    return done


def read_all(out: Path) -> dict[Key, dict]:
    """Every record of the folder's record files: shards of a run with any number of processes
    are merged by key."""
    done: dict[Key, dict] = {}
    for path in record_files(out):
        done.update(read_records(path))
    return done


def merge_shards(out: Path, order: list[Key], known: dict) -> dict[Key, dict]:
    """Every record of the folder, ``order`` first, then any other. ``known`` are this process's
    records (all of them when there are no shards, so nothing is read again); shards, written
    by other processes, are read, folded into ``per_example.jsonl`` in that order (one file
    written whole and renamed into place) and removed."""
    shards = sorted(out.glob(SHARD_GLOB))
    done = read_all(out) if shards else known
    ordered = set(order)
    keys = [k for k in order if k in done] + [k for k in done if k not in ordered]
    if shards:
        write_whole(out / PER_EXAMPLE, "".join(json.dumps(done[k]) + "\n" for k in keys))
        for shard in shards:
            shard.unlink()
    return {k: done[k] for k in keys}


def _ends_mid_line(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as handle:
        handle.seek(-1, 2)
        return handle.read(1) != b"\n"


class ResultLog:
    """``per_example.jsonl``: records appended and flushed one by one, read back on resume.

    An existing non-empty log is never appended to without ``resume`` (so two runs are never
    mixed by accident), nor with ``resume`` unless the folder's ``run.json`` shows the same
    run (dataset content, model weights, every method's configuration); a line cut short by
    a kill is ignored and its example scored again. With several processes (``world``), each
    appends to its own shard and reads what every file of the folder holds; the checks are
    made by all before any writes.
    """

    def __init__(self, out_dir: str | Path, resume: bool, manifest: dict | None = None, world: World = World()):
        out = make_folder(Path(out_dir))
        self.path = out / (PER_EXAMPLE if world.size == 1 else SHARD_NAME.format(rank=world.rank))
        if not resume:
            _refuse_results(out)
        if manifest is not None and (_has_records(out) or (out / RUN_FILE).exists()):
            _check_same_run(out, manifest)
        self.done = read_all(out) if resume else {}
        barrier(world)  # every process has checked the folder before any writes to it
        if manifest is not None and world.main:
            write_whole(out / RUN_FILE, json.dumps(manifest, indent=2))
        self._handle: TextIO | None = None

    def __enter__(self) -> ResultLog:
        handle = self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in __exit__)
        if _ends_mid_line(self.path):  # a line cut by a kill: the next record starts on a line of its own
            handle.write("\n")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            try:
                self._handle.close()
            except OSError:  # a full disk: the error that stopped the run has been raised already
                pass

    def has(self, method: str, example_id: str) -> bool:
        """Whether the example has a record whose image files are as they were when it was
        scored (a file replaced since is scored again, see :func:`stale`)."""
        record = self.done.get((method, example_id))
        return record is not None and not stale(record)

    def add(self, record: dict) -> None:
        assert self._handle is not None, "ResultLog.add outside its with-block"
        try:
            self._handle.write(json.dumps(record) + "\n")
            self._handle.flush()
        except OSError as exc:  # a full disk: what was written stays, a cut line is scored again on resume
            raise ComclipError(
                f"cannot write {self.path}: {exc.strerror or exc}; run again with --resume when there is room"
            ) from None
        self.done[(record["method"], record["id"])] = record
