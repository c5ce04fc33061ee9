"""Ablations: a grid of pipeline configurations, chosen on one split and proven on another.

Every configuration is scored on the dev split (a dev seed of the sandbox, or a dev file);
the best one by :func:`criterion` is then evaluated on the test split next to plain CLIP
and the faithful ComCLIP of the paper, with bootstrap intervals. Nothing about the test
split is seen before the choice is made, so its numbers are not tuned on themselves.
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import PipelineConfig
from .datasets import Dataset
from .evaluate import build_pipelines, evaluate, grounder_pool
from .grounding_accuracy import grounding_report, has_boxes, oracle_grounder
from .kinds import headline_metric
from .report import summarise_run
from .runner import score_examples
from .scorers import clip_scorer, comclip_scorer
from .store import clear_run

log = logging.getLogger("comclip.ablate")
CRITERION = (
    "macro mean over subsets of the headline metric (group for Winoground-kind data, else accuracy); ties: pairwise accuracy"
)


#: Grounding choices: name -> (grounder options, what an entity is grounded by, union margin).
GROUNDINGS: dict[str, tuple[dict[str, Any], str, float | None]] = {
    "default": ({}, "head", None),  # the clip grounder with the model's own defaults (comclip.json)
    "grid-crop": ({"proposals": "grid", "region": "crop"}, "head", None),
    "grid-crop-union": ({"proposals": "grid", "region": "crop"}, "head", 0.02),
    "grid-crop-phrase": ({"proposals": "grid", "region": "crop"}, "phrase", None),
    "segments+grid-crop": ({"proposals": "grid+segments", "region": "crop"}, "head", None),
    "segments-mask": ({"proposals": "segments", "region": "mask"}, "head", None),
    "segments+grid-patches": ({"proposals": "grid+segments", "region": "patches"}, "head", None),
    # ComCLIP+'s grounding, one addition at a time (#24): joint assignment, then multiscale
    # views, then the background fill of the candidates' views.
    "default-joint": ({"assignment": "joint"}, "head", None),
    "multiscale-joint": ({"region": "multiscale", "assignment": "joint"}, "head", None),
    "multiscale-background-joint": ({"region": "multiscale", "grounder_fill": "background", "assignment": "joint"}, "head", None),
    "multiscale-background-joint-attributes": (
        {"region": "multiscale", "grounder_fill": "background", "assignment": "joint", "attribute_weight": 0.1},
        "head",
        None,
    ),
}
SCORES = (("comclip", 0.0), ("evidence", 0.5), ("evidence", 1.0), ("evidence", 2.0), ("evidence-min", 1.0))
GRIDS: dict[str, dict[str, Any]] = {
    "full": {
        "score": SCORES,
        "weighting": ("sum", "softmax"),
        "fill": ("black", "mean"),
        "grounding": (
            "grid-crop",
            "grid-crop-union",
            "grid-crop-phrase",
            "segments+grid-crop",
            "segments-mask",
            "segments+grid-patches",
        ),
        "relations": ("off", "geometry"),
    },
    "small": {
        "score": (("comclip", 0.0), ("evidence", 1.0)),
        "weighting": ("sum",),
        "fill": ("black", "mean"),
        "grounding": ("default",),
        "relations": ("off", "geometry"),
    },
    # The factors that mattered in the full grid on the sandbox (score mode, fill, segment
    # grounding), crossed with the geometric relation check: 24 configurations.
    "spatial": {
        "score": (("comclip", 0.0), ("evidence", 1.0), ("evidence", 2.0)),
        "weighting": ("sum",),
        "fill": ("black", "mean"),
        "grounding": ("default", "segments-mask"),
        "relations": ("off", "geometry"),
    },
    # ComCLIP+'s grounding additions (for models whose grounder masks candidates, as the sandbox's),
    # each on top of the last, under the evidence scores with the geometric check: 10 configurations.
    "plus": {
        "score": (("evidence", 1.0), ("evidence", 2.0)),
        "weighting": ("sum",),
        "fill": ("mean",),
        "grounding": (
            "default",
            "default-joint",
            "multiscale-joint",
            "multiscale-background-joint",
            "multiscale-background-joint-attributes",
        ),
        "relations": ("geometry",),
    },
}


@dataclass(frozen=True)
class Config:
    """One point of the grid."""

    score_mode: str = "comclip"
    evidence_weight: float = 0.0
    weighting: str = "sum"
    fill: str = "black"
    grounding: str = "default"
    relations: str = "off"

    @property
    def name(self) -> str:
        score = self.score_mode if self.score_mode == "comclip" else f"{self.score_mode}({self.evidence_weight:g})"
        return f"{score} {self.weighting} {self.fill} {self.grounding}" + (
            "" if self.relations == "off" else f" +{self.relations}"
        )

    def pipeline_options(self) -> dict:
        grounding = GROUNDINGS[self.grounding]
        options: dict[str, Any] = {
            "score_mode": self.score_mode,
            "weighting": self.weighting,
            "subimage_fill": self.fill,
            "ground_by": grounding[1],
            "union_margin": grounding[2],
            "relation_check": self.relations,
        }
        if self.score_mode != "comclip":
            options["evidence_weight"] = self.evidence_weight
        return options

    def pipeline_config(self, model_defaults: dict) -> PipelineConfig:
        """This point of the grid over the model's defaults (the "default" grounding keeps the
        model's own grounder options)."""
        return PipelineConfig.layered(model_defaults, **self.pipeline_options(), **GROUNDINGS[self.grounding][0])


def grid(name: str = "full") -> list[Config]:
    spec = GRIDS[name]
    factors = itertools.product(spec["score"], spec["weighting"], spec["fill"], spec["grounding"], spec["relations"])
    return [
        Config(score, weight, weighting, fill, grounding, relations)
        for (score, weight), weighting, fill, grounding, relations in factors
    ]


def usable_groundings(backbone) -> list[str]:
    """The grounding choices this backbone supports (patch tokens need a CLIP ViT)."""
    return [
        name for name, (options, _, _) in GROUNDINGS.items() if options.get("region") != "patches" or backbone.supports_patches
    ]


def criterion(summary: dict) -> tuple[float, float]:
    """(macro mean of the headline metric over subsets, macro mean of the second metric): higher is better.

    Macro over subsets so that every task or phenomenon counts equally whatever its size;
    the second value (pairwise accuracy, else the headline again) breaks ties.
    """
    if not summary["metrics"]:
        return (float("-inf"), float("-inf"))
    main = headline_metric(summary["metrics"])
    second = "pairwise" if "pairwise" in summary["metrics"] else main
    blocks = list(summary["subsets"].values()) or [summary["metrics"]]
    return (
        float(np.mean([b[main]["value"] for b in blocks if main in b])),
        float(np.mean([b[second]["value"] for b in blocks if second in b])),
    )


@dataclass
class DevResult:
    config: Config
    summary: dict
    score: tuple[float, float] = field(default=(0.0, 0.0))

    def to_dict(self) -> dict:
        return {
            "config": self.config.name,
            "options": self.config.pipeline_options(),
            "grounding": self.config.grounding,
            "criterion": list(self.score),
            "n_scored": self.summary["n_scored"],
            "n_failed": self.summary["n_failed"],
            "metrics": self.summary["metrics"],
            "subsets": self.summary["subsets"],
        }


def evaluate_in_memory(dataset: Dataset, method: str, scorer, n_bootstrap: int = 200, seed: int = 0, chunk: int = 64) -> dict:
    """Score every example in memory, batched, and summarise (failures counted, as in the runner)."""
    examples = dataset.examples
    records = list(score_examples(method, scorer, examples, chunk=chunk))
    return summarise_run(records, n_bootstrap, seed)


def run_ablation(dev: Dataset, test: Dataset, backbone, out_dir, grid_name: str = "full", seed: int = 0) -> dict:
    """Score every usable configuration of the grid on ``dev``, choose the best by
    :func:`criterion`, evaluate it on ``test`` next to CLIP and the paper's ComCLIP, and write
    ``dev.jsonl``, ``dev.md``, ``ablation.json`` and ``test/report.*`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    usable = set(usable_groundings(backbone))
    configs = [c for c in grid(grid_name) if c.grounding in usable]
    pipelines = build_pipelines(backbone, {c.name: c.pipeline_config(backbone.defaults) for c in configs}, dev)
    clip_dev = evaluate_in_memory(dev, "clip", clip_scorer(backbone), seed=seed)
    results = []
    for n, config in enumerate(configs, start=1):
        summary = evaluate_in_memory(dev, config.name, comclip_scorer(pipelines[config.name]), seed=seed)
        results.append(DevResult(config, summary, criterion(summary)))
        log.info("[%d/%d] %s: %.2f (%.2f)", n, len(configs), config.name, *results[-1].score)
    best = max(results, key=lambda r: r.score)  # first of equals: grid order is the tie-break
    (out / "dev.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in results), encoding="utf-8")
    (out / "dev.md").write_text(
        f"# Ablation on {dev.name} ({dev.split}), model `{backbone.name}`\n\n"
        f"Criterion: {CRITERION}.\n\n{dev_table(clip_dev, results)}\n",
        encoding="utf-8",
    )
    test_report = _test_run(test, backbone, best.config, out / "test", seed, usable, dev.split)
    summary = {
        "dataset": dev.name,
        "dev_split": dev.split,
        "test_split": test.split,
        "model": backbone.name,
        "grid": grid_name,
        "n_configs": len(configs),
        "best": best.to_dict(),
        "clip_dev": {"criterion": list(criterion(clip_dev)), "metrics": clip_dev["metrics"]},
        "test_report": str(out / "test" / "report.json"),
    }
    (out / "ablation.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return {**summary, "best_score": best.score, "clip_criterion": criterion(clip_dev), "test": test_report}


def _test_run(test: Dataset, backbone, best: Config, out: Path, seed: int, usable: set[str], dev_split: str) -> dict:
    """CLIP, the paper's ComCLIP and the chosen configuration on the test split, recomputed."""
    faithful = Config()
    chosen = {"clip": None, f"comclip (paper): {faithful.name}": faithful, f"best on dev: {best.name}": best}
    methods = {label: None if c is None else c.pipeline_config(backbone.defaults) for label, c in chosen.items()}
    extra = {"chosen_on": {"split": dev_split, "criterion": CRITERION, "config": best.name}}
    if has_boxes(test):
        pool = grounder_pool(backbone, test)
        by_grounder: dict = {}  # the measure queries shapes: one row per distinct (grounder, assignment)
        for name in GROUNDINGS:
            if name in usable:
                config = Config(grounding=name).pipeline_config(backbone.defaults)
                by_grounder.setdefault((pool.for_config(config), config.assignment == "joint"), name)
        rows: dict = {name: entry for entry, name in by_grounder.items()}
        rows["oracle"] = oracle_grounder(test)
        extra["grounding"] = grounding_report(rows, test, seed=seed)
    clear_run(out)  # the test run is recomputed with the chosen config
    notes = {label: {"grounding": c.grounding} for label, c in chosen.items() if c is not None}
    report = evaluate(test, backbone, methods, out, seed=seed, progress=False, extra=extra, notes=notes)
    assert report is not None  # one process: the report is this one's
    return report


def dev_table(clip_dev: dict, results: list[DevResult]) -> str:
    """Markdown: CLIP, then every configuration ranked by the criterion, with per-subset values."""
    subsets = sorted({s for r in results for s in r.summary["subsets"]})
    lines = ["| rank | configuration | criterion | " + " | ".join(subsets) + " |", "|---" * (3 + len(subsets)) + "|"]

    def cells(summary):
        main = headline_metric(summary["metrics"]) if summary["metrics"] else None
        return [f"{summary['subsets'][s][main]['value']:.1f}" if main and s in summary["subsets"] else "-" for s in subsets]

    lines.append(f"| - | clip | {criterion(clip_dev)[0]:.2f} | " + " | ".join(cells(clip_dev)) + " |")
    for rank, r in enumerate(sorted(results, key=lambda r: r.score, reverse=True), start=1):
        lines.append(f"| {rank} | {r.config.name} | {r.score[0]:.2f} | " + " | ".join(cells(r.summary)) + " |")
    return "\n".join(lines)
