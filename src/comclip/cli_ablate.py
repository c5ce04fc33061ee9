"""``comclip ablate``: a grid of (score mode, weighting, fill, grounding) chosen on a dev split
or seed, then evaluated on a different one next to CLIP and the paper's ComCLIP."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .cli import _add_cache_options, _add_model_options, _attach_cache
from .errors import InputError

log = logging.getLogger("comclip.ablate")


def _load_splits(args):
    from .eval.datasets import GENERATED, load_dataset

    if args.dataset in GENERATED:
        if args.dev_seed == args.test_seed:
            raise InputError("--dev-seed and --test-seed must differ: the choice is made on one and reported on the other")
        return (load_dataset(args.dataset, task=args.task, seed=args.dev_seed, n=args.n),
                load_dataset(args.dataset, task=args.task, seed=args.test_seed, n=args.n))
    if not args.data or not args.test_data:
        raise InputError(f"comclip ablate {args.dataset} needs --data DEV and --test-data TEST (two different splits)")
    if Path(args.data).resolve() == Path(args.test_data).resolve():
        raise InputError("--data and --test-data are the same file: choose on one split, report on another")
    return (load_dataset(args.dataset, args.data, args.image_dir), load_dataset(args.dataset, args.test_data, args.image_dir))


def _cmd_ablate(args: argparse.Namespace) -> int:
    from .backbones import create_backbone
    from .eval import runner
    from .eval.ablation import GROUNDINGS, Config, DevResult, criterion, evaluate, grid, usable_groundings
    from .eval.scorers import clip_scorer, comclip_scorer
    from .grounding import create_grounder
    from .parsing import create_parser
    from .pipeline import ComCLIP
    from .sandbox.evaluate import OracleGrounder, grounding_report

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    dev, test = _load_splits(args)
    out = Path(args.out or f"results/ablate_{dev.name}")
    if (out / "ablation.json").exists() and not args.force:
        raise InputError(f"{out / 'ablation.json'} exists: choose another --out or pass --force")
    out.mkdir(parents=True, exist_ok=True)
    backbone = create_backbone(args.model, device=args.device, batch_size=args.batch_size, precision=args.precision)
    _attach_cache(backbone, args)
    parser = create_parser("spacy")
    grounders, by_options = {}, {}
    for name in usable_groundings(backbone):  # choices differing only in how detections are used share a grounder
        options = GROUNDINGS[name][0]
        key = json.dumps(options, sort_keys=True)
        if key not in by_options:
            by_options[key] = create_grounder("clip", backbone, **options)
        grounders[name] = by_options[key]

    def comclip(config: Config) -> ComCLIP:
        return ComCLIP(backbone, parser=parser, grounder=grounders[config.grounding], **config.pipeline_options())

    configs = [c for c in grid(args.grid) if c.grounding in grounders]
    clip_dev = evaluate(dev, "clip", clip_scorer(backbone), seed=args.seed)
    results = []
    for n, config in enumerate(configs, start=1):
        model = comclip(config)
        summary = evaluate(dev, config.name, comclip_scorer(model), seed=args.seed)
        results.append(DevResult(config, summary, criterion(summary)))
        log.info("[%d/%d] %s: %.2f (%.2f)", n, len(configs), config.name, *results[-1].score)
    best = max(results, key=lambda r: r.score)  # first of equals: grid order is the tie-break
    (out / "dev.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in results), encoding="utf-8")

    faithful = Config()
    chosen = {"clip": None, f"comclip (paper): {faithful.name}": faithful, f"best on dev: {best.config.name}": best.config}
    scorers, run_configs = {}, {}
    for label, config in chosen.items():
        if config is None:
            scorers[label], run_configs[label] = clip_scorer(backbone), {"model": backbone.name}
        else:
            model = comclip(config)
            scorers[label] = comclip_scorer(model)
            run_configs[label] = {**model.config(), "grounding": config.grounding}
    test_dir = out / "test"
    (test_dir / runner.PER_EXAMPLE).unlink(missing_ok=True)  # the test run is recomputed with the chosen config
    test_results = runner.run(test, scorers, test_dir, progress=False)
    extra = {"chosen_on": {"split": dev.split, "criterion": "macro mean over subsets of the headline metric "
                           "(group for Winoground-kind data, else accuracy); ties: pairwise accuracy", "config": best.config.name}}
    if args.dataset == "sandbox":
        oracle = OracleGrounder([s for ex in test.examples for s in ex.scenes])
        by_head = {}  # the measure queries shapes and takes the top box: one row per distinct grounder
        for name, g in grounders.items():
            if g not in by_head.values():
                by_head[name] = g
        extra["grounding"] = grounding_report({**by_head, "oracle": oracle}, test, seed=args.seed)
    runner.write_report(test, backbone.name, run_configs, test_results, test_dir, seed=args.seed, extra=extra)

    dev_table = _dev_table(clip_dev, results)
    (out / "dev.md").write_text(f"# Ablation on {dev.name} ({dev.split}), model `{backbone.name}`\n\n"
                                f"Criterion: {extra['chosen_on']['criterion']}.\n\n{dev_table}\n", encoding="utf-8")
    summary = {"dataset": dev.name, "dev_split": dev.split, "test_split": test.split, "model": backbone.name,
               "grid": args.grid, "n_configs": len(configs), "best": best.to_dict(),
               "clip_dev": {"criterion": list(criterion(clip_dev)), "metrics": clip_dev["metrics"]},
               "test_report": str(test_dir / "report.json")}
    (out / "ablation.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"Best on {dev.split}: {best.config.name} (criterion {best.score[0]:.2f}; CLIP {criterion(clip_dev)[0]:.2f})\n")
    print((test_dir / "report.md").read_text(encoding="utf-8"))
    print(f"wrote {out / 'dev.md'}, {out / 'ablation.json'} and {test_dir / 'report.md'}", file=sys.stderr)
    return 0


def _dev_table(clip_dev: dict, results) -> str:
    from .eval.ablation import criterion

    subsets = sorted({s for r in results for s in r.summary["subsets"]})
    lines = ["| rank | configuration | criterion | " + " | ".join(subsets) + " |", "|---" * (3 + len(subsets)) + "|"]

    def cells(summary):
        from .eval.ablation import headline_metric

        main = headline_metric(summary) if summary["metrics"] else None
        return [f"{summary['subsets'][s][main]['value']:.1f}" if main and s in summary["subsets"] else "-" for s in subsets]

    lines.append(f"| - | clip | {criterion(clip_dev)[0]:.2f} | " + " | ".join(cells(clip_dev)) + " |")
    for rank, r in enumerate(sorted(results, key=lambda r: r.score, reverse=True), start=1):
        lines.append(f"| {rank} | {r.config.name} | {r.score[0]:.2f} | " + " | ".join(cells(r.summary)) + " |")
    return "\n".join(lines)


def register(sub) -> None:
    from .eval.datasets import DATASETS

    p = sub.add_parser("ablate", help="choose a ComCLIP configuration on a dev split/seed, report it on another")
    p.add_argument("dataset", choices=sorted(DATASETS))
    p.add_argument("--data", default=None, help="dev split file (datasets read from files)")
    p.add_argument("--test-data", default=None, help="test split file (datasets read from files)")
    p.add_argument("--image-dir", default=None)
    p.add_argument("--task", default=None, help="sandbox tasks (comma-separated; default all)")
    p.add_argument("--n", type=int, default=100, help="sandbox: pairs per task (default: 100)")
    p.add_argument("--dev-seed", type=int, default=100, help="sandbox seed the choice is made on (default: 100)")
    p.add_argument("--test-seed", type=int, default=200, help="sandbox seed the result is reported on (default: 200)")
    p.add_argument("--grid", default="full", choices=["full", "small"], help="configurations to try (default: full)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.add_argument("--out", default=None, help="output folder (default: results/ablate_DATASET)")
    p.add_argument("--force", action="store_true", help="overwrite an earlier ablation in --out")
    _add_model_options(p)
    _add_cache_options(p)
    p.set_defaults(func=_cmd_ablate, model="comclip/sandbox")
