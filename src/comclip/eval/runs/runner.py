"""The evaluation engine: one loop that scores a task into a result store, as it goes.

A task (:class:`Task`) says what is left to score in a result log, yields the records of
what it scores, and gives the order of the report; :func:`run_task` opens the log (checking
the folder, see :class:`~comclip.eval.runs.store.ResultLog`), shows progress, waits for the other
processes and merges their shards. :class:`ExampleTask` scores a dataset's examples with
every method, ``chunk`` examples at a time; retrieval's task is in :mod:`comclip.eval.runs.recall`.
A task is chosen from the dataset (:data:`TASKS`, by its ``task`` attribute).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from comclip.boxes import Box
from comclip.errors import ComclipError, InputError
from comclip.eval.benchmarks.datasets import TWO_POSITIVES, Dataset, Example
from comclip.eval.benchmarks.kinds import correct, tie_decided, word_order_class
from comclip.eval.reports.diagnosis import diagnose
from comclip.eval.runs.options import EVAL
from comclip.eval.runs.process_group import World, barrier
from comclip.eval.runs.progress import ScoreCounts
from comclip.eval.runs.progress import progress as show_progress
from comclip.eval.runs.scorers import PairScorer, clip_scorer, comclip_scorer
from comclip.eval.runs.store import Key, ResultLog, file_stamps, merge_shards, stale
from comclip.imaging.files import LoadedImage
from comclip.imaging.prefetch import ImageLoader
from comclip.registry import Registry
from comclip.results import GroupScores

#: ``scorer(images, texts)`` -> a score matrix; a :class:`~comclip.eval.runs.scorers.PairScorer` also batches.
Scorer = Callable[..., Any]
__all__ = ["TASKS", "ExampleTask", "PairScorer", "Task", "run", "run_task", "score_chunks", "score_examples"]


class Task(Protocol):
    """What :func:`run_task` runs. ``unit`` names what the progress bar counts."""

    unit: str
    #: Fields the task adds to a method's recorded configuration (retrieval's ``rerank_top``).
    notes: dict[str, dict]

    def plan(self, results: ResultLog, world: World) -> int:
        """Prepare (after the folder is checked) and return how many units this process has left."""

    def records(self) -> Iterator[tuple[list[dict], int]]:
        """The records of what is scored, a batch at a time, with the units it completes."""

    def order(self) -> list[Key]:
        """Every record's key in report order."""


def run_task(
    task: Task,
    out_dir: str | Path,
    *,
    resume: bool = False,
    manifest: dict | None = None,
    progress: bool | None = None,
    world: World = World(),
) -> dict[Key, dict]:
    """Score what ``task`` has left into ``out_dir``'s log; returns every record in the task's
    order. With several processes (``world``), each scores its share into its own shard; the
    main one waits for all, merges the shards and returns every record, the others nothing."""
    with ResultLog(out_dir, resume, manifest, world) as results:
        total = task.plan(results, world)
        with show_progress(total, "scoring", task.unit, progress if world.main else False) as bar:
            counts = ScoreCounts()
            for records, units in task.records():
                for record in records:
                    results.add(record)
                counts.add(records, bar)
                bar.update(units)
    barrier(world)  # every shard is complete
    if not world.main:
        return {}
    return merge_shards(Path(out_dir), task.order(), results.done)


def check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")


class ExampleTask:
    """Every example of a dataset scored by every scorer (see :func:`score_chunks`); with
    ``workers`` > 0, the next chunk's image files are decoded in that many worker processes
    meanwhile."""

    unit = "example"
    notes: dict[str, dict] = {}

    def __init__(
        self,
        dataset: Dataset,
        scorers: Mapping[str, Scorer],
        *,
        limit: int | None = EVAL.limit,
        chunk: int = 32,
        workers: int = EVAL.workers,
        pin_memory: bool = False,
    ):
        check_limit(limit)
        self.examples = dataset.examples[:limit] if limit else dataset.examples
        self.scorers, self.chunk = scorers, chunk
        self.loader = ImageLoader(workers, pin_memory=pin_memory)
        self._pending: list[Example] = []
        self._todo: dict[str, set] = {}

    def plan(self, results: ResultLog, world: World) -> int:
        mine = world.shard(self.examples)
        changed = {key[1] for key, record in results.done.items() if stale(record)}
        if changed and world.main:
            print(
                f"resume: the image files of {len(changed)} examples changed since they were scored; they are scored again",
                file=sys.stderr,
            )
        self._todo = {method: {ex.id for ex in mine if not results.has(method, ex.id)} for method in self.scorers}
        self._pending = [ex for ex in mine if any(ex.id in ids for ids in self._todo.values())]
        return len(self._pending)

    def records(self) -> Iterator[tuple[list[dict], int]]:
        for records in score_chunks(self.scorers, self._pending, chunk=self.chunk, loader=self.loader, todo=self._todo):
            yield records, len({r["id"] for r in records})

    def order(self) -> list[Key]:
        return [(method, ex.id) for ex in self.examples for method in self.scorers]


def run(
    dataset: Dataset,
    scorers: Mapping[str, Scorer],
    out_dir: str | Path,
    *,
    resume: bool = False,
    limit: int | None = EVAL.limit,
    progress: bool | None = None,
    chunk: int = 32,
    workers: int = EVAL.workers,
    pin_memory: bool = False,
    manifest: dict | None = None,
    world: World = World(),
) -> dict[Key, dict]:
    """Score every example with every scorer into ``out_dir`` (:class:`ExampleTask` through
    :func:`run_task`); returns the records in the dataset's order."""
    task = ExampleTask(dataset, scorers, limit=limit, chunk=chunk, workers=workers, pin_memory=pin_memory)
    return run_task(task, out_dir, resume=resume, manifest=manifest, progress=progress, world=world)


def score_examples(
    method: str, scorer: Scorer, examples: Sequence[Example], *, chunk: int = 32, loader: ImageLoader | None = None
) -> Iterator[dict]:
    """One record per example, in order: its score matrix, or why it failed."""
    for records in score_chunks({method: scorer}, examples, chunk=chunk, loader=loader):
        yield from records


def score_chunks(
    scorers: Mapping[str, Scorer],
    examples: Sequence[Example],
    *,
    chunk: int = 32,
    loader: ImageLoader | None = None,
    todo: dict[str, set] | None = None,
) -> Iterator[list[dict]]:
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


def _score_chunk(method: str, scorer: Scorer, examples: Sequence[Example], decoded: dict[str, list]) -> list[dict]:
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


def load_example_images(example: Example, decoded: list | None = None) -> list[LoadedImage]:
    """The example's images, cropped to its ``crop`` box (given in original pixels) if it has
    one. ``decoded`` holds them already decoded (or their errors), in order; by default they
    are decoded here. Raises the first image's error."""
    decoded = ImageLoader().load(example.images) if decoded is None else decoded
    images = []
    for item in decoded:
        if isinstance(item, Exception):
            raise item
        images.append(item)
    if example.crop is None:
        return images
    cropped = []
    for im in images:
        box = Box(*example.crop).scaled(im.scale).clipped(im.image.width, im.image.height)
        cropped.append(LoadedImage(im.image.crop(box.pixels()), f"{im.source}#crop={list(example.crop)}", im.original_size))
    return cropped


def _record(method: str, example: Example, error: str | None = None) -> dict:
    record: dict[str, Any] = {
        "id": example.id,
        "method": method,
        "kind": example.kind,
        "subset": example.subset,
        "tags": example.tags,
    }
    stamps = file_stamps(list(example.images))
    if stamps:
        record["files"] = stamps
    words = word_order_class(example.kind, example.texts)
    if words is not None:
        record["word_order"] = words
    return record if error is None else {**record, "status": "failed", "error": error}


def _text_scores(scorer: Scorer, example: Example) -> Any:
    """The text-only cosines an example's kind needs (SugarCrepe++'s), where the scorer has them."""
    if example.kind != TWO_POSITIVES:
        return None
    similarity = getattr(scorer, "text_similarity", None)
    return None if similarity is None else similarity(example.texts)


def _checked(method: str, example: Example, scores: Any, text_scores: Any = None) -> dict:
    """The record of a score matrix (with the fallbacks its pairs took, where the scorer
    reports them), or a failure if it has the wrong shape or non-finite values."""
    scores, flags, results = (
        (scores.matrix, scores.flags, scores.results) if isinstance(scores, GroupScores) else (scores, None, None)
    )
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(example.images), len(example.texts)):
        return _record(
            method, example, f"scorer returned shape {scores.shape} for {len(example.images)} images x {len(example.texts)} texts"
        )
    if not np.isfinite(scores).all():
        return _record(method, example, "scorer returned a non-finite score")
    text_scores = None if text_scores is None else np.asarray(text_scores, dtype=np.float64)
    strict = correct(example.kind, scores, text_scores)
    record = {**_record(method, example), "status": "ok", "scores": scores.tolist(), "correct": strict}
    ties = tie_decided(example.kind, scores, strict, text_scores)
    if ties:
        record["tie_correct"] = ties
    if text_scores is not None:
        record["text_scores"] = text_scores.tolist()
    if results is not None:
        record["diagnosis"] = diagnose(example, results)
    return record if flags is None else {**record, "flags": flags}


#: Each dataset's task, by the dataset's ``task`` attribute: ``factory(dataset, backbone, pipelines, *, limit,
#: workers, rerank_top) -> Task``, where ``pipelines`` maps each method to its ComCLIP (None: plain CLIP). A
#: factory checks that the methods suit the task.
TASKS: Registry[Callable[..., Task]] = Registry("evaluation task")
#: Retrieval ranks a gallery (:mod:`comclip.eval.runs.recall`), imported when a retrieval dataset is run.
TASKS.add_lazy("retrieval", "comclip.eval.runs.recall:retrieval_task")


@TASKS.register("examples")
def example_task(
    dataset: Dataset,
    backbone: Any,
    pipelines: dict,
    *,
    limit: int | None = EVAL.limit,
    workers: int = EVAL.workers,
    rerank_top: int = EVAL.rerank_top,
) -> ExampleTask:
    """Every method scores every example: CLIP's cosines, or the method's ComCLIP scores."""
    scorers = {name: clip_scorer(backbone) if p is None else comclip_scorer(p) for name, p in pipelines.items()}
    return ExampleTask(dataset, scorers, limit=limit, workers=workers, pin_memory=backbone.device.type == "cuda")
