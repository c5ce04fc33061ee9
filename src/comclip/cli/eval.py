"""``comclip eval``: score a benchmark with CLIP and ComCLIP side by side, resumably."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from comclip.cli.options import (
    SANDBOX_TASKS_HELP,
    add_cache_options,
    add_declared,
    add_model_options,
    add_pipeline_options,
    count,
    create_model,
    given,
    log_to_stderr,
    method_help,
    method_pipelines,
    parse_methods,
    pipeline_options,
    run_in_world,
)
from comclip.errors import InputError


def run(args: argparse.Namespace) -> int:
    if args.dataset == SEARCH_BENCHMARK:
        return _search_benchmark(args)
    return run_in_world(args, _evaluate)


#: The sandbox search benchmark (see :mod:`comclip.search.benchmark`): not a dataset of pairs.
SEARCH_BENCHMARK = "sandbox-search"


def _search_benchmark(args: argparse.Namespace) -> int:
    """Index every image of the sandbox's minimal pairs and search them with every caption."""
    from comclip.backbones import create_backbone
    from comclip.sandbox.dataset import SANDBOX_MODEL, parse_tasks
    from comclip.search.benchmark import SEARCH_TASKS, markdown, sandbox_search

    methods = parse_methods(args.method)
    tasks = parse_tasks(args.task) if args.task else list(SEARCH_TASKS)
    out = Path(args.out or f"runs/sandbox-search-seed{args.seed}")
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} is not empty; choose a new folder for --out")
    method_pipelines(args, methods)  # bad options found before the model loads
    backbone = create_backbone(args.model or SANDBOX_MODEL, device=args.device, batch_size=args.batch_size)
    report = sandbox_search(backbone, out, tasks, args.seed, args.n, methods, args.candidates, pipeline_options(args))
    print(markdown(report))
    print(f"wrote {out / 'report.md'} and report.json; the index is in {out / 'index'}", file=sys.stderr)
    return 0


def _evaluate(args: argparse.Namespace, world) -> int:
    from comclip.backbones import DEFAULT_MODEL
    from comclip.eval.benchmarks.datasets import is_generated
    from comclip.eval.runs.evaluate import default_out_dir, open_dataset
    from comclip.eval.runs.process_group import join
    from comclip.eval.runs.store import check_folder, run_folder
    from comclip.sandbox.dataset import SANDBOX_MODEL

    log_to_stderr()
    methods = parse_methods(args.method)
    if args.model is None:
        args.model = SANDBOX_MODEL if is_generated(args.dataset) else DEFAULT_MODEL
    dataset = open_dataset(args.dataset, args.data, args.image_dir, split=args.split, task=args.task, seed=args.seed, n=args.n)
    with run_folder(Path(args.out) if args.out else default_out_dir(dataset, args.model)) as out:
        if world.main:
            check_folder(out, args.resume)  # another run, or results without --resume: found before the model loads
        method_pipelines(args, methods)  # every option checked before the model loads
        backbone = create_model(args)
        join(world, backbone.device.type)
        configs = method_pipelines(args, methods, backbone)
        args.interrupted_hint = f"what was scored is kept in {out}: run the same command with --resume to continue"
        return _score(args, world, dataset, backbone, configs, out)


def _score(args: argparse.Namespace, world, dataset, backbone, configs: dict, out: Path) -> int:
    """``evaluate`` as the command line shows it: the report on stdout, the counts and any
    method that scored nothing on stderr, and where it all went."""
    from comclip.eval.reports.report import NothingScored, unscored
    from comclip.eval.runs.evaluate import evaluate
    from comclip.eval.runs.options import EvalOptions
    from comclip.eval.runs.store import RunFinished

    try:
        report = evaluate(
            dataset, backbone, configs, out, resume=args.resume, force=args.force, world=world, **given(args, EvalOptions)
        )
    except RunFinished as done:
        print(done, file=sys.stderr)
        return 0
    except NothingScored as failed:  # the report is written; the run still failed
        report = failed.report
    if report is None:  # another process writes the report
        return 0
    print((out / "report.md").read_text(encoding="utf-8"))
    for method in report["runs"]:
        print(f"{method['method']}: {method['n_scored']} scored, {method['n_failed']} failed", file=sys.stderr)
    print(f"wrote {out / 'report.md'}, report.json and per_example.jsonl (one record per method and example)", file=sys.stderr)
    for line in unscored(report):
        print(f"comclip: error: {line}", file=sys.stderr)
    return 1 if unscored(report) else 0


#: The command's name and its line in ``comclip --help``.
NAME, HELP = "eval", "evaluate CLIP and ComCLIP on a benchmark, resumably"


def register(sub) -> None:
    from comclip.backbones import DEFAULT_MODEL
    from comclip.eval.benchmarks.datasets import DATASETS
    from comclip.eval.runs.evaluate import OUT_TEMPLATE
    from comclip.eval.runs.options import EvalOptions
    from comclip.sandbox.dataset import SANDBOX_MODEL

    p = sub.add_parser(NAME, help=HELP)
    p.add_argument("dataset", choices=[*sorted(DATASETS), SEARCH_BENCHMARK])
    p.add_argument(
        "--candidates",
        type=count(1),
        default=100,
        help=f"{SEARCH_BENCHMARK}: CLIP's shortlist each method re-ranks (default: 100)",
    )
    p.add_argument("--data", default=None, help="the dataset file (JSON, CSV, JSONL) or folder")
    p.add_argument("--image-dir", default=None, help="folder of the dataset's images, where the format needs one")
    p.add_argument("--split", default=None, help="split to take from a file holding several (Karpathy: default test)")
    add_model_options(
        p, default_text=f"{SANDBOX_MODEL} for the sandbox, the only model that knows its shapes; else {DEFAULT_MODEL}"
    )
    add_cache_options(p)
    add_pipeline_options(p)
    p.add_argument("--method", default="clip,comclip", help=method_help("clip,comclip"))
    add_declared(p, EvalOptions())
    p.add_argument("--out", default=None, help=f"output folder (default: {OUT_TEMPLATE})")
    p.add_argument("--resume", action="store_true", help="continue a killed run; skip a finished one")
    p.add_argument("--force", action="store_true", help="with --resume, rebuild the report of a finished run")
    _add_generated_options(p)
    p.set_defaults(func=run)


def _add_generated_options(p) -> None:
    """Options of generated data (the sandbox): which tasks, how many items, which seed."""
    from comclip.sandbox.dataset import ITEMS_PER_TASK

    p.add_argument("--task", default=None, help=SANDBOX_TASKS_HELP)
    p.add_argument(
        "--n",
        "--items",
        dest="n",
        type=count(1),
        default=ITEMS_PER_TASK,
        help=f"sandbox: items per task (default: {ITEMS_PER_TASK}); under torchrun write --items (torchrun takes --n as its own)",
    )
    p.add_argument(
        "--seed", type=count(0), default=0, help="seed of the generated data (default: 0); the bootstrap's is --bootstrap-seed"
    )
