"""Several evaluation runs side by side: one markdown table and one bar chart per dataset."""

from __future__ import annotations

import json
from pathlib import Path

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
    names = sorted({n for r in reports for run in r["runs"] for n in run["metrics"]})
    lines = ["| dataset | split | model | method | scored | failed | " + " | ".join(names) + " |",
             "|---" * (6 + len(names)) + "|"]
    for report in reports:
        for run in report["runs"]:
            cells = []
            for name in names:
                metric = run["metrics"].get(name)
                cells.append(f"{metric['value']:.2f} [{metric['ci95'][0]:.1f}, {metric['ci95'][1]:.1f}]" if metric else "-")
            lines.append(f"| {report['dataset']} | {report['split']} | {report['model']} | {run['method']} | "
                         f"{run['n_scored']} | {run['n_failed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bar_charts(reports: list[dict], out_dir: str | Path) -> list[Path]:
    """One PNG per dataset: the headline metric per subset, a bar per (model, method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for dataset in sorted({r["dataset"] for r in reports}):
        runs = [(r, run) for r in reports if r["dataset"] == dataset for run in r["runs"] if run["metrics"]]
        if not runs:
            continue
        metric = "group" if "group" in runs[0][1]["metrics"] else sorted(runs[0][1]["metrics"])[0]
        subsets = sorted({s for _, run in runs for s in run["subsets"]}) or ["all"]
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(subsets) * len(runs) ** 0.5), 4), dpi=100)
        width = 0.8 / len(runs)
        for n, (report, run) in enumerate(runs):
            values = [run["subsets"].get(s, {}).get(metric, {}).get("value", 0.0) if s != "all" else run["metrics"][metric]["value"]
                      for s in subsets]
            ax.bar([i + n * width for i in range(len(subsets))], values, width, label=f"{run['method']} ({Path(report['model']).name})")
        ax.set_xticks([i + width * (len(runs) - 1) / 2 for i in range(len(subsets))], subsets, rotation=30, ha="right")
        ax.set_ylabel(f"{metric} (%)")
        ax.set_title(dataset)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{dataset}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
