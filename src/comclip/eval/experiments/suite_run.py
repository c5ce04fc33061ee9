"""Running a suite's cells and writing its combined report (see :mod:`comclip.eval.experiments.suite`).

Each model loads once and scores its cells in the suite's order; each cell is
:func:`~comclip.eval.runs.evaluate.evaluate` into its own folder, so ``--resume`` continues a
killed suite cell by cell (a finished cell is read back, not scored again). The combined
files are rewritten whole at the end: ``suite.json`` (every row and where it came from),
``suite.csv`` (one row per dataset, model and method), ``suite.md`` and one chart per dataset.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from comclip.config import PipelineConfig
from comclip.errors import InputError
from comclip.eval.benchmarks.kinds import headline_metric
from comclip.eval.experiments.suite import Cell
from comclip.eval.reports.compare import bar_charts
from comclip.eval.reports.report import NothingScored, package_versions
from comclip.eval.runs.evaluate import evaluate
from comclip.eval.runs.store import REPORT_JSON, RunFinished, check_folder, folder_lock, has_metrics, run_folder
from comclip.jsonfile import write_whole
from comclip.methods import method_configs
from comclip.world import World

#: The combined files, in the suite's ``--out``.
SUITE_JSON, SUITE_CSV, SUITE_MD = "suite.json", "suite.csv", "suite.md"
CSV_COLUMNS = ("dataset", "model", "method", "metric", "value", "ci_low", "ci_high", "vs_clip", "vs_clip_low", "vs_clip_high",
               "n_scored", "n_failed")  # fmt: skip


@contextmanager
def suite_folder(out: Path, suite_cells: list[Cell], resume: bool, world: World = World()) -> Iterator[Path]:
    """``out`` for a suite's run: held by this suite alone (a second one on it at once is
    refused, never mixed), holding no other suite's tables (only this suite's cells, or some
    of them where the suite has grown since) and, without ``resume``, none at all; removed again where the suite made it and failed before writing anything
    (a model that does not load). The other processes of a torchrun world only use it."""
    if not world.main:
        yield out
        return
    with run_folder(out), folder_lock(out):
        _check_tables(out, suite_cells, resume)
        yield out


def _check_tables(out: Path, suite_cells: list[Cell], resume: bool) -> None:
    path = out / SUITE_JSON
    if not path.exists():
        return
    try:
        held = {cell["name"] for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]}
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{path} is not a comclip suite's table; choose another --out") from None
    if not held <= {cell.name for cell in suite_cells}:  # a suite grown by new datasets or models may go on
        raise InputError(f"{out} holds the tables of another suite (cells this one lacks); choose another --out")
    if not resume:
        raise InputError(f"{path} already holds this suite's results: pass --resume to continue it, or choose another --out")


def check_cell_folders(cells: list[Cell], out: Path, resume: bool, world: World = World()) -> None:
    """Every cell's folder, where there is one, checked before any model loads: no other run
    holds it, and without ``resume`` it holds no results (none is made: a suite whose model
    does not load leaves no folder behind)."""
    if world.main:
        for cell in cells:
            if cell.folder(out).is_dir():
                check_folder(cell.folder(out), resume)


def run_suite(
    cells: list[Cell],
    datasets: dict[str, Any],
    out: Path,
    make_backbone: Callable[[str], object],
    *,
    resume: bool = False,
    options: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
    world: World = World(),
    suite_cells: list[Cell] | None = None,
) -> dict | None:
    """Score every cell (each model loaded once, by ``make_backbone``; each dataset read once,
    ``datasets`` by label) and write the combined report of ``suite_cells`` (default: the
    cells; with ``--only``, the whole suite's: a cell not run now is shown as its folder's
    finished report holds it); returns it (None in processes other than the main one). A
    cell's evaluation options are ``options`` (the command line's) over the suite file's over
    ``defaults``."""
    reports: dict[str, dict] = {}
    done = 0
    for model in dict.fromkeys(cell.model for cell in cells):
        backbone = make_backbone(model)
        for cell in (c for c in cells if c.model == model):
            done += 1
            if world.main:
                print(f"suite: cell {done} of {len(cells)}, {cell.name}", file=sys.stderr, flush=True)
            dataset = datasets[cell.entry.label]
            chosen = {**(defaults or {}), **cell.entry.eval_options, **(options or {})}
            report = run_cell(cell, dataset, backbone, out, resume=resume, options=chosen, world=world)
            if report is not None:
                reports[cell.name] = report
    if not world.main:
        return None
    others = [c for c in suite_cells or cells if c.name not in {cell.name for cell in cells}]
    reports.update({c.name: report for c in others if (report := finished_report(c.folder(out))) is not None})
    return write_suite(suite_cells or cells, reports, out)


def finished_report(folder: Path) -> dict | None:
    """The report of a finished cell (one whose report holds every method's metrics), or None."""
    try:
        report = json.loads((folder / REPORT_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return report if isinstance(report, dict) and report.get("runs") and has_metrics(report) else None


def run_cell(
    cell: Cell, dataset: Any, backbone, out: Path, *, resume: bool, options: Mapping[str, Any], world: World
) -> dict | None:
    """One cell (its ``dataset`` already read) as ``comclip eval`` runs it, under the
    evaluation ``options``; a finished cell's report is read back."""
    folder = cell.folder(out)
    configs = method_configs(list(cell.entry.methods), PipelineConfig.for_backbone(backbone), cell.entry.pipeline_options)
    try:
        return evaluate(
            dataset,
            backbone,
            configs,
            folder,
            resume=resume,
            world=world,
            **options,
        )
    except RunFinished:
        return json.loads((folder / REPORT_JSON).read_text(encoding="utf-8"))
    except NothingScored as failed:  # written; the suite goes on and its table shows it
        return failed.report


def suite_rows(cells: list[Cell], reports: dict[str, dict]) -> list[dict]:
    """One row per (cell, method): the headline metric with its interval and the paired
    difference to CLIP on the examples both scored."""
    rows = []
    for cell in cells:
        report = reports.get(cell.name)
        if report is None:
            continue
        metric = headline_metric(sorted({n for run in report["runs"] for n in run["metrics"]}) or ["accuracy"])
        versus = {c["method"]: c for c in report.get("comparisons", []) if c["metric"] == metric}
        for run in report["runs"]:
            value, paired = run["metrics"].get(metric) or {}, versus.get(run["method"]) or {}
            rows.append(
                {
                    "dataset": cell.entry.label,
                    "model": cell.model,
                    "method": run["method"],
                    "metric": metric,
                    "value": value.get("value"),
                    "ci_low": (value.get("ci95") or [None, None])[0],
                    "ci_high": (value.get("ci95") or [None, None])[1],
                    "vs_clip": paired.get("difference"),
                    "vs_clip_low": (paired.get("ci95") or [None, None])[0],
                    "vs_clip_high": (paired.get("ci95") or [None, None])[1],
                    "n_scored": run["n_scored"],
                    "n_failed": run["n_failed"],
                }
            )
    return rows


def write_suite(cells: list[Cell], reports: dict[str, dict], out: Path) -> dict:
    """``suite.json``, ``suite.csv``, ``suite.md`` and one chart per dataset, each written whole."""
    rows = suite_rows(cells, reports)
    combined = {
        "cells": [
            {"name": c.name, "dataset": c.entry.name, "folder": c.folder(out).name, "scored": c.name in reports} for c in cells
        ],
        "rows": rows,
        "versions": package_versions(),
    }
    write_whole(out / SUITE_JSON, json.dumps(combined, indent=2))
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_whole(out / SUITE_CSV, table.getvalue())
    labelled = [{**reports[c.name], "dataset": c.entry.label, "label": c.model} for c in cells if c.name in reports]
    charts = bar_charts(labelled, out) if labelled else []
    write_whole(out / SUITE_MD, suite_markdown(rows, charts))
    return combined


def suite_markdown(rows: list[dict], charts: list[Path]) -> str:
    """Per dataset: each model's methods with the headline metric and the paired difference."""
    lines = [
        "# comclip suite",
        "",
        "Per dataset and model, each method's headline metric in % with its 95% interval, and its paired "
        "difference from CLIP in points on the examples both scored (95% bootstrap interval). Each cell's "
        "folder holds its full report.",
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        lines += ["", f"## {dataset}", "", "| model | method | metric | value | vs CLIP | scored | failed |", "|---" * 7 + "|"]
        for r in (r for r in rows if r["dataset"] == dataset):
            lines.append(
                f"| {r['model']} | {r['method']} | {r['metric']} | {_value(r['value'], r['ci_low'], r['ci_high'])} | "
                f"{_value(r['vs_clip'], r['vs_clip_low'], r['vs_clip_high'], signed=True)} | {r['n_scored']} | {r['n_failed']} |"
            )
    if charts:
        lines += ["", "Charts: " + ", ".join(f"`{path.name}`" for path in charts)]
    return "\n".join(lines) + "\n"


def _value(value, low, high, signed: bool = False) -> str:
    if value is None:
        return "-"
    shown = f"{value:+.1f}" if signed else f"{value:.1f}"
    return shown + (f" [{low:.1f}, {high:.1f}]" if low is not None and high is not None else "")
