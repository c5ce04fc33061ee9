"""``comclip demo``: CLIP vs ComCLIP on the sandbox's minimal pairs, offline, with the shipped models."""

from __future__ import annotations

import argparse
import sys

from comclip.cli.options import add_declared, count, print_json


def run(args: argparse.Namespace) -> int:
    from comclip.sandbox.demo import FIGURE, model_folder, run_demo

    models = [m.strip() for m in args.model.split(",") if m.strip()]
    text, reports = run_demo(models, args.out, seed=args.seed, n=args.n, device=args.device, full=args.full)
    if args.json:
        print_json(reports)
    else:
        print(text)
        print(
            f"wrote {args.out}/report.md and one folder per model with report.json, per_example.jsonl and "
            f"{FIGURE} (e.g. {args.out}/{model_folder(models[0])}/{FIGURE})",
            file=sys.stderr,
        )
    return 0


#: The command's name and its line in ``comclip --help``.
NAME, HELP = "demo", "CLIP vs ComCLIP on the sandbox's minimal pairs, offline, with the shipped model"


def register(sub) -> None:
    from comclip.backbones.runtime import RuntimeOptions
    from comclip.sandbox.demo import DEMO_MODELS

    models = ",".join(DEMO_MODELS)
    p = sub.add_parser(NAME, help=HELP)
    p.add_argument(
        "--model", "-m", default=models, help=f"backbones, comma-separated (default: {models}, both shipped with comclip)"
    )
    add_declared(p, RuntimeOptions(), only=("device",))
    p.add_argument("--seed", type=count(0), default=1, help="seed of the generated pairs (default: 1)")
    p.add_argument("--n", type=count(1), default=25, help="pairs per task (default: 25)")
    p.add_argument(
        "--full", action="store_true", help="also the wider grid: both fills, entity evidence with and without +geometry"
    )
    p.add_argument("--out", default="demo", help="output folder (default: ./demo)")
    p.add_argument("--json", action="store_true", help="print report.json instead of the table")
    p.set_defaults(func=run)
