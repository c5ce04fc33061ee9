"""``comclip ablate``: a grid of (score mode, weighting, fill, grounding, relations) chosen on a dev split
or seed, then evaluated on a different one next to CLIP and the paper's ComCLIP."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from comclip.cli.options import (
    SANDBOX_TASKS_HELP,
    add_cache_options,
    add_declared,
    add_former_flag,
    add_model_options,
    count,
    create_model,
    log_to_stderr,
)
from comclip.errors import InputError


def _splits(args: argparse.Namespace):
    from comclip.eval.benchmarks.datasets import is_generated, load_dataset

    if is_generated(args.dataset):
        if args.dev_seed == args.test_seed:
            raise InputError("--dev-seed and --test-seed must differ: the choice is made on one and reported on the other")
        return (
            load_dataset(args.dataset, task=args.task, seed=args.dev_seed, n=args.n),
            load_dataset(args.dataset, task=args.task, seed=args.test_seed, n=args.n),
        )
    if not args.data or not args.test_data:
        raise InputError(f"comclip ablate {args.dataset} needs --data DEV and --test-data TEST (two different splits)")
    if Path(args.data).resolve() == Path(args.test_data).resolve():
        raise InputError("--data and --test-data are the same file: choose on one split, report on another")
    return (load_dataset(args.dataset, args.data, args.image_dir), load_dataset(args.dataset, args.test_data, args.image_dir))


def run(args: argparse.Namespace) -> int:
    from comclip.eval.experiments.ablation import grid, run_ablation

    log_to_stderr()
    grid(args.grid)  # a mistake in the grid is found before any data or model loads
    dev, test = _splits(args)
    out = Path(args.out or f"results/ablate_{dev.name}")
    if (out / "ablation.json").exists() and not args.force:
        raise InputError(f"{out / 'ablation.json'} exists: choose another --out or pass --force")
    summary = run_ablation(dev, test, create_model(args), out, args.grid, seed=args.bootstrap_seed)
    print(
        f"Best on {dev.split}: {summary['best']['config']} (criterion {summary['best_score'][0]:.2f}; "
        f"CLIP {summary['clip_criterion'][0]:.2f})\n"
    )
    print((out / "test" / "report.md").read_text(encoding="utf-8"))
    print(f"wrote {out / 'dev.md'}, {out / 'ablation.json'} and {out / 'test' / 'report.md'}", file=sys.stderr)
    return 0


#: The command's name and its line in ``comclip --help``.
NAME, HELP = "ablate", "choose a ComCLIP configuration on a dev split/seed, report it on another"


def register(sub) -> None:
    from comclip.eval.benchmarks.datasets import DATASETS
    from comclip.eval.experiments.ablation import GRIDS
    from comclip.eval.runs.options import EvalOptions
    from comclip.sandbox.dataset import ITEMS_PER_TASK

    p = sub.add_parser(NAME, help=HELP)
    p.add_argument("dataset", choices=sorted(DATASETS))
    p.add_argument("--data", default=None, help="dev split file (datasets read from files)")
    p.add_argument("--test-data", default=None, help="test split file (datasets read from files)")
    p.add_argument("--image-dir", default=None)
    p.add_argument("--task", default=None, help=SANDBOX_TASKS_HELP)
    p.add_argument("--n", type=count(1), default=ITEMS_PER_TASK, help=f"sandbox: pairs per task (default: {ITEMS_PER_TASK})")
    p.add_argument("--dev-seed", type=int, default=100, help="sandbox seed the choice is made on (default: 100)")
    p.add_argument("--test-seed", type=int, default=200, help="sandbox seed the result is reported on (default: 200)")
    p.add_argument(
        "--grid",
        default="full",
        help=f"configurations to try: a shipped grid ({', '.join(GRIDS)}: full 240, spatial 24, small 8, plus 10; "
        "src/comclip/eval/experiments/grids/) or a TOML file of the same form: axes of PipelineConfig changes (default: full)",
    )
    add_declared(p, EvalOptions(), only=("bootstrap_seed",))
    add_former_flag(p, "--seed", "--bootstrap-seed", "bootstrap_seed", type=int)  # --seed is a data seed everywhere else
    p.add_argument("--out", default=None, help="output folder (default: results/ablate_DATASET)")
    p.add_argument("--force", action="store_true", help="overwrite an earlier ablation in --out")
    add_model_options(p, default_model="comclip/sandbox")
    add_cache_options(p)
    p.set_defaults(func=run)
