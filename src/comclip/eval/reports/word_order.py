"""Reports that isolate word order.

An example whose false captions are its true captions' words in another order ("a dog
chasing a cat" / "a cat chasing a dog") can only be told apart by a model that reads word
order; one that matches bags of words is at chance there. Every metric is therefore also
given separately for "same words, other order" and "different words", with their counts,
overall and per subset: this is where ComCLIP's claim can be read directly.
"""

from __future__ import annotations

from collections.abc import Callable

from comclip.eval.benchmarks.datasets.base import DIFFERENT_WORDS, SAME_WORDS
from comclip.eval.reports.tables import cell, row

CLASSES = (SAME_WORDS, DIFFERENT_WORDS)


def _split(records: list[dict], block: Callable[[list[dict]], dict]) -> dict:
    """Each class's count and metrics (none where it has no example)."""
    out = {}
    for name in CLASSES:
        rows = [r for r in records if r.get("word_order") == name]
        out[name] = {"n": len(rows), "metrics": block(rows) if rows else {}}
    return out


def summarise_word_order(records: list[dict], block: Callable[[list[dict]], dict]) -> dict:
    """``word_order`` (each class's count and metrics) and ``word_order_subsets`` (the same per
    subset) for a run's records; nothing for datasets whose examples have no caption to compare."""
    marked = [r for r in records if "word_order" in r]
    if not marked:
        return {}
    subsets = sorted({r["subset"] for r in marked if r["subset"]})
    return {
        "word_order": _split(marked, block),
        "word_order_subsets": {s: _split([r for r in marked if r["subset"] == s], block) for s in subsets},
    }


def word_order_section(report: dict, names: list[str]) -> list[str]:
    """The report.md section: each class overall, then per subset, every method's metrics."""
    runs = [run for run in report["runs"] if run.get("word_order")]
    if not runs:
        return []
    headers = [f"{run['method']} {n}" for run in runs for n in names]
    lines = [
        "",
        "## Word order",
        "",
        "Examples whose false captions are the true ones' words in another order, apart from the rest: a model "
        "that matches bags of words is at chance on the first row.",
        "",
        row(["examples", "n", *headers]),
        "|---" * (2 + len(headers)) + "|",
    ]
    lines += _rows(runs, names, "", lambda run: run["word_order"])
    subsets = sorted({s for run in runs for s in run.get("word_order_subsets", {})})
    for subset in subsets:
        lines += _rows(runs, names, f"{subset}: ", lambda run: run["word_order_subsets"].get(subset, {}))  # noqa: B023 (called at once)
    return lines


def _rows(runs: list[dict], names: list[str], prefix: str, split: Callable[[dict], dict]) -> list[str]:
    lines = []
    for name in CLASSES:
        first = split(runs[0]).get(name, {"n": 0})
        cells = [
            cell(split(run)[name]["metrics"][n]) if n in split(run).get(name, {}).get("metrics", {}) else "-"
            for run in runs
            for n in names
        ]
        lines.append(row([f"{prefix}{name}", first["n"], *cells]))
    return lines
