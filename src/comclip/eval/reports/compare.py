"""Several evaluation runs side by side: one markdown table and one bar chart per dataset."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from comclip.errors import InputError
from comclip.jsonfile import check_writable_folder, read_json, write_whole, written_whole


def load_reports(folders, labels: list[str] | None = None) -> list[dict]:
    """The ``report.json`` of each folder (or file), each checked to hold what a table and a
    chart read (anything else is one error naming the file and the first field that is
    wrong), with its run's ``label``: ``labels`` in order, else the folder's name (with its
    parents' where two would read the same)."""
    paths = [Path(folder) / "report.json" if Path(folder).is_dir() else Path(folder) for folder in folders]
    if labels is not None and len(labels) != len(paths):
        raise InputError(f"--label given {len(labels)} times for {len(paths)} runs: give one per run, in order")
    repeated = next((label for label in labels or [] if labels.count(label) > 1), None)  # type: ignore[union-attr]
    if repeated is not None:
        raise InputError(f"--label {repeated!r} is given to two runs: a table needs one label per run")
    reports = []
    for path, label in zip(paths, labels or run_labels(paths)):
        report = read_json(path, "evaluation report")
        problem = report_problem(report)
        if problem:
            raise InputError(f"{path} is not a report of comclip eval: {problem}")
        reports.append({**report, "label": label})
    return reports


def run_labels(paths: list[Path]) -> list[str]:
    """Each report's folder name, with as many parent folders as it takes to tell them apart."""
    folders = [path.resolve().parent for path in paths]
    for depth in range(1, max(len(f.parts) for f in folders) + 1):
        labels = ["/".join(f.parts[-depth:]) for f in folders]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{label} ({n})" for n, label in enumerate(labels, start=1)]  # one folder given twice


def report_problem(report: object) -> str | None:
    """The first thing in ``report`` that a comparison cannot read, or None."""
    if not isinstance(report, dict):
        return "it holds no JSON object"
    for field in ("dataset", "split", "model"):
        if not isinstance(report.get(field), str):
            return f"{field!r} is not text"
    runs = report.get("runs")
    if not isinstance(runs, list):
        return "'runs' is not a list"
    for n, run in enumerate(runs, start=1):
        problem = _run_problem(run)
        if problem:
            return f"run {n}: {problem}"
    return None


def _run_problem(run: object) -> str | None:
    if not isinstance(run, dict):
        return "not an object"
    if not isinstance(run.get("method"), str):
        return "'method' is not text"
    for field in ("n_scored", "n_failed"):
        if not isinstance(run.get(field), int) or isinstance(run.get(field), bool):
            return f"{field!r} is not a whole number"
    subsets = run.get("subsets", {})
    if not isinstance(subsets, dict):
        return "'subsets' is not an object"
    for where, block in [("metrics", run.get("metrics")), *((f"subset {s!r}", b) for s, b in subsets.items())]:
        problem = _metrics_problem(block)
        if problem:
            return f"{where}: {problem}"
    return None


def _metrics_problem(block: object) -> str | None:
    if not isinstance(block, dict):
        return "not an object of metrics"
    for name, metric in block.items():
        if not isinstance(metric, dict) or not _is_number(metric.get("value")):
            return f"{name!r} has no numeric 'value'"
        interval = metric.get("ci95")
        if interval is not None and not (isinstance(interval, list) and len(interval) == 2 and all(map(_is_number, interval))):
            return f"{name!r}: 'ci95' is not null or two numbers"
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def comparison_table(reports: list[dict]) -> str:
    """Markdown: one row per (run, method) with every metric and its 95% interval, and what
    sets the row apart from the same method in the other runs (configuration, model, data)."""
    names = sorted({n for r in reports for run in r["runs"] for n in run["metrics"]})
    differs = differences_by_row(reports)
    lines = [
        "Each value is over all examples of its run: an average across the run's tasks or subsets, "
        "weighted by their sizes (see each report's per-subset tables), with failed examples counted "
        "as wrong (the failed column). *differs* lists what sets a row apart from the same method in "
        "the other runs.",
        "",
        "| run | dataset | split | model | method | differs | scored | failed | " + " | ".join(names) + " |",
        "|---" * (8 + len(names)) + "|",
    ]
    for report in reports:
        for run in report["runs"]:
            cells = []
            for name in names:
                metric = run["metrics"].get(name)
                interval = f" [{metric['ci95'][0]:.1f}, {metric['ci95'][1]:.1f}]" if metric and metric.get("ci95") else ""
                cells.append(f"{metric['value']:.2f}{interval}" if metric else "-")
            lines.append(
                f"| {report['label']} | {report['dataset']} | {report['split']} | {report['model']} | {run['method']} | "
                f"{differs[report['label'], run['method']] or '-'} | {run['n_scored']} | {run['n_failed']} | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(lines) + "\n"


def differences_by_row(reports: list[dict]) -> dict[tuple[str, str], str]:
    """``{(run label, method): "field=value, ..."}``: the fields (model, dataset content, each
    configuration field) whose value differs between the runs of the same method."""
    rows = {(r["label"], run["method"]): _described(r, run) for r in reports for run in r["runs"]}
    differs = {}
    for (label, method), fields in rows.items():
        others = [f for (other, m), f in rows.items() if m == method and other != label]
        keys = [k for k in fields if any(o.get(k) != fields[k] for o in others)]
        differs[label, method] = ", ".join(f"{k}={fields[k]}" for k in keys)
    return differs


def _described(report: dict, run: dict) -> dict[str, str]:
    """A run's model, data, tie rule, backbone runtime (precision and pixel path, which decide
    a plain CLIP run's scores too) and configuration as flat ``field: text``."""
    fields = {"model": str(report["model"]), "data": str(report.get("dataset_content_sha256", "?"))[:10]}
    ties = report.get("ties")
    fields["ties"] = str(ties.get("rule", "?")) if isinstance(ties, dict) else str(ties)
    backbone = report.get("backbone") if isinstance(report.get("backbone"), dict) else {}
    config = run.get("config") if isinstance(run.get("config"), dict) else {}
    for key in ("precision", "pixels"):
        fields[key] = str(config.get(key, backbone.get(key, "?")))  # type: ignore[union-attr]
    for key, value in config.items():  # type: ignore[union-attr]
        if key != "model":
            fields[key] = value.get("name", json.dumps(value, sort_keys=True)) if isinstance(value, dict) else str(value)
    return fields


#: The table ``comclip report --out`` writes beside its charts.
COMPARISON = "comparison.md"


def write_comparison(reports: list[dict], table: str, out: str | Path, force: bool = False) -> list[Path]:
    """``comparison.md`` and the charts (:func:`bar_charts`) in ``out``. What is in the folder
    is the user's: a file of the names it would write is refused unless ``force``, and a folder
    that cannot be made or written is one line, before anything is drawn."""
    from comclip.eval.runs.store import make_folder

    out = make_folder(Path(out))
    check_writable_folder(out, f"the output folder {out}", hint="; choose another --out")
    names = [COMPARISON, *(f"{safe_name(d)}.png" for d in _charted(reports))]
    existing = [name for name in names if (out / name).exists()]
    if existing and not force:
        raise InputError(
            f"{out / existing[0]} exists; comclip report does not replace files: choose another --out, "
            f"or --force to replace {', '.join(existing)}"
        )
    write_whole(out / COMPARISON, table)
    return [out / COMPARISON, *bar_charts(reports, out)]


def _charted(reports: list[dict]) -> list[str]:
    """The datasets that get a chart: those with a run that has metrics."""
    return sorted({r["dataset"] for r in reports if any(run["metrics"] for run in r["runs"])})


def bar_charts(reports: list[dict], out_dir: str | Path) -> list[Path]:
    """One PNG per dataset: the headline metric per subset, a bar per (model, method), each in
    a colour of its own, with its 95% interval as an error bar; the legend beside the plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for dataset in _charted(reports):
        runs = [(r, run) for r in reports if r["dataset"] == dataset for run in r["runs"] if run["metrics"]]
        written.append(_chart(plt, dataset, runs, out_dir / f"{safe_name(dataset)}.png"))
    return written


def safe_name(text: str) -> str:
    """A name taken from data made safe as one file name: no folder separators, no leading
    dots, nothing but letters, digits, ``-``, ``_`` and ``.`` (a report's dataset field
    ``../../x`` names ``x``, inside the output folder)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip(".-")[:100]
    return safe or "dataset"


#: Hue families of four shades each (tab20c's and tab20b's), dark to light: a chart gives each
#: label (a suite's model, a report's run) a family and each method a shade of it.
COLOUR_FAMILIES = [("tab20c", 0), ("tab20c", 4), ("tab20c", 8), ("tab20c", 12), ("tab20b", 0), ("tab20b", 4),
                   ("tab20b", 8), ("tab20b", 12), ("tab20b", 16), ("tab20c", 16)]  # fmt: skip
SHADES = 4


def run_colours(runs: list[tuple[str, str]]) -> list[tuple]:
    """A colour per ``(label, method)``: each label's bars in a hue family of their own, each
    method the same shade in every family, so neither is mistaken for the other; with more
    labels than families or more methods than shades, distinct colours along turbo."""
    from matplotlib import colormaps

    labels = list(dict.fromkeys(label for label, _ in runs))
    methods = list(dict.fromkeys(method for _, method in runs))
    if len(labels) > len(COLOUR_FAMILIES) or len(methods) > SHADES or len(set(runs)) < len(runs):
        return [tuple(c) for c in colormaps["turbo"](np.linspace(0.05, 0.95, len(runs)))]
    colours = []
    for label, method in runs:
        name, first = COLOUR_FAMILIES[labels.index(label)]
        colours.append(tuple(colormaps[name](first + methods.index(method))))
    return colours


def draw_bars(ax, runs: list, subsets: list[str], metric: str) -> None:
    """The bars of ``runs`` per subset with their 95% intervals; a bar of height 0, which
    would not show, is a stroke on the axis with a 0 above it."""
    colours = run_colours([(report["label"], run["method"]) for report, run in runs])
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
        places = [i + n * width for i in range(len(subsets))]
        ax.bar(places, values, width, yerr=errors, capsize=2, color=colours[n], label=f"{report['label']}: {run['method']}")
        for place, value, upper in zip(places, values, errors[1]):
            if value == 0:  # a stroke of the bar's colour on the axis, and a 0 above its interval
                ax.hlines(0, place - width / 2, place + width / 2, colors=[colours[n]], linewidth=4, clip_on=False)
                ax.text(place, upper, "0", ha="center", va="bottom", fontsize=8)
    ax.set_xticks([i + width * (len(runs) - 1) / 2 for i in range(len(subsets))], subsets, rotation=30, ha="right")


#: Runs per column of a chart's legend (the figure grows to hold one column).
LEGEND_ROWS = 20


def _chart(plt, dataset: str, runs: list, path: Path) -> Path:
    metric = "group" if "group" in runs[0][1]["metrics"] else sorted(runs[0][1]["metrics"])[0]
    subsets = sorted({s for _, run in runs for s in run["subsets"]}) or ["all"]
    rows = min(len(runs), LEGEND_ROWS)  # the legend beside the plot, in columns of LEGEND_ROWS runs
    height = max(4.0, 0.22 * rows + 1.0)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(subsets) * len(runs) ** 0.5) + 3, height), dpi=100)
    draw_bars(ax, runs, subsets, metric)
    ax.set_ylabel(f"{metric} (%), 95% interval")
    ax.set_title(dataset)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, ncols=-(-len(runs) // LEGEND_ROWS))
    try:
        with written_whole(path) as file:  # the saved area takes in the legend (no layout pass to warn)
            fig.savefig(file, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
