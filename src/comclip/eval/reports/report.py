"""The report of a run: per-method summaries (metrics with intervals, subsets, tags, word
order, fallbacks, where errors come from), paired comparisons with CLIP, and the files
``report.json`` and ``report.md`` written from them.
"""

from __future__ import annotations

import json
import platform
import re
from collections import Counter
from importlib import metadata
from pathlib import Path

from comclip.errors import ComclipError
from comclip.eval.benchmarks import metrics
from comclip.eval.benchmarks.datasets import Dataset
from comclip.eval.benchmarks.datasets.retrieval import RetrievalDataset
from comclip.eval.benchmarks.kinds import KINDS, headline_metric, under_tie_rule
from comclip.eval.reports.diagnosis import entity_grounding, error_section, error_sources
from comclip.eval.reports.legend import legend, takeaway, tie_line
from comclip.eval.reports.tables import cell, row
from comclip.eval.reports.word_order import summarise_word_order, word_order_section
from comclip.eval.runs.options import EVAL
from comclip.eval.runs.store import REPORT_JSON, REPORT_MD
from comclip.jsonfile import write_whole


def package_versions() -> dict:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("comclip", "torch", "transformers", "spacy", "numpy", "pillow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


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
        names = by_kind.get(r["kind"]) or (KINDS[r["kind"]].metrics if r["kind"] in KINDS else ())
        for name in sorted(names):
            if r["status"] != "ok":
                out.setdefault(name, []).append(0.0)
            elif name in r["correct"]:
                out.setdefault(name, []).append(float(r["correct"][name]))
    return out


def summarise_run(records: list[dict], n_bootstrap: int = EVAL.n_bootstrap, seed: int = EVAL.bootstrap_seed) -> dict:
    """Counts, metrics with intervals (failed examples count as wrong), per-subset / per-tag
    breakdowns, and how many examples took each fallback, of one method."""
    failed = [r for r in records if r["status"] != "ok"]

    def block(rows: list[dict]) -> dict:
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
        "ties": dict(sorted(Counter(m for r in records for m in r.get("tie_correct", {})).items())),
        **error_sources(
            records, headline_metric(sorted({n for r in records if r["status"] == "ok" for n in r["correct"]}) or ["accuracy"])
        ),
        **entity_grounding(records, n_bootstrap, seed),
        "metrics": block(records),
        "subsets": {s: block([r for r in records if r["subset"] == s]) for s in subsets},
        "tags": {t: block([r for r in records if t in r["tags"]]) for t in tags},
        **summarise_word_order(records, block),
    }


def compare_with(
    baseline: str, by_method: dict[str, list[dict]], n_bootstrap: int = EVAL.n_bootstrap, seed: int = EVAL.bootstrap_seed
) -> list[dict]:
    """Every other method against ``baseline`` on the examples both scored, in the headline
    metric: the paired difference, its bootstrap interval and the exact McNemar p-value."""
    out = []
    base = {r["id"]: r for r in by_method.get(baseline, []) if r["status"] == "ok"}
    for method, records in by_method.items():
        scored = [r for r in records if r["status"] == "ok" and r["id"] in base]
        if method == baseline or not scored:
            continue
        metric = headline_metric(sorted({name for r in scored for name in r["correct"]}))
        pairs = [
            (base[r["id"]]["correct"][metric], r["correct"][metric])
            for r in scored
            if metric in r["correct"] and metric in base[r["id"]]["correct"]
        ]
        result = metrics.paired_comparison([float(a) for a, _ in pairs], [float(b) for _, b in pairs], n_bootstrap, seed)
        out.append({"method": method, "baseline": baseline, "metric": metric, **result})
    return out


#: What makes two error messages "the same error": everything but quoted text, paths and numbers.
_ERROR_DETAILS = re.compile(r"'[^']*'|\"[^\"]*\"|\S*/\S*|\d+")


class NothingScored(ComclipError):
    """A method scored none of its examples: raised by :func:`~comclip.eval.runs.evaluate.evaluate`
    after the report is written (``report``), as the command line exits 1."""

    def __init__(self, lines: list[str], report: dict):
        super().__init__("; ".join(lines))
        self.lines, self.report = lines, report


def unscored(report: dict) -> list[str]:
    """A line for each method that scored none of its examples, naming the most common error."""
    lines = []
    for run in report["runs"]:
        if run["n_examples"] and not run["n_scored"]:
            kinds = [(_ERROR_DETAILS.sub("...", f["error"]), f["error"]) for f in run["failures"]]
            kind, times = Counter(k for k, _ in kinds).most_common(1)[0]
            example = next(error for k, error in kinds if k == kind)
            lines.append(
                f"method {run['method']} scored none of its {run['n_examples']} examples; "
                f"the most common error ({times} of them): {example}"
            )
    return lines


def write_report(
    dataset: Dataset | RetrievalDataset,
    model: str,
    configs: dict[str, dict],
    results: dict,
    out_dir: str | Path,
    seed: int = EVAL.bootstrap_seed,
    n_bootstrap: int = EVAL.n_bootstrap,
    extra: dict | None = None,
    ties: str = EVAL.ties,
) -> dict:
    """Write ``report.json`` and ``report.md`` for the results of :func:`run`; ``extra`` adds
    top-level sections (the sandbox's ``grounding`` accuracy). With a ``clip`` method, every
    other method is compared with it, paired, on the examples both scored. ``ties`` is the
    rule a tie between a true and a false option is judged by (:data:`~.kinds.TIE_RULES`)."""
    out = Path(out_dir)
    by_method = {method: [under_tie_rule(results[key], ties) for key in results if key[0] == method] for method in configs}
    runs = [
        {"method": method, "config": config, **summarise_run(by_method[method], n_bootstrap, seed)}
        for method, config in configs.items()
    ]
    report = {
        "dataset": dataset.name,
        "split": dataset.split,
        "title": getattr(dataset, "title", "") or dataset.split,
        "model": model,
        "source": dataset.source,
        "licence": dataset.licence,
        "seed": seed,
        "bootstrap_resamples": n_bootstrap,
        "intervals": "Wilson score intervals for proportions; percentile bootstrap for shares and paired differences",
        "renamed_ids": getattr(dataset, "renamed_ids", 0),
        "ties": {"rule": ties, "official": getattr(dataset, "official_ties", "strict")},
        "versions": package_versions(),
        "runs": runs,
        "comparisons": compare_with("clip", by_method, n_bootstrap, seed) if "clip" in by_method else [],
        **(extra or {}),
    }
    write_whole(out / REPORT_JSON, json.dumps(report, indent=2))
    write_whole(out / REPORT_MD, markdown_report(report))
    return report


def markdown_report(report: dict) -> str:
    names = sorted({n for run in report["runs"] for n in run["metrics"]})
    lines = [
        f"# {report['dataset']} ({report.get('title') or report['split']}), model `{report['model']}`",
        "",
        f"Every example counts: a failed one is wrong in every metric (failures beside each method). The first "
        f"table is over all examples, so it averages across subsets weighted by their sizes (per subset below). "
        f"95% intervals: {report.get('intervals', 'bootstrap')}; bootstrap seed {report['seed']}, "
        f"{report['bootstrap_resamples']} resamples. Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}.",
        "",
    ]
    if report.get("renamed_ids"):
        lines += [f"{report['renamed_ids']} repeated example ids were renamed ID#2, ID#3, ... (none was dropped).", ""]
    lines += takeaway(report) + legend(report) + ["", "## Results", "", *tie_line(report), ""]
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
        cells = [
            cell(run[section][key][n]) if key in run[section] and n in run[section][key] else "-"
            for run in report["runs"]
            for n in names
        ]
        lines.append(row([key, *cells]))
    return lines


def _comparisons(report: dict) -> list[str]:
    if not report.get("comparisons"):
        return []
    lines = [
        "",
        "## Paired comparison with CLIP (examples both scored)",
        "",
        row(["method", "metric", "examples", "difference (points)", "95% interval", "better / worse", "McNemar p"]),
        "|---" * 7 + "|",
    ]
    for c in report["comparisons"]:
        interval = f"[{c['ci95'][0]:.1f}, {c['ci95'][1]:.1f}]" if c["ci95"] else "-"
        lines.append(
            row(
                [
                    c["method"],
                    c["metric"],
                    c["n"],
                    f"{c['difference']:+.2f}",
                    interval,
                    f"{c['improved']} / {c['worsened']}",
                    f"{c['p_mcnemar']:.3g}",
                ]
            )
        )
    return lines


def _flags(report: dict) -> list[str]:
    if not any(run.get("flags") for run in report["runs"]):
        return []
    names = flag_names(report["runs"])  # a run's flag counts have the records' shape: {"flags": {...}}
    lines = [
        "",
        "## Fallbacks (examples with at least one pair that took it)",
        "",
        row(["method", *names]),
        "|---" * (1 + len(names)) + "|",
    ]
    for run in report["runs"]:
        lines.append(row([run["method"], *(run.get("flags", {}).get(flag, 0) for flag in names)]))
    return lines


def _grounding(report: dict) -> list[str]:
    if not report.get("grounding"):
        return []
    return _grounder_table(report) + _entity_table(report)


def _entity_table(report: dict) -> list[str]:
    runs = [run for run in report["runs"] if run.get("entity_grounding")]
    if not runs:
        return []
    subsets = sorted({s for run in runs for s in run["entity_grounding"].get("subsets", {})})
    lines = [
        "",
        "Entities as each method grounded them (its phrases, its assignment: the boxes it scored; an entity "
        "counts where its head names one true object):",
        "",
        row(["method", "entities", "accuracy", *subsets]),
        "|---" * (3 + len(subsets)) + "|",
    ]
    for run in runs:
        found = run["entity_grounding"]
        lines.append(row([run["method"], found["n"], cell(found), *_subset_cells(found, subsets)]))
    return lines


def _grounder_table(report: dict) -> list[str]:
    lines = [
        "",
        "## Grounding accuracy (top box IoU >= 0.5 with the true object's box, or with what shows of it)",
        "",
        row(["grounder", "objects", "accuracy"]),
        "|---|---|---|",
    ]
    lines += [row([name, metric["n"], cell(metric)]) for name, metric in report["grounding"].items()]
    subsets = sorted({s for metric in report["grounding"].values() for s in metric.get("subsets", {})})
    if subsets:
        lines += ["", "Per subset:", "", row(["grounder", *subsets]), "|---" * (1 + len(subsets)) + "|"]
        for name, metric in report["grounding"].items():
            lines.append(row([name, *_subset_cells(metric, subsets)]))
    return lines


def _subset_cells(metric: dict, subsets: list[str]) -> list[str]:
    """A measure's cell for each subset (``-`` where it has none)."""
    return [cell(metric["subsets"][s]) if s in metric.get("subsets", {}) else "-" for s in subsets]


def _failures(report: dict) -> list[str]:
    failures = [(run["method"], f) for run in report["runs"] for f in run["failures"]]
    if not failures:
        return []
    lines = ["", "## Failed examples", ""] + [f"- {method} {f['id']}: {f['error']}" for method, f in failures[:50]]
    return lines + ([f"- ... and {len(failures) - 50} more (see report.json)"] if len(failures) > 50 else [])
