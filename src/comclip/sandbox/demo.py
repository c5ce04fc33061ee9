"""The demo: the whole pipeline end to end, offline, in about half a minute on a laptop CPU.

It evaluates plain CLIP, the paper's ComCLIP with both weightings and the project's best
method (``comclip-plus``: joint grounding, segment parts, entity evidence, spatial relations
checked on the boxes) with the two shipped sandbox models (``comclip/sandbox``, and
``comclip/sandbox-bow`` whose text tower was trained on shuffled words: a bag of words like
real CLIP) on the sandbox's four classic minimal-pair sets and its depth pairs (a relation
only pixels show, which no method reads yet). ``--full`` adds the wider grid (both fills,
the evidence variant with and without the geometric relation check). It writes ``report.md``
(with a legend and a takeaway), per model the full ``report.json`` / ``per_example.jsonl``,
and a figure of a pair CLIP gets wrong: both captions side by side, each method's choice
marked. The same seed gives the same numbers.
"""

from __future__ import annotations

import sys
from pathlib import Path

from comclip.backbones import create_backbone
from comclip.config import PipelineConfig
from comclip.eval.reports.legend import legend, takeaway
from comclip.eval.runs.evaluate import CLIP, build_pipelines, evaluate
from comclip.eval.runs.store import PER_EXAMPLE, clear_run, read_records
from comclip.explain import draw_contrast
from comclip.jsonfile import write_whole
from comclip.methods import METHODS
from comclip.sandbox.dataset import load
from comclip.sandbox.pairs import TASKS

DEMO_MODELS = ("comclip/sandbox", "comclip/sandbox-bow")
#: The classic four, which comclip-plus settles, and one relation only pixels show ("A in front
#: of B": the same boxes in both images), which no method reads yet: the demo shows both.
DEMO_TASKS = (*TASKS, "depth")
#: The project's best method, shown beside the paper's and CLIP.
PLUS = "comclip-plus"
#: The paper's ComCLIP with each of its weightings (the model's defaults otherwise).
PAPER_METHODS: tuple[tuple[str, dict], ...] = (
    ("comclip sum", {"weighting": "sum"}),
    ("comclip softmax", {"weighting": "softmax"}),
)
#: (method name, pipeline options) of the wider grid ``--full`` adds; the model's default grounder
#: throughout. The last rows are the variants chosen by `comclip ablate sandbox` on seed 100 (the
#: demo uses seed 1), without and with the geometric relation check (`--grid spatial`).
FULL_METHODS: tuple[tuple[str, dict], ...] = (
    ("comclip sum mean", {"weighting": "sum", "subimage_fill": "mean"}),
    ("comclip softmax mean", {"weighting": "softmax", "subimage_fill": "mean"}),
    ("evidence(1) sum mean", {"weighting": "sum", "subimage_fill": "mean", "score_mode": "evidence", "evidence_weight": 1.0}),
    (
        "evidence(1) sum mean +geometry",
        {
            "weighting": "sum",
            "subimage_fill": "mean",
            "score_mode": "evidence",
            "evidence_weight": 1.0,
            "relation_check": "geometry",
        },
    ),
)
#: The figure's file in each model's folder.
FIGURE = "explain.png"


def run_demo(models=DEMO_MODELS, out_dir="demo", seed: int = 1, n: int = 25, device=None, full: bool = False) -> tuple[str, dict]:
    """Evaluate each model; write ``report.md`` and one folder per model. Returns the markdown
    and ``{model: report}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections, reports = [], {}
    for k, model in enumerate(models, start=1):
        print(f"demo: model {k} of {len(models)}, {model}", file=sys.stderr, flush=True)
        reports[model], section = demo_model(model, out / model_folder(model), seed=seed, n=n, device=device, full=full)
        sections.append(section)
    text = (
        "\n".join(
            [
                "# comclip demo: CLIP vs ComCLIP on the sandbox's minimal pairs",
                "",
                f"Seed {seed}, {n} pairs per task, the model's default `clip` grounder. Winoground-style group "
                "score in % (both captions and both images right) with its 95% Wilson interval. Tasks: "
                + ", ".join(DEMO_TASKS)
                + " (depth: which of two overlapping shapes is drawn on top; see docs/sandbox.md).",
                *legend(next(iter(reports.values()))),
                "",
                *sections,
            ]
        )
        + "\n"
    )
    write_whole(out / "report.md", text)
    return text, reports


def model_folder(model: str) -> str:
    return model.replace("/", "_").strip("._") or "model"


def demo_methods(backbone, full: bool = False) -> dict:
    """CLIP, the paper's ComCLIP with both weightings, (``full``: the wider grid,) then ComCLIP+."""
    grid = PAPER_METHODS + (FULL_METHODS if full else ())
    return {
        "clip": CLIP,
        **{name: PipelineConfig.layered(backbone.defaults, **options) for name, options in grid},
        PLUS: METHODS[PLUS].config(PipelineConfig.for_backbone(backbone)),
    }


def demo_model(model: str, out: Path, seed: int = 1, n: int = 25, device=None, full: bool = False) -> tuple[dict, str]:
    """Evaluate one model on :data:`DEMO_TASKS`; write its full report and the figure."""
    out.mkdir(parents=True, exist_ok=True)
    clear_run(out)  # the demo recomputes from scratch
    backbone = create_backbone(model, device=device, batch_size=256)
    dataset = load(task=",".join(DEMO_TASKS), seed=seed, n=n)
    methods = demo_methods(backbone, full)
    report = evaluate(dataset, backbone, methods, out)
    assert report is not None  # one process: the report is this one's
    example, image = contrast_example(out, dataset)
    explained = build_pipelines(backbone, {"explained": methods[PLUS]})["explained"]
    assert explained is not None  # comclip-plus composes
    results = [explained.explain(example.images[image], text) for text in example.texts]
    draw_contrast(results, example.images[image], out / FIGURE, PLUS, true=image)
    grounding, joint = report["grounding"]["clip"], report["grounding"]["clip joint"]
    section = "\n".join(
        [
            f"## `{backbone.name}`",
            "",
            demo_table(report, DEMO_TASKS),
            *takeaway(report),
            "",
            f"Grounding: {grounding['value']:.1f}% [{grounding['ci95'][0]:.1f}, {grounding['ci95'][1]:.1f}] of "
            f"{grounding['n']} objects are boxed (IoU >= 0.5 with the object or what shows of it) by the paper's grounding, {joint['value']:.1f}% "
            f"[{joint['ci95'][0]:.1f}, {joint['ci95'][1]:.1f}] with {PLUS}'s (oracle boxes: 100%). Figure: "
            f"`{out.name}/{FIGURE}` (example {example.id}: CLIP's and {PLUS}'s choice between its captions). "
            f"All metrics: `{out.name}/report.md`.",
            "",
        ]
    )
    return report, section


def contrast_example(out: Path, dataset) -> tuple:
    """``(example, image index)`` for the figure: the first image whose own caption CLIP ranks
    below the other while ComCLIP+ ranks it first; else the first CLIP gets wrong; else the
    first example."""
    scores = {key: r.get("scores") for key, r in read_records(out / PER_EXAMPLE).items() if r["status"] == "ok"}

    def prefers_own(method: str, example_id: str, i: int) -> bool | None:
        matrix = scores.get((method, example_id))
        return None if matrix is None else matrix[i][i] > matrix[i][1 - i]

    candidates = [(ex, i) for ex in dataset.examples for i in range(2)]
    for wanted in ((False, True), (False, None)):
        for ex, i in candidates:
            clip, plus = prefers_own("clip", ex.id, i), prefers_own(PLUS, ex.id, i)
            if clip is wanted[0] and (wanted[1] is None or plus is wanted[1]):
                return ex, i
    return dataset.examples[0], 0


def demo_table(report: dict, tasks, metric: str = "group") -> str:
    """A markdown table: one row per method, one column per task (``metric`` with its interval)."""
    lines = ["| method | " + " | ".join(tasks) + " |", "|---" * (1 + len(tasks)) + "|"]
    for run in report["runs"]:
        cells = []
        for task in tasks:
            m = run["subsets"].get(task, {}).get(metric)
            cells.append(f"{m['value']:.1f} [{m['ci95'][0]:.1f}, {m['ci95'][1]:.1f}]" if m else "-")
        lines.append(f"| {run['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
