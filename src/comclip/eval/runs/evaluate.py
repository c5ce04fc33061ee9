"""Evaluating a dataset with a set of methods: the one entry point behind ``comclip eval``,
``comclip demo`` and ``comclip ablate``.

A method is a name and a :class:`~comclip.config.PipelineConfig` (ComCLIP), or None (plain
CLIP). :func:`evaluate` wires everything a dataset needs: the scene graphs it supplies
(``parser="given"``), its true boxes (``grounder="oracle"``, and the grounding accuracy
report), retrieval's re-ranking, one grounder per distinct grounder configuration shared
by every method that uses it; then it scores, resumably, and writes ``report.json`` and
``report.md``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from comclip.backbones import Backbone
from comclip.backbones.base import truncation_said
from comclip.config import PipelineConfig
from comclip.errors import InputError
from comclip.eval.benchmarks.datasets import Dataset, is_generated, load_dataset
from comclip.eval.benchmarks.datasets.retrieval import RetrievalDataset
from comclip.eval.reports.grounding_accuracy import grounding_report, has_boxes, known_boxes, oracle_grounder
from comclip.eval.reports.report import NothingScored, unscored, write_report
from comclip.eval.runs import store
from comclip.eval.runs.options import EVAL, EvalOptions
from comclip.eval.runs.process_group import World
from comclip.eval.runs.runner import TASKS, run_task
from comclip.eval.runs.truncation import truncated_captions, warn_once
from comclip.grounding import Grounder
from comclip.grounding.pool import GrounderPool
from comclip.parsing.given import GivenParser
from comclip.pipeline import ComCLIP

#: Plain CLIP, as a method.
CLIP = None
Methods = Mapping[str, "PipelineConfig | None"]
#: Where a run goes when no folder is named, as clip_benchmark names its outputs.
OUT_TEMPLATE = "results/{dataset}_{split}_{model}"


def default_out_dir(dataset: Dataset | RetrievalDataset, model: str) -> Path:
    """``OUT_TEMPLATE`` filled in; the model name is cut to a safe file name."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-")[-60:]
    return Path(OUT_TEMPLATE.format(dataset=dataset.name, split=dataset.split, model=slug))


def open_dataset(
    name: str,
    data: str | Path | None = None,
    image_dir: str | Path | None = None,
    *,
    split: str | None = None,
    task: str | None = None,
    seed: int = 0,
    n: int | None = None,
) -> Dataset | RetrievalDataset:
    """A dataset by name: read from ``data`` (and ``image_dir``), or generated from ``task``,
    ``seed`` and ``n`` for generated ones (the sandbox)."""
    if is_generated(name):
        return load_dataset(name, task=task, seed=seed, n=n)
    if data is None:
        raise InputError(f"comclip eval {name} needs --data PATH (the dataset file or folder)")
    return load_dataset(name, data, image_dir, split=split)


def grounder_pool(backbone: Backbone, dataset: Dataset | RetrievalDataset | None = None) -> GrounderPool:
    """A pool of grounders for ``dataset``'s pipelines: with its true boxes, where it has them, for the oracle."""
    return GrounderPool(backbone, known_boxes(dataset) if has_boxes(dataset) else None)


def build_pipelines(
    backbone: Backbone, methods: Methods, dataset: Dataset | RetrievalDataset | None = None, pool: GrounderPool | None = None
) -> dict[str, ComCLIP | None]:
    """``{method: ComCLIP, or None for plain CLIP}``; ``parser="given"`` takes the dataset's graphs."""
    pool = pool or grounder_pool(backbone, dataset)
    given = None
    pipelines: dict[str, ComCLIP | None] = {}
    for name, config in methods.items():
        if config is None:
            pipelines[name] = None
            continue
        parser = None
        if config.parser == "given":
            given = given or GivenParser({t: g for ex in getattr(dataset, "examples", ()) for t, g in ex.given.items()})
            parser = given
        pipelines[name] = ComCLIP(backbone, config, parser=parser, grounder=pool.for_config(config))
    return pipelines


def method_configs(backbone: Backbone, pipelines: Mapping[str, ComCLIP | None]) -> dict[str, dict]:
    """What each method's report records: the model for CLIP, the full description for ComCLIP."""
    return {name: {"model": backbone.name} if p is None else p.describe() for name, p in pipelines.items()}


def evaluate(
    dataset: Dataset | RetrievalDataset,
    backbone: Backbone,
    methods: Methods,
    out_dir: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    limit: int | None = EVAL.limit,
    workers: int = EVAL.workers,
    rerank_top: int = EVAL.rerank_top,
    bootstrap_seed: int = EVAL.bootstrap_seed,
    n_bootstrap: int = EVAL.n_bootstrap,
    ties: str = EVAL.ties,
    progress: bool | None = None,
    extra: dict | None = None,
    notes: Mapping[str, dict] | None = None,
    world: World = World(),
    seed: int | None = None,
) -> dict | None:
    """Score ``dataset`` with every method into ``out_dir`` and write the report; returns it.

    The dataset's ``task`` picks how it is scored (:data:`~comclip.eval.runs.runner.TASKS`: example by
    example, or retrieval's ranking and re-ranking). With several processes (``world``, see
    :mod:`comclip.eval.runs.process_group`), each scores its share and the main one writes the
    report (with ``world_size``) and returns it; the others return None.

    The folder's ``run.json`` records what makes the run (see
    :func:`~comclip.eval.runs.store.run_manifest`): ``resume`` continues only that same run, and
    raises :class:`~comclip.eval.runs.store.RunFinished` where it is complete (unless ``force``,
    which rebuilds the report). A method that scored none of its examples raises
    :class:`~comclip.eval.reports.report.NothingScored` once the report is written. Data with true
    boxes also gets each grounder's accuracy (unless ``extra`` gives a ``grounding`` section).
    ``extra`` adds top-level report sections, ``notes`` fields to a method's config. The other
    keywords are :class:`~comclip.eval.runs.options.EvalOptions`' fields, checked as it checks
    them (``seed``: the former ``bootstrap_seed``)."""
    bootstrap_seed = _former_seed(seed, bootstrap_seed)
    EvalOptions(limit, workers, rerank_top, n_bootstrap, bootstrap_seed, ties)  # every option checked before any work
    out = Path(out_dir)
    scored = dataset.first(limit) if limit else dataset  # a generated dataset makes no more than these
    pipelines = build_pipelines(backbone, methods, scored)
    task = TASKS[dataset.task](scored, backbone, pipelines, limit=limit, workers=workers, rerank_top=rerank_top)
    configs = _noted_configs(backbone, pipelines, notes or {}, task.notes)
    manifest = store.run_manifest(dataset, backbone, configs, limit, ties)
    with store.folder_lock(out) if world.main else nullcontext():  # one run per folder, held to the report
        if resume and not force and store.finished(out, manifest):
            raise store.RunFinished(f"{out / 'report.json'} exists: run already finished (use --force to rebuild the report)")
        results, cut = _score(task, scored, backbone, out, resume, manifest, progress, world)
        if not world.main:
            return None
        results = {key: value for key, value in results.items() if key[0] in pipelines}
        sections = {"dataset_content_sha256": manifest["dataset"]["content_sha256"], "truncated_captions": cut, **(extra or {})}
        extra = _report_extra(scored, backbone, pipelines, sections, world, seed=bootstrap_seed, n_bootstrap=n_bootstrap)
        report = write_report(
            dataset, backbone.name, configs, results, out, seed=bootstrap_seed, n_bootstrap=n_bootstrap, extra=extra, ties=ties
        )
    if unscored(report):  # written, and still a failure: never a silent run of nothing
        raise NothingScored(unscored(report), report)
    return report


def _noted_configs(backbone: Backbone, pipelines: Mapping[str, ComCLIP | None], notes: Mapping, task_notes: Mapping) -> dict:
    """Each method's configuration, with the caller's and the task's notes added."""
    return {
        name: {**config, **notes.get(name, {}), **task_notes.get(name, {})}
        for name, config in method_configs(backbone, pipelines).items()
    }


def _former_seed(seed: int | None, bootstrap_seed: int) -> int:
    """``evaluate(seed=...)``, the former name of ``bootstrap_seed``, with a DeprecationWarning."""
    if seed is None:
        return bootstrap_seed
    warnings.warn("evaluate(seed=...) is now bootstrap_seed=...", DeprecationWarning, stacklevel=3)
    return seed


def _score(
    task: Any, scored: Any, backbone: Backbone, out: Path, resume: bool, manifest: dict, progress: bool | None, world: World
) -> tuple[dict, dict]:
    """The task's records, with over-long captions said once for the run (not per encoding)."""
    cut = truncated_captions(scored, backbone)
    if world.main:
        warn_once(cut, backbone.name)
    with truncation_said():
        return run_task(task, out, resume=resume, manifest=manifest, progress=progress, world=world), cut


def _report_extra(
    dataset: Dataset | RetrievalDataset,
    backbone: Backbone,
    pipelines: Mapping[str, ComCLIP | None],
    extra: dict | None,
    world: World,
    *,
    seed: int,
    n_bootstrap: int,
) -> dict:
    """The report's sections beyond the runs: the backbone, the world size, ``extra``, and on
    data with true boxes the grounding accuracy (unless ``extra`` gives one)."""
    extra = {"backbone": backbone.describe(), "world_size": world.size, **(extra or {})}
    if "grounding" not in extra and has_boxes(dataset):
        extra["grounding"] = grounding_report(_report_grounders(pipelines, dataset), dataset, seed=seed, n_bootstrap=n_bootstrap)
    return extra


def _report_grounders(pipelines: Mapping[str, ComCLIP | None], dataset: Dataset) -> dict[str, tuple[Grounder, bool]]:
    """The distinct (grounder, assignment) pairs of the methods, by name (the grounder's, with
    ``joint`` or the method where needed to tell them apart), then the oracle."""
    grounders: dict[str, tuple[Grounder, bool]] = {}
    for method, pipeline in pipelines.items():
        if pipeline is None:
            continue
        entry = (pipeline.grounder, pipeline.config.assignment == "joint")
        if entry in grounders.values():
            continue
        name = pipeline.grounder.name + (" joint" if entry[1] else "")
        grounders[name if name not in grounders else f"{name} ({method})"] = entry
    if not any(g.name == "oracle" for g, _ in grounders.values()):  # a method may ground with the oracle already
        grounders["oracle"] = (oracle_grounder(dataset), False)
    return grounders
