"""Running a benchmark: every example scored or counted as failed, written as it goes,
resumable, and summarised into ``report.json`` and ``report.md``.

``per_example.jsonl`` holds one line per (method, example): the score matrix (images x
texts) or the reason it failed. A run killed half way resumes from that file with
``resume=True`` and produces the same report as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import sys
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..boxes import Box
from ..cache import image_digest
from .distributed import World, barrier
from ..errors import ComclipError, InputError
from ..images import LoadedImage
from ..loading import ImageLoader
from . import metrics
from .datasets import CAPTION_CHOICE, IMAGE_CHOICE, PAIR_MATCH, TWO_POSITIVES, WINOGROUND, Dataset, Example
from .datasets.base import word_order_class
from .tables import cell, row
from .diagnosis import diagnose, error_section, error_sources
from .word_order import summarise_word_order, word_order_section

PER_EXAMPLE = "per_example.jsonl"
#: One process's records when several score one run (see :mod:`comclip.eval.distributed`).
SHARD_NAME, SHARD_GLOB = "per_example.rank{rank}.jsonl", "per_example.rank*.jsonl"
#: What made the run (see :func:`run_manifest`), written when it starts.
RUN_FILE = "run.json"

Scorer = Callable[[list, list[str]], "np.ndarray"]


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for package in ("comclip", "torch", "transformers", "spacy", "numpy", "pillow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def correct(kind: str, scores: np.ndarray, text_scores: np.ndarray | None = None) -> dict[str, float]:
    """Per-example successes from a score matrix ``[images, texts]`` (strict: ties fail); each
    value is 0/1 (or the share of an example's comparisons that succeed, for ``pairwise``).
    ``text_scores`` (``[texts, texts]`` cosines) feed the text-only metric of SugarCrepe++."""
    if kind == CAPTION_CHOICE:
        return {"accuracy": bool(scores[0, 0] > scores[0, 1:].max())}
    if kind == IMAGE_CHOICE:
        return {"accuracy": bool(scores[0, 0] > scores[1:, 0].max())}
    if kind == WINOGROUND:
        result = metrics.winoground_correct(scores.T[None])  # [caption, image]
        out: dict = {name: bool(value[0]) for name, value in result.items()}
        # pairwise: each image prefers its own caption (the caption-choice accuracy, per image)
        out["pairwise"] = (float(scores[0, 0] > scores[0, 1]) + float(scores[1, 1] > scores[1, 0])) / 2
        return out
    if kind == PAIR_MATCH:  # each caption prefers its own image (MMVP-VLM, COLA)
        return {"pair": bool(scores[0, 0] > scores[1, 0] and scores[1, 1] > scores[0, 1])}
    if kind == TWO_POSITIVES:
        return metrics.two_positives_correct(scores[0], text_scores)
    raise ValueError(f"unknown example kind {kind!r}")


def _check_same_run(out: Path, manifest: dict) -> None:
    try:
        stored = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise InputError(f"cannot resume {out}: it has no readable {RUN_FILE}, so nothing proves its results come from "
                         "the same run; choose another --out") from None
    differences = _differences({**stored, "limit": None}, {**manifest, "limit": None})
    if differences:
        raise InputError(f"cannot resume {out}: it holds another run ({'; '.join(differences[:6])}"
                         f"{'; ...' if len(differences) > 6 else ''}); choose another --out")


def record_files(out: Path) -> list[Path]:
    """The folder's record files: ``per_example.jsonl``, then the shards of several processes."""
    return [out / PER_EXAMPLE, *sorted(out.glob(SHARD_GLOB))]


def _read_all_done(out: Path) -> dict[tuple[str, str], dict]:
    """Every record of the folder's record files, by (method, example id): shards of a run with
    any number of processes are merged by id."""
    done: dict[tuple[str, str], dict] = {}
    for path in record_files(out):
        done.update(_read_done(path))
    return done


def merge_shards(out: Path, order: list[tuple[str, str]], known: dict) -> dict[tuple[str, str], dict]:
    """Every record of the folder, ``order`` first, then any other. ``known`` are this process's
    records (all of them when there are no shards, so nothing is read again); shards, written
    by other processes, are read, folded into ``per_example.jsonl`` in that order (one file
    written whole and renamed into place) and removed."""
    shards = sorted(out.glob(SHARD_GLOB))
    done = _read_all_done(out) if shards else known
    ordered = set(order)
    keys = [k for k in order if k in done] + [k for k in done if k not in ordered]
    if shards:
        temporary = out / f"{PER_EXAMPLE}.merging"
        temporary.write_text("".join(json.dumps(done[k]) + "\n" for k in keys), encoding="utf-8")
        temporary.replace(out / PER_EXAMPLE)
        for shard in shards:
            shard.unlink()
    return {k: done[k] for k in keys}


def _ends_mid_line(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as handle:
        handle.seek(-1, 2)
        return handle.read(1) != b"\n"


def _read_done(path: Path) -> dict[tuple[str, str], dict]:
    done = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill: that example is scored again
            done[(record["method"], record["id"])] = record
    return done


class PairScorer:
    """A scorer of (images, texts) groups: ``scorer(images, texts)`` gives one ``[images,
    texts]`` matrix; :meth:`batch` scores many groups at once (batched encodings). The
    default :meth:`batch` just loops, so any callable can be wrapped."""

    def __init__(self, one, many=None, texts=None):
        self._one, self._many, self._texts = one, many, texts

    def __call__(self, images, texts):
        return self._one(images, texts)

    def batch(self, groups):
        return self._many(groups) if self._many is not None else [self._one(im, tx) for im, tx in groups]

    def text_similarity(self, texts):
        """``[texts, texts]`` cosines of the text side, for text-only metrics; None without one."""
        return None if self._texts is None else self._texts(texts)


def run(
    dataset: Dataset,
    scorers: dict[str, Scorer],
    out_dir: str | Path,
    *,
    resume: bool = False,
    limit: int | None = None,
    progress: bool | None = None,
    chunk: int = 32,
    workers: int = 0,
    pin_memory: bool = False,
    manifest: dict | None = None,
    world: World = World(),
) -> dict[tuple[str, str], dict]:
    """Score every example with every scorer, appending to ``per_example.jsonl``; returns the
    records in the dataset's order.

    Examples are decoded and scored ``chunk`` at a time, each chunk by every scorer in turn
    (see :func:`score_chunks`); with ``workers`` > 0, the next chunk's image files are decoded
    in that many worker processes meanwhile. ``progress``: a bar on a terminal by default.
    With several processes (``world``), each scores its share of the examples into its own
    shard; the main one waits for all, merges the shards and returns every record, the others
    return nothing.
    """
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")
    examples = dataset.examples[:limit] if limit else dataset.examples
    with ResultLog(out_dir, resume, manifest, world) as results:
        mine = world.shard(examples)
        todo = {method: {ex.id for ex in mine if not results.has(method, ex.id)} for method in scorers}
        pending = [ex for ex in mine if any(ex.id in ids for ids in todo.values())]
        loader = ImageLoader(workers, pin_memory=pin_memory)
        bar_off = quiet(progress) if world.main else True
        with tqdm(total=len(pending), desc="scoring", unit="ex", disable=bar_off, file=sys.stderr) as bar:
            for records in score_chunks(scorers, pending, chunk=chunk, loader=loader, todo=todo):
                for record in records:
                    results.add(record)
                bar.update(len({r["id"] for r in records}))
    barrier(world)  # every shard is complete
    if not world.main:
        return {}
    order = [(method, ex.id) for ex in examples for method in scorers]
    done = merge_shards(Path(out_dir), order, results.done)
    return {key: done[key] for key in order if key in done}


def quiet(progress: bool | None) -> bool | None:
    """tqdm's ``disable``: None (quiet where stderr is not a terminal) unless forced."""
    return None if progress is None else not progress


def score_examples(method: str, scorer: Scorer, examples: list[Example], *, chunk: int = 32,
                   loader: ImageLoader | None = None) -> Iterator[dict]:
    """One record per example, in order: its score matrix, or why it failed."""
    for records in score_chunks({method: scorer}, examples, chunk=chunk, loader=loader):
        yield from records


def score_chunks(scorers: dict[str, Scorer], examples: list[Example], *, chunk: int = 32,
                 loader: ImageLoader | None = None, todo: dict[str, set] | None = None) -> Iterator[list[dict]]:
    """The records of each chunk of ``examples``, every scorer's in turn (only the example ids
    in ``todo[method]`` where given): the score matrix, or why the example failed.

    Each chunk's images are decoded once for all scorers, by ``loader`` (by default in this
    process), one chunk ahead of the scoring. Examples go to a scorer's ``batch`` method a
    chunk at a time where it has one, so encodings are batched across examples; an error in
    a chunk is traced back to its example by scoring that chunk one example at a time.
    """
    chunks = [examples[start : start + chunk] for start in range(0, len(examples), chunk)]
    loader = loader or ImageLoader()
    decoded = loader.prefetch([[source for ex in part for source in ex.images] for part in chunks])
    for part, images in zip(chunks, decoded):
        per_example, start = {}, 0
        for ex in part:
            per_example[ex.id] = images[start : start + len(ex.images)]
            start += len(ex.images)
        records = []
        for method, scorer in scorers.items():
            wanted = [ex for ex in part if todo is None or ex.id in todo[method]]
            records += _score_chunk(method, scorer, wanted, per_example)
        yield records


def _score_chunk(method: str, scorer: Scorer, examples: list[Example], decoded: dict[str, list]) -> list[dict]:
    loaded, records = {}, {}
    for ex in examples:
        try:
            loaded[ex.id] = load_example_images(ex, decoded[ex.id])
        except ComclipError as exc:
            records[ex.id] = _record(method, ex, error=str(exc))
    ready = [ex for ex in examples if ex.id in loaded]
    batch = getattr(scorer, "batch", None) or (lambda groups: [scorer(images, texts) for images, texts in groups])
    for ex, scores in zip(ready, traced_batch(batch, [(loaded[ex.id], ex.texts) for ex in ready])):
        if isinstance(scores, ComclipError):
            records[ex.id] = _record(method, ex, str(scores))
        else:
            records[ex.id] = _checked(method, ex, scores, _text_scores(scorer, ex))
    return [records[ex.id] for ex in examples]


def traced_batch(batch: Callable[[list], list], items: list) -> list:
    """``batch(items)``; if that raises a :class:`ComclipError`, each item alone, so the error
    lands on the item that caused it (in its place in the list) and the others are scored."""
    try:
        return list(batch(items)) if items else []
    except ComclipError:
        results: list = []
        for item in items:
            try:
                results += batch([item])
            except ComclipError as exc:
                results.append(exc)
        return results


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


def dataset_digest(dataset) -> str:
    """A hash of what a dataset holds (ids, images, captions, subsets, tags, crops, given
    graphs; generated images by their pixels), whatever file format it came from."""
    digest = hashlib.sha256()
    if hasattr(dataset, "captions"):  # retrieval
        digest.update(json.dumps([list(map(str, dataset.images)), dataset.captions, dataset.caption_image]).encode())
    for ex in dataset.examples:
        images = [image_digest(im) if isinstance(im, Image.Image) else str(im) for im in ex.images]
        row = [ex.id, ex.kind, images, ex.texts, ex.subset, ex.tags, ex.crop, ex.given]
        digest.update(json.dumps(row, default=str, sort_keys=True).encode())
    return digest.hexdigest()


def run_manifest(dataset, backbone, configs: dict, limit: int | None) -> dict:
    """What makes a run what it is; ``--resume`` continues only a run whose manifest matches
    (``limit`` may grow or shrink: the scores of an example do not depend on it)."""
    return {
        "dataset": {"name": dataset.name, "split": dataset.split, "origin": getattr(dataset, "origin", ""),
                    "content_sha256": dataset_digest(dataset)},
        "model": {"name": backbone.name, "fingerprint": backbone.fingerprint, "precision": backbone.precision,
                  "pixels": backbone.pixels},
        "methods": configs,
        "limit": limit,
    }


def _differences(old, new, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in sorted(set(old) | set(new), key=str)
                for d in _differences(old.get(key), new.get(key), f"{prefix}{key}.")]
    if old == new:
        return []
    return [f"{prefix.rstrip('.')}: {json.dumps(old)[:80]} -> {json.dumps(new)[:80]}"]


def finished(out_dir, manifest: dict) -> bool:
    """Whether ``out_dir`` holds the report of a complete run with exactly this manifest."""
    out = Path(out_dir)
    try:
        stored = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return (out / "report.json").exists() and stored == manifest


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
        has_results = any(p.exists() and p.stat().st_size > 0 for p in record_files(out))
        if has_results and not resume:
            raise InputError(f"{out / PER_EXAMPLE} already holds results: pass --resume to continue that run, or choose another --out")
        if manifest is not None and has_results:
            _check_same_run(out, manifest)
        self.done = _read_all_done(out) if resume else {}
        barrier(world)  # every process has checked the folder before any writes to it
        if manifest is not None and world.main:
            (out / RUN_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        self._handle = None

    def __enter__(self) -> "ResultLog":
        self._handle = open(self.path, "a", encoding="utf-8")
        if _ends_mid_line(self.path):  # a line cut by a kill: the next record starts on a line of its own
            self._handle.write("\n")
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()

    def has(self, method: str, example_id: str) -> bool:
        return (method, example_id) in self.done

    def add(self, record: dict) -> None:
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()
        self.done[(record["method"], record["id"])] = record


def load_example_images(example: Example, decoded: list | None = None) -> list[LoadedImage]:
    """The example's images, cropped to its ``crop`` box (given in original pixels) if it has
    one. ``decoded`` holds them already decoded (or their errors), in order; by default they
    are decoded here. Raises the first image's error."""
    decoded = ImageLoader().load(example.images) if decoded is None else decoded
    for item in decoded:
        if isinstance(item, Exception):
            raise item
    if example.crop is None:
        return decoded
    cropped = []
    for im in decoded:
        box = Box(*example.crop).scaled(im.scale).clipped(im.image.width, im.image.height)
        cropped.append(LoadedImage(im.image.crop(box.pixels()), f"{im.source}#crop={list(example.crop)}", im.original_size))
    return cropped


def _record(method: str, example: Example, error: str | None = None) -> dict:
    record = {"id": example.id, "method": method, "kind": example.kind, "subset": example.subset, "tags": example.tags}
    words = word_order_class(example.kind, example.texts)
    if words is not None:
        record["word_order"] = words
    return record if error is None else {**record, "status": "failed", "error": error}


def _text_scores(scorer, example: Example):
    """The text-only cosines an example's kind needs (SugarCrepe++'s), where the scorer has them."""
    if example.kind != TWO_POSITIVES:
        return None
    similarity = getattr(scorer, "text_similarity", None)
    return None if similarity is None else similarity(example.texts)


def _checked(method: str, example: Example, scores, text_scores=None) -> dict:
    """The record of a score matrix (with the fallbacks its pairs took, where the scorer
    reports them), or a failure if it has the wrong shape or non-finite values."""
    scores, flags, results = (tuple(scores) + (None,))[:3] if isinstance(scores, tuple) else (scores, None, None)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(example.images), len(example.texts)):
        return _record(method, example, f"scorer returned shape {scores.shape} for {len(example.images)} images x {len(example.texts)} texts")
    if not np.isfinite(scores).all():
        return _record(method, example, "scorer returned a non-finite score")
    text_scores = None if text_scores is None else np.asarray(text_scores, dtype=np.float64)
    record = {**_record(method, example), "status": "ok", "scores": scores.tolist(),
              "correct": correct(example.kind, scores, text_scores)}
    if text_scores is not None:
        record["text_scores"] = text_scores.tolist()
    if results is not None:
        record["diagnosis"] = diagnose(example, results)
    return record if flags is None else {**record, "flags": flags}


#: The metrics of each example kind (retrieval's are those its scored queries carry).
KIND_METRICS = {CAPTION_CHOICE: ("accuracy",), IMAGE_CHOICE: ("accuracy",), WINOGROUND: ("text", "image", "group", "pairwise"),
                PAIR_MATCH: ("pair",), TWO_POSITIVES: ("itt", "tot")}
#: The flags a record may carry (see :mod:`comclip.pipeline`); reports count each per method,
#: these first and any other a pipeline raises after them.
FLAGS = ("no_entities", "not_grounded", "shared_box", "weights_clamped", "uniform_weights", "relation_unverified")


def flag_names(records: list[dict]) -> list[str]:
    """:data:`FLAGS`, then any other flag the records carry (so none goes uncounted)."""
    others = sorted({f for r in records for f in r.get("flags", {})} - set(FLAGS))
    return [*FLAGS, *others]


def outcomes(records: list[dict]) -> dict[str, list[float]]:
    """Per metric, the success of every example the metric applies to; a failed example
    counts as a failure (0) in each metric of its kind."""
    by_kind: dict[str, set] = {}
    for r in records:
        if r["status"] == "ok":
            by_kind.setdefault(r["kind"], set()).update(r["correct"])
    out: dict[str, list] = {}
    for r in records:
        names = by_kind.get(r["kind"]) or KIND_METRICS.get(r["kind"], ())
        for name in sorted(names):
            if r["status"] != "ok":
                out.setdefault(name, []).append(0.0)
            elif name in r["correct"]:
                out.setdefault(name, []).append(float(r["correct"][name]))
    return out


def summarise_run(records: list[dict], n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """Counts, metrics with intervals (failed examples count as wrong), per-subset / per-tag
    breakdowns, and how many examples took each fallback, of one method."""
    failed = [r for r in records if r["status"] != "ok"]

    def block(rows):
        return {name: metrics.summarise(values, n_bootstrap, seed) for name, values in outcomes(rows).items()}

    subsets = sorted({r["subset"] for r in records if r["subset"]})
    tags = sorted({t for r in records for t in r["tags"]})
    flagged = {flag: sum(1 for r in records if r.get("flags", {}).get(flag)) for flag in flag_names(records)}
    return {
        "n_examples": len(records),
        "n_scored": len(records) - len(failed),
        "n_failed": len(failed),
        "failures": [{"id": r["id"], "error": r["error"]} for r in failed],
        "flags": {flag: n for flag, n in flagged.items() if n},
        **error_sources(records, headline_metric(sorted({n for r in records if r["status"] == "ok" for n in r["correct"]})
                                                 or ["accuracy"])),
        "metrics": block(records),
        "subsets": {s: block([r for r in records if r["subset"] == s]) for s in subsets},
        "tags": {t: block([r for r in records if t in r["tags"]]) for t in tags},
        **summarise_word_order(records, block),
    }


def headline_metric(names) -> str:
    """The metric a dataset is judged by: group (Winoground kind), else accuracy, else R@1."""
    names = list(names)
    for preferred in ("group", "pair", "itt", "accuracy", "r@1_t2i"):
        if preferred in names:
            return preferred
    return names[0]


def compare_with(baseline: str, by_method: dict[str, list[dict]], n_bootstrap: int = 1000, seed: int = 0) -> list[dict]:
    """Every other method against ``baseline`` on the examples both scored, in the headline
    metric: the paired difference, its bootstrap interval and the exact McNemar p-value."""
    out = []
    base = {r["id"]: r for r in by_method.get(baseline, []) if r["status"] == "ok"}
    for method, records in by_method.items():
        scored = [r for r in records if r["status"] == "ok" and r["id"] in base]
        if method == baseline or not scored:
            continue
        metric = headline_metric(sorted({name for r in scored for name in r["correct"]}))
        pairs = [(base[r["id"]]["correct"][metric], r["correct"][metric]) for r in scored
                 if metric in r["correct"] and metric in base[r["id"]]["correct"]]
        result = metrics.paired_comparison([float(a) for a, _ in pairs], [float(b) for _, b in pairs], n_bootstrap, seed)
        out.append({"method": method, "baseline": baseline, "metric": metric, **result})
    return out


#: What makes two error messages "the same error": everything but quoted text, paths and numbers.
_ERROR_DETAILS = re.compile(r"'[^']*'|\"[^\"]*\"|\S*/\S*|\d+")


def unscored(report: dict) -> list[str]:
    """A line for each method that scored none of its examples, naming the most common error."""
    lines = []
    for run in report["runs"]:
        if run["n_examples"] and not run["n_scored"]:
            kinds = [(_ERROR_DETAILS.sub("...", f["error"]), f["error"]) for f in run["failures"]]
            kind, times = Counter(k for k, _ in kinds).most_common(1)[0]
            example = next(error for k, error in kinds if k == kind)
            lines.append(f"method {run['method']} scored none of its {run['n_examples']} examples; "
                         f"the most common error ({times} of them): {example}")
    return lines


def write_report(dataset: Dataset, model: str, configs: dict[str, dict], results: dict, out_dir: str | Path,
                 seed: int = 0, n_bootstrap: int = 1000, extra: dict | None = None) -> dict:
    """Write ``report.json`` and ``report.md`` for the results of :func:`run`; ``extra`` adds
    top-level sections (the sandbox's ``grounding`` accuracy). With a ``clip`` method, every
    other method is compared with it, paired, on the examples both scored."""
    out = Path(out_dir)
    by_method = {method: [results[key] for key in results if key[0] == method] for method in configs}
    runs = [{"method": method, "config": config, **summarise_run(by_method[method], n_bootstrap, seed)}
            for method, config in configs.items()]
    report = {
        "dataset": dataset.name,
        "split": dataset.split,
        "model": model,
        "source": dataset.source,
        "licence": dataset.licence,
        "seed": seed,
        "bootstrap_resamples": n_bootstrap,
        "intervals": "Wilson score intervals for proportions; percentile bootstrap for shares and paired differences",
        "renamed_ids": getattr(dataset, "renamed_ids", 0),
        "versions": package_versions(),
        "runs": runs,
        "comparisons": compare_with("clip", by_method, n_bootstrap, seed) if "clip" in by_method else [],
        **(extra or {}),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (out / "report.md").write_text(markdown_report(report), encoding="utf-8")
    return report


def markdown_report(report: dict) -> str:
    names = sorted({n for run in report["runs"] for n in run["metrics"]})
    lines = [f"# {report['dataset']} ({report['split']}), model `{report['model']}`", "",
             f"Every example counts: a failed one is wrong in every metric (failures beside each method). The first "
             f"table is over all examples, so it averages across subsets weighted by their sizes (per subset below). "
             f"95% intervals: {report.get('intervals', 'bootstrap')}; bootstrap seed {report['seed']}, "
             f"{report['bootstrap_resamples']} resamples. Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}.", ""]
    if report.get("renamed_ids"):
        lines += [f"{report['renamed_ids']} repeated example ids were renamed ID#2, ID#3, ... (none was dropped).", ""]
    lines += [row(["method", "scored", "failed", *names]), "|---" * (3 + len(names)) + "|"]
    for run in report["runs"]:
        cells = [cell(run["metrics"][n]) if n in run["metrics"] else "-" for n in names]
        lines.append(row([run["method"], run["n_scored"], run["n_failed"], *cells]))
    for section in ("subsets", "tags"):
        lines += _breakdown(report, section, names)
    lines += word_order_section(report, names) + _comparisons(report) + _flags(report) + error_section(report)
    lines += _grounding(report)
    lines += _failures(report)
    return "\n".join(lines) + "\n"


def _breakdown(report: dict, section: str, names: list[str]) -> list[str]:
    keys = sorted({k for run in report["runs"] for k in run[section]})
    if not keys:
        return []
    headers = [f"{run['method']} {n}" for run in report["runs"] for n in names]
    lines = ["", f"## Per {section[:-1]}", "", row([section[:-1], *headers]), "|---" * (1 + len(headers)) + "|"]
    for key in keys:
        cells = [cell(run[section][key][n]) if key in run[section] and n in run[section][key] else "-"
                 for run in report["runs"] for n in names]
        lines.append(row([key, *cells]))
    return lines


def _comparisons(report: dict) -> list[str]:
    if not report.get("comparisons"):
        return []
    lines = ["", "## Paired comparison with CLIP (examples both scored)", "",
             row(["method", "metric", "examples", "difference (points)", "95% interval", "better / worse", "McNemar p"]),
             "|---" * 7 + "|"]
    for c in report["comparisons"]:
        interval = f"[{c['ci95'][0]:.1f}, {c['ci95'][1]:.1f}]" if c["ci95"] else "-"
        lines.append(row([c["method"], c["metric"], c["n"], f"{c['difference']:+.2f}", interval,
                           f"{c['improved']} / {c['worsened']}", f"{c['p_mcnemar']:.3g}"]))
    return lines


def _flags(report: dict) -> list[str]:
    if not any(run.get("flags") for run in report["runs"]):
        return []
    names = flag_names(report["runs"])  # a run's flag counts have the records' shape: {"flags": {...}}
    lines = ["", "## Fallbacks (examples with at least one pair that took it)", "",
             row(["method", *names]), "|---" * (1 + len(names)) + "|"]
    for run in report["runs"]:
        lines.append(row([run["method"], *(run.get("flags", {}).get(flag, 0) for flag in names)]))
    return lines


def _grounding(report: dict) -> list[str]:
    if not report.get("grounding"):
        return []
    lines = ["", "## Grounding accuracy (top box IoU >= 0.5 with the true object)", "",
             row(["grounder", "objects", "accuracy"]), "|---|---|---|"]
    return lines + [row([name, metric["n"], cell(metric)]) for name, metric in report["grounding"].items()]


def _failures(report: dict) -> list[str]:
    failures = [(run["method"], f) for run in report["runs"] for f in run["failures"]]
    if not failures:
        return []
    lines = ["", "## Failed examples", ""] + [f"- {method} {f['id']}: {f['error']}" for method, f in failures[:50]]
    return lines + ([f"- ... and {len(failures) - 50} more (see report.json)"] if len(failures) > 50 else [])
