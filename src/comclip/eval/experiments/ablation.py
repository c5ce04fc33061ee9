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

from comclip.config import PipelineConfig
from comclip.errors import InputError
from comclip.eval.benchmarks.datasets import Dataset
from comclip.eval.benchmarks.kinds import headline_metric
from comclip.eval.reports.grounding_accuracy import grounding_report, has_boxes, oracle_grounder
from comclip.eval.reports.report import summarise_run
from comclip.eval.runs.evaluate import build_pipelines, evaluate, grounder_pool
from comclip.eval.runs.runner import score_examples
from comclip.eval.runs.scorers import clip_scorer, comclip_scorer
from comclip.eval.runs.store import clear_run
from comclip.jsonfile import read_toml, write_whole

log = logging.getLogger("comclip.ablate")
CRITERION = (
    "macro mean over subsets of the headline metric (group for Winoground-kind data, else accuracy); ties: pairwise accuracy"
)


#: The shipped grids, one TOML file each (``comclip ablate --grid NAME``); ``--grid FILE.toml``
#: reads a grid of the same form (see the files' header).
GRID_DIR = Path(__file__).with_name("grids")
GRIDS = tuple(sorted(path.stem for path in GRID_DIR.glob("*.toml")))


@dataclass(frozen=True)
class Config:
    """One point of the grid: its label on each axis, and the
    :class:`~comclip.config.PipelineConfig` changes those values make."""

    labels: tuple[tuple[str, str], ...]
    changes: tuple[tuple[str, Any], ...]

    @property
    def name(self) -> str:
        return " ".join(label for _, label in self.labels if label)

    @property
    def grounding(self) -> str:
        """Its label on the ``grounding`` axis (``default`` where the grid has none)."""
        return dict(self.labels).get("grounding", "default")

    def pipeline_options(self) -> dict:
        return dict(self.changes)

    def pipeline_config(self, model_defaults: dict) -> PipelineConfig:
        """This point of the grid over the model's defaults (what it does not set stays the model's)."""
        return PipelineConfig.layered(model_defaults, **self.pipeline_options())


#: The paper's ComCLIP, which the chosen configuration is reported beside.
PAPER = Config(
    (("score", "comclip"), ("weighting", "sum"), ("fill", "black"), ("grounding", "default")),
    (
        ("score_mode", "comclip"),
        ("weighting", "sum"),
        ("subimage_fill", "black"),
        ("ground_by", "head"),
        ("relation_check", "off"),
    ),
)


def grid(name: str = "full") -> list[Config]:
    """Every point of a grid (a shipped one by name, or a TOML file), in axis order."""
    return grid_points(read_grid(name))


def grid_points(axes: dict[str, list[tuple[str, dict]]]) -> list[Config]:
    """Every combination of the axes' values (see :func:`read_grid`), in axis order."""
    return [
        Config(
            tuple((axis, label) for axis, (label, _) in zip(axes, point)),
            tuple(kv for _, changes in point for kv in changes.items()),
        )
        for point in itertools.product(*axes.values())
    ]


def read_grid(name: str) -> dict[str, list[tuple[str, dict]]]:
    """A grid's axes: name -> [(label, PipelineConfig changes)], each value checked as the
    configuration checks it; every mistake is one :class:`InputError` naming the file."""
    path = GRID_DIR / f"{name}.toml" if name in GRIDS else Path(name)
    if name not in GRIDS and path.suffix != ".toml":
        raise InputError(f"unknown grid {name!r}: choose one of {', '.join(GRIDS)}, or give a .toml file")
    axes = read_toml(path).get("axes")
    if not isinstance(axes, list) or not axes:
        raise InputError(f"{path}: no [[axes]]: a grid needs at least one axis")
    return {_axis_name(axis, path): [_value(value, path) for value in _axis_values(axis, path)] for axis in axes}


def _axis_name(axis: Any, path: Path) -> str:
    if not isinstance(axis, dict) or not isinstance(axis.get("name"), str):
        raise InputError(f"{path}: every [[axes]] entry needs a name and values, got {axis!r}")
    return axis["name"]


def _axis_values(axis: dict, path: Path) -> list:
    values = axis.get("values")
    if not isinstance(values, list) or not values:
        raise InputError(f"{path}: axis {axis['name']!r} has no values")
    return values


def _value(value: Any, path: Path) -> tuple[str, dict]:
    if not isinstance(value, dict) or not isinstance(value.get("label"), str):
        raise InputError(f"{path}: every value needs a label, got {value!r}")
    changes = {key: v for key, v in value.items() if key != "label"}
    try:
        PipelineConfig.layered({}, **changes)
    except (InputError, TypeError) as exc:
        raise InputError(f"{path}: value {value['label']!r}: {exc}") from None
    return value["label"], changes


def usable(changes: dict, backbone) -> bool:
    """Whether this backbone can run a configuration's changes (patch tokens need a CLIP ViT)."""
    return changes.get("region") != "patches" or backbone.supports_patches


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
    axes = read_grid(grid_name)
    configs = [c for c in grid_points(axes) if usable(c.pipeline_options(), backbone)]
    pipelines = build_pipelines(backbone, {c.name: c.pipeline_config(backbone.defaults) for c in configs}, dev)
    clip_dev = evaluate_in_memory(dev, "clip", clip_scorer(backbone), seed=seed)
    results = []
    for n, config in enumerate(configs, start=1):
        summary = evaluate_in_memory(dev, config.name, comclip_scorer(pipelines[config.name]), seed=seed)
        results.append(DevResult(config, summary, criterion(summary)))
        log.info("[%d/%d] %s: %.2f (%.2f)", n, len(configs), config.name, *results[-1].score)
    best = max(results, key=lambda r: r.score)  # first of equals: grid order is the tie-break
    write_whole(out / "dev.jsonl", "".join(json.dumps(r.to_dict()) + "\n" for r in results))
    write_whole(
        out / "dev.md",
        f"# Ablation on {dev.name} ({dev.split}), model `{backbone.name}`\n\n"
        f"Criterion: {CRITERION}.\n\n{dev_table(clip_dev, results)}\n",
    )
    # the grid's grounding axis (the model's own grounding alone where it has none)
    groundings = {label: changes for label, changes in axes.get("grounding", [("default", {})]) if usable(changes, backbone)}
    test_report = _test_run(test, backbone, best.config, out / "test", seed, groundings, dev.split)
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
    write_whole(out / "ablation.json", json.dumps(summary, indent=2))
    return {**summary, "best_score": best.score, "clip_criterion": criterion(clip_dev), "test": test_report}


def _test_run(test: Dataset, backbone, best: Config, out: Path, seed: int, groundings: dict[str, dict], dev_split: str) -> dict:
    """CLIP, the paper's ComCLIP and the chosen configuration on the test split, recomputed;
    on data with true boxes, the accuracy of each of the grid's groundings."""
    chosen = {"clip": None, f"comclip (paper): {PAPER.name}": PAPER, f"best on dev: {best.name}": best}
    methods = {label: None if c is None else c.pipeline_config(backbone.defaults) for label, c in chosen.items()}
    extra = {"chosen_on": {"split": dev_split, "criterion": CRITERION, "config": best.name}}
    if has_boxes(test):
        pool = grounder_pool(backbone, test)
        by_grounder: dict = {}  # the measure queries shapes: one row per distinct (grounder, assignment)
        for name, changes in groundings.items():
            config = PipelineConfig.layered(backbone.defaults, **changes)
            by_grounder.setdefault((pool.for_config(config), config.assignment == "joint"), name)
        rows: dict = {name: entry for entry, name in by_grounder.items()}
        rows["oracle"] = oracle_grounder(test)
        extra["grounding"] = grounding_report(rows, test, seed=seed)
    clear_run(out)  # the test run is recomputed with the chosen config
    notes = {label: {"grounding": c.grounding} for label, c in chosen.items() if c is not None}
    report = evaluate(test, backbone, methods, out, bootstrap_seed=seed, progress=False, extra=extra, notes=notes)
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
