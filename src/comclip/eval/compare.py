"""Several evaluation runs side by side: one markdown table and one bar chart per dataset."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..errors import InputError


def load_reports(folders) -> list[dict]:
    reports = []
    for folder in folders:
        path = Path(folder) / "report.json" if Path(folder).is_dir() else Path(folder)
        try:
            reports.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read evaluation report {path}: {exc}") from None
    return reports


def comparison_table(reports: list[dict]) -> str:
    """Markdown: one row per (run, method) with every metric and its 95% interval."""
    names = sorted({n for r in reports for run in r["runs"] for n in run["metrics"]})
    lines = [
        "Each value is over all examples of its run: an average across the run's tasks or subsets, "
        "weighted by their sizes (see each report's per-subset tables), with failed examples counted "
        "as wrong (the failed column).",
        "",
        "| dataset | split | model | method | scored | failed | " + " | ".join(names) + " |",
        "|---" * (6 + len(names)) + "|",
    ]
    for report in reports:
        for run in report["runs"]:
            cells = []
            for name in names:
                metric = run["metrics"].get(name)
                interval = f" [{metric['ci95'][0]:.1f}, {metric['ci95'][1]:.1f}]" if metric and metric.get("ci95") else ""
                cells.append(f"{metric['value']:.2f}{interval}" if metric else "-")
            lines.append(
                f"| {report['dataset']} | {report['split']} | {report['model']} | {run['method']} | "
                f"{run['n_scored']} | {run['n_failed']} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n"


def bar_charts(reports: list[dict], out_dir: str | Path) -> list[Path]:
    """One PNG per dataset: the headline metric per subset, a bar per (model, method), each in
    a colour of its own, with its 95% interval as an error bar; the legend beside the plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for dataset in sorted({r["dataset"] for r in reports}):
        runs = [(r, run) for r in reports if r["dataset"] == dataset for run in r["runs"] if run["metrics"]]
        if runs:
            written.append(_chart(plt, dataset, runs, out_dir / f"{safe_name(dataset)}.png"))
    return written


def safe_name(text: str) -> str:
    """A name taken from data made safe as one file name: no folder separators, no leading
    dots, nothing but letters, digits, ``-``, ``_`` and ``.`` (a report's dataset field
    ``../../x`` names ``x``, inside the output folder)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip(".-")[:100]
    return safe or "dataset"


def run_colours(n: int) -> list[tuple]:
    """``n`` distinct colours: tab20's up to 20 runs, evenly spaced along turbo beyond."""
    from matplotlib import colormaps

    if n <= 20:
        return [tuple(colormaps["tab20"](i)) for i in range(n)]
    return [tuple(c) for c in colormaps["turbo"](np.linspace(0, 1, n))]


def _chart(plt, dataset: str, runs: list, path: Path) -> Path:
    metric = "group" if "group" in runs[0][1]["metrics"] else sorted(runs[0][1]["metrics"])[0]
    subsets = sorted({s for _, run in runs for s in run["subsets"]}) or ["all"]
    colours = run_colours(len(runs))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(subsets) * len(runs) ** 0.5) + 3, 4), dpi=100)
    width = 0.8 / len(runs)
    for n, (report, run) in enumerate(runs):
        blocks = [run["metrics"] if s == "all" else run["subsets"].get(s, {}) for s in subsets]
        values = [b.get(metric, {}).get("value", 0.0) for b in blocks]
        errors = np.array(
            [
                [v - (b[metric]["ci95"] or [v, v])[0], (b[metric]["ci95"] or [v, v])[1] - v] if metric in b else [0, 0]
                for v, b in zip(values, blocks)
            ]
        ).T
        ax.bar(
            [i + n * width for i in range(len(subsets))],
            values,
            width,
            yerr=errors,
            capsize=2,
            color=colours[n],
            label=f"{run['method']} ({Path(report['model']).name})",
        )
    ax.set_xticks([i + width * (len(runs) - 1) / 2 for i in range(len(subsets))], subsets, rotation=30, ha="right")
    ax.set_ylabel(f"{metric} (%), 95% interval")
    ax.set_title(dataset)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
