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

import json
import re
from pathlib import Path
from typing import Mapping

from ..backbones import Backbone
from ..config import PipelineConfig
from ..errors import InputError
from ..grounding import Grounder, create_grounder
from ..parsing.given import GivenParser
from ..pipeline import ComCLIP
from . import runner
from .datasets import GENERATED, Dataset, load_dataset
from .datasets.retrieval import RetrievalDataset
from .distributed import World
from .grounding_accuracy import grounding_report, has_boxes, oracle_grounder
from .retrieval import run_retrieval
from .scorers import clip_scorer, comclip_scorer

#: Plain CLIP, as a method.
CLIP = None
Methods = Mapping[str, "PipelineConfig | None"]
#: Where a run goes when no folder is named, as clip_benchmark names its outputs.
OUT_TEMPLATE = "results/{dataset}_{split}_{model}"


def default_out_dir(dataset, model: str) -> Path:
    """``OUT_TEMPLATE`` filled in; the model name is cut to a safe file name."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-")[-60:]
    return Path(OUT_TEMPLATE.format(dataset=dataset.name, split=dataset.split, model=slug))


def open_dataset(name: str, data=None, image_dir=None, *, split: str | None = None, task: str | None = None,
                 seed: int = 0, n: int | None = None) -> Dataset | RetrievalDataset:
    """A dataset by name: read from ``data`` (and ``image_dir``), or generated from ``task``,
    ``seed`` and ``n`` for generated ones (the sandbox)."""
    if name in GENERATED:
        return load_dataset(name, task=task, seed=seed, n=n)
    if data is None:
        raise InputError(f"comclip eval {name} needs --data PATH (the dataset file or folder)")
    return load_dataset(name, data, image_dir, split=split)


class GrounderPool:
    """One grounder per distinct grounder configuration, shared by every pipeline that uses it,
    so each image's candidate regions are encoded once for all of them."""

    def __init__(self, backbone: Backbone, dataset=None):
        self.backbone, self.dataset = backbone, dataset
        self._grounders: dict[str, Grounder] = {}

    def get(self, config: PipelineConfig) -> Grounder:
        key = json.dumps([config.grounder, config.grounder_options()], sort_keys=True)
        if key not in self._grounders:
            if config.grounder == "oracle":
                if not has_boxes(self.dataset):
                    raise InputError("--grounder oracle needs data with known boxes (comclip eval sandbox)")
                self._grounders[key] = oracle_grounder(self.dataset)
            else:
                self._grounders[key] = create_grounder(config.grounder, self.backbone, **config.grounder_options())
        return self._grounders[key]


def build_pipelines(backbone: Backbone, methods: Methods, dataset=None, pool: GrounderPool | None = None) -> dict:
    """``{method: ComCLIP, or None for plain CLIP}``; ``parser="given"`` takes the dataset's graphs."""
    pool = pool or GrounderPool(backbone, dataset)
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
        pipelines[name] = ComCLIP(backbone, config, parser=parser, grounder=pool.get(config))
    return pipelines


def method_configs(backbone: Backbone, pipelines: Mapping[str, ComCLIP | None]) -> dict[str, dict]:
    """What each method's report records: the model for CLIP, the full description for ComCLIP."""
    return {name: {"model": backbone.name} if p is None else p.describe() for name, p in pipelines.items()}


def evaluate(dataset, backbone: Backbone, methods: Methods, out_dir, *, resume: bool = False, force: bool = False,
             limit: int | None = None, workers: int = 0, rerank_top: int = 10, seed: int = 0, n_bootstrap: int = 1000,
             progress: bool | None = None, extra: dict | None = None, notes: Mapping[str, dict] | None = None,
             world: World = World()) -> dict | None:
    """Score ``dataset`` with every method into ``out_dir`` and write the report; returns it.

    With several processes (``world``, see :mod:`comclip.eval.distributed`), each scores its
    share and the main one writes the report (with ``world_size``) and returns it; the others
    return None.

    The folder's ``run.json`` records what makes the run (see
    :func:`~comclip.eval.runner.run_manifest`): ``resume`` continues only that same run, and
    raises :class:`~comclip.eval.runner.RunFinished` where it is complete (unless ``force``,
    which rebuilds the report). Data with true boxes also gets the grounding accuracy of each
    method's grounder and of the oracle, unless ``extra`` already gives a ``grounding``
    section. ``extra`` adds top-level report sections, ``notes`` fields to a method's config.
    """
    out = Path(out_dir)
    retrieval = isinstance(dataset, RetrievalDataset)
    if retrieval:
        _check_retrieval_methods(methods, rerank_top)
    pipelines = build_pipelines(backbone, methods, dataset)
    notes = dict(notes or {})
    reranker = next((name for name, p in pipelines.items() if p is not None), None)
    if retrieval and reranker is not None:
        notes[reranker] = {**notes.get(reranker, {}), "rerank_top": rerank_top}
    configs = {name: {**c, **notes.get(name, {})} for name, c in method_configs(backbone, pipelines).items()}
    manifest = runner.run_manifest(dataset, backbone, configs, limit)
    if resume and not force and runner.finished(out, manifest):
        raise runner.RunFinished(f"{out / 'report.json'} exists: run already finished (use --force to rebuild the report)")
    options = dict(resume=resume, limit=limit, workers=workers, progress=progress, manifest=manifest)
    if retrieval:
        results = run_retrieval(dataset, backbone, out, reranker=pipelines.get(reranker) if reranker else None,
                                reranker_name=reranker or "comclip", rerank_top=rerank_top, world=world, **options)
        results = {key: value for key, value in results.items() if key[0] in methods}
    else:
        scorers = {name: clip_scorer(backbone) if p is None else comclip_scorer(p) for name, p in pipelines.items()}
        results = runner.run(dataset, scorers, out, pin_memory=backbone.device.type == "cuda", world=world, **options)
    if not world.main:
        return None
    extra = {"backbone": backbone.describe(), "world_size": world.size, **(extra or {})}
    if has_boxes(dataset) and "grounding" not in extra:
        extra["grounding"] = grounding_report(_report_grounders(pipelines, dataset), dataset,
                                              seed=seed, n_bootstrap=n_bootstrap)
    return runner.write_report(dataset, backbone.name, configs, results, out, seed=seed, n_bootstrap=n_bootstrap, extra=extra)


def _check_retrieval_methods(methods: Methods, rerank_top: int) -> None:
    """Retrieval ranks with CLIP and re-ranks CLIP's top ``rerank_top`` with one composed method."""
    composed = [name for name, config in methods.items() if config is not None]
    plain = [name for name, config in methods.items() if config is None]
    if len(composed) > 1 or plain not in ([], ["clip"]):
        raise InputError("retrieval evaluates clip (CLIP ranking) and one composed method (re-ranking), nothing else")
    if rerank_top < 1:
        raise InputError(f"--rerank-top must be at least 1, got {rerank_top}")


def _report_grounders(pipelines: Mapping[str, ComCLIP | None], dataset) -> dict[str, tuple[Grounder, bool]]:
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
