"""``comclip demo``: the whole pipeline end to end, offline, in a few minutes on a laptop CPU.

It evaluates plain CLIP and ComCLIP (both weightings, black and mean fill) with the shipped
sandbox model (``comclip/sandbox``) on the sandbox's four minimal-pair sets, prints the
table, and writes ``report.md``, the full ``report.json`` / ``per_example.jsonl`` and an
``explain`` figure of a colour-binding pair. The same seed gives the same numbers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli import _print_json

DEMO_MODEL = "comclip/sandbox"
#: (method name, pipeline options) of the demo's grid; the default grounder throughout.
DEMO_METHODS = (
    ("comclip sum black", {"weighting": "sum", "fill": "black"}),
    ("comclip softmax black", {"weighting": "softmax", "fill": "black"}),
    ("comclip sum mean", {"weighting": "sum", "fill": "mean"}),
    ("comclip softmax mean", {"weighting": "softmax", "fill": "mean"}),
)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .backbones import create_backbone
    from .eval import runner
    from .eval.datasets.base import WINOGROUND
    from .eval.scorers import clip_scorer, comclip_scorer
    from .explain import draw_explanation
    from .grounding import create_grounder
    from .pipeline import ComCLIP
    from .sandbox.evaluate import OracleGrounder, grounding_report, load
    from .sandbox.pairs import TASKS

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / runner.PER_EXAMPLE).unlink(missing_ok=True)  # the demo recomputes from scratch
    backbone = create_backbone(args.model, device=args.device, batch_size=256)
    dataset = load(seed=args.seed, n=args.n)
    grounder = create_grounder("clip", backbone)  # shared: each image's candidates are encoded once
    scorers = {"clip": clip_scorer(backbone)}
    configs = {"clip": {"model": backbone.name}}
    models = {}
    for name, options in DEMO_METHODS:
        models[name] = ComCLIP(backbone, grounder=grounder, **options)
        scorers[name] = comclip_scorer(models[name])
        configs[name] = models[name].config()
    results = runner.run(dataset, scorers, out, progress=False)
    oracle = OracleGrounder([s for ex in dataset.examples for s in ex.scenes])
    report = runner.write_report(dataset, backbone.name, configs, results, out, seed=args.seed,
                                 extra={"grounding": grounding_report({"clip": grounder, "oracle": oracle}, dataset, seed=args.seed)})

    binding = next(ex for ex in dataset.examples if ex.subset == "binding" and ex.kind == WINOGROUND)
    first = models[DEMO_METHODS[0][0]]
    draw_explanation(first.explain(binding.images[0], binding.texts[0]), binding.images[0], out / "explain.png")
    binding.images[0].save(out / "binding_img_0.png")
    binding.images[1].save(out / "binding_img_1.png")

    table = demo_table(report, TASKS)
    text = "\n".join([
        "# comclip demo: CLIP vs ComCLIP on the sandbox's minimal pairs",
        "",
        f"Model `{backbone.name}`, seed {args.seed}, {args.n} pairs per task, default `clip` grounder. "
        "Winoground-style group score in % (both captions and both images right), 95% bootstrap interval.",
        "",
        table,
        "",
        "Grounding accuracy (top box IoU >= 0.5 with the true object): "
        + ", ".join(f"{k} {v['value']:.1f}% [{v['ci95'][0]:.1f}, {v['ci95'][1]:.1f}] of {v['n']} objects"
                    for k, v in report["grounding"].items()) + ".",
        "",
        f"Figure: `explain.png`, {first.config()['weighting']} weighting, {binding.texts[0]!r} on `binding_img_0.png`. "
        "Every metric and breakdown: below, `report.json` and `per_example.jsonl`.",
    ]) + "\n"
    full = (out / "report.md").read_text(encoding="utf-8")
    (out / "report.md").write_text(text + "\n---\n\n" + full, encoding="utf-8")
    if args.json:
        _print_json(report)
    else:
        print(text)
        print(f"wrote {out / 'report.md'} and {out / 'explain.png'}", file=sys.stderr)
    return 0


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


def register(sub) -> None:
    p = sub.add_parser("demo", help="CLIP vs ComCLIP on the sandbox's minimal pairs, offline, with the shipped model")
    p.add_argument("--model", "-m", default=DEMO_MODEL, help=f"backbone (default: {DEMO_MODEL}, shipped with comclip)")
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=1, help="seed of the pairs and the bootstrap (default: 1)")
    p.add_argument("--n", type=int, default=50, help="pairs per task (default: 50)")
    p.add_argument("--out", default="demo", help="output folder (default: ./demo)")
    p.add_argument("--json", action="store_true", help="print report.json instead of the table")
    p.set_defaults(func=_cmd_demo)
