"""``comclip eval``: score a benchmark with CLIP and ComCLIP side by side, resumably."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path

from .cli import _add_cache_options, _add_model_options, _add_pipeline_options, _attach_cache, _parse_methods, _pipeline_kwargs
from .errors import InputError

OUT_TEMPLATE = "results/{dataset}_{split}_{model}"
#: Decoding workers: one core or more is left to the model (clip_benchmark's default is 4).
DEFAULT_WORKERS = min(4, max(0, (os.cpu_count() or 1) - 1))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[-60:]


def _cmd_eval(args: argparse.Namespace) -> int:
    from .backbones import create_backbone
    from .eval import runner
    from .eval.datasets import GENERATED, load_dataset
    from .eval.scorers import clip_scorer, comclip_scorer
    from .parsing.given import GivenParser
    from .pipeline import ComCLIP
    from .sandbox.evaluate import OracleGrounder, grounding_report

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    methods = _parse_methods(args.method)
    if args.data is None and args.dataset not in GENERATED:
        raise InputError(f"comclip eval {args.dataset} needs --data PATH (the dataset file or folder)")
    if args.dataset == "sandbox":
        dataset = load_dataset("sandbox", task=args.task, seed=args.seed, n=args.n)
    else:
        dataset = load_dataset(args.dataset, args.data, args.image_dir, split=args.split)
    out = Path(args.out or OUT_TEMPLATE.format(dataset=dataset.name, split=dataset.split, model=_slug(args.model)))
    if args.resume and (out / "report.json").exists() and not args.force:
        print(f"{out / 'report.json'} exists: run already finished (use --force to rebuild the report)", file=sys.stderr)
        return 0
    backbone = create_backbone(args.model, device=args.device, batch_size=args.batch_size, precision=args.precision)
    _attach_cache(backbone, args)
    if args.dataset == "retrieval":
        return _eval_retrieval(args, dataset, backbone, methods, out)
    scorers, configs = {}, {}
    if "clip" in methods:
        scorers["clip"] = clip_scorer(backbone)
        configs["clip"] = {"model": backbone.name}
    options = _pipeline_kwargs(args)
    if options["parser"] == "given":
        options["parser"] = GivenParser({t: g for ex in dataset.examples for t, g in ex.given.items()})
    if options["grounder"] == "oracle":
        if args.dataset != "sandbox":
            raise InputError("--grounder oracle needs generated data with known boxes (comclip eval sandbox)")
        options["grounder"] = OracleGrounder([s for ex in dataset.examples for s in ex.scenes])
    model = ComCLIP(backbone, **options)
    if "comclip" in methods:
        scorers["comclip"] = comclip_scorer(model)
        configs["comclip"] = model.config()
    results = runner.run(dataset, scorers, out, resume=args.resume, limit=args.limit, workers=args.workers)
    extra = {}
    if args.dataset == "sandbox":
        grounders = {model.grounder.name: model.grounder, "oracle": OracleGrounder([s for ex in dataset.examples for s in ex.scenes])}
        extra["grounding"] = grounding_report(grounders, dataset, seed=args.seed, n_bootstrap=args.bootstrap)
    return _finish(args, dataset, backbone, configs, results, out, extra)


def _eval_retrieval(args, dataset, backbone, methods, out: Path) -> int:
    from .eval.retrieval import run_retrieval
    from .pipeline import ComCLIP

    if args.rerank_top < 1:
        raise InputError(f"--rerank-top must be at least 1, got {args.rerank_top}")
    configs = {"clip": {"model": backbone.name}} if "clip" in methods else {}
    reranker = None
    if "comclip" in methods:
        reranker = ComCLIP(backbone, **_pipeline_kwargs(args))
        configs["comclip"] = {**reranker.config(), "rerank_top": args.rerank_top}
    results = run_retrieval(dataset, backbone, out, reranker=reranker, rerank_top=args.rerank_top,
                            resume=args.resume, limit=args.limit, workers=args.workers)
    results = {key: value for key, value in results.items() if key[0] in configs}
    return _finish(args, dataset, backbone, configs, results, out)


def _finish(args, dataset, backbone, configs: dict, results: dict, out: Path, extra: dict | None = None) -> int:
    from .eval import runner

    report = runner.write_report(dataset, backbone.name, configs, results, out, seed=args.seed, n_bootstrap=args.bootstrap,
                                 extra={"backbone": backbone.describe(), **(extra or {})})
    print((out / "report.md").read_text(encoding="utf-8"))
    for run in report["runs"]:
        print(f"{run['method']}: {run['n_scored']} scored, {run['n_failed']} failed", file=sys.stderr)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .eval.compare import bar_charts, comparison_table, load_reports

    reports = load_reports(args.dirs)
    table = comparison_table(reports)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "comparison.md").write_text(table, encoding="utf-8")
        for path in bar_charts(reports, out):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def _cmd_cache(args: argparse.Namespace) -> int:
    from .cache import SQLiteCache, default_cache_path
    from .cli import _print_json

    cache = SQLiteCache(args.cache or default_cache_path())
    if args.action == "info":
        _print_json(cache.info())
    else:
        print(f"removed {cache.clear()} embeddings from {cache.path}", file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser("cache", help="inspect or empty the persistent embedding cache")
    p.add_argument("action", choices=["info", "clear"])
    p.add_argument("--cache", default=None, metavar="PATH", help="cache file (default: $COMCLIP_CACHE/embeddings.sqlite)")
    p.set_defaults(func=_cmd_cache)

    from .eval.datasets import DATASETS

    p = sub.add_parser("report", help="put several evaluation runs side by side (markdown table, bar charts)")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="output folders of comclip eval (or report.json files)")
    p.add_argument("--out", default=None, help="folder for comparison.md and one PNG chart per dataset")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("eval", help="evaluate CLIP and ComCLIP on a benchmark, resumably")
    p.add_argument("dataset", choices=sorted(DATASETS))
    p.add_argument("--data", default=None, help="the dataset file (JSON, CSV, JSONL) or folder")
    p.add_argument("--image-dir", default=None, help="folder of the dataset's images, where the format needs one")
    p.add_argument("--split", default=None, help="split to take from a file holding several (Karpathy: default test)")
    p.add_argument("--rerank-top", type=int, default=10,
                   help="retrieval: ComCLIP re-scores CLIP's top K candidates of each query (default: 10)")
    _add_model_options(p)
    _add_cache_options(p)
    _add_pipeline_options(p)
    p.add_argument("--method", default="clip,comclip", help="clip, comclip or clip,comclip (default: both)")
    p.add_argument("--limit", type=int, default=None, help="only the first N examples")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                   help=f"processes decoding image files ahead of the model; 0 decodes in the main process (default: {DEFAULT_WORKERS})")
    p.add_argument("--out", default=None, help=f"output folder (default: {OUT_TEMPLATE})")
    p.add_argument("--resume", action="store_true", help="continue a killed run; skip a finished one")
    p.add_argument("--force", action="store_true", help="with --resume, rebuild the report of a finished run")
    p.add_argument("--task", default=None, help="sandbox: binding, object-swap, order-swap, substitution (comma-separated; default all)")
    p.add_argument("--n", type=int, default=100, help="sandbox: items per task (default: 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and of generated data (default: 0)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    p.set_defaults(func=_cmd_eval)
