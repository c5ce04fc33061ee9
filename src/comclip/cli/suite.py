"""``comclip suite FILE.toml``: several datasets and models in one command, one combined table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .options import DEFAULT_WORKERS, add_cache_options, count, create_model, log_to_stderr, run_in_world


def run(args: argparse.Namespace) -> int:
    return run_in_world(args, _suite)


def _suite(args: argparse.Namespace, world) -> int:
    from ..eval.suite import open_datasets, read_suite
    from ..eval.suite_run import SUITE_MD, run_suite

    log_to_stderr()
    cells = read_suite(args.file, args.only)
    if args.dry_run:
        return _dry_run(cells, Path(args.out))
    out = Path(args.out)
    datasets = open_datasets(cells)  # each read once, before any model loads
    _check_folders(cells, out, args.resume, world)
    args.interrupted_hint = f"each finished cell is kept in {out}: run the same command with --resume to continue"
    combined = run_suite(
        cells,
        datasets,
        out,
        lambda model: _backbone(args, model, world),
        resume=args.resume,
        n_bootstrap=args.bootstrap,
        workers=args.workers,
        world=world,
    )
    if combined is not None:
        print((out / SUITE_MD).read_text(encoding="utf-8"))
        print(f"wrote {out / SUITE_MD}, suite.csv, suite.json and one folder per cell", file=sys.stderr)
    return 0


def _dry_run(cells, out: Path) -> int:
    """The cells and their folders, then one line per dataset; exit 2 where any has a problem."""
    from ..eval.suite import check_cells

    for cell in cells:
        print(f"cell: {cell.name} -> {cell.folder(out).name} ({', '.join(cell.entry.methods)})")
    checked = check_cells(cells)
    print("\n".join(checked))
    return 2 if any(line.startswith("problem:") for line in checked) else 0


def _check_folders(cells, out: Path, resume: bool, world) -> None:
    """Every cell's folder checked before any model loads: no other run holds it, and without
    ``--resume`` it holds no results."""
    from ..eval.store import check_folder, make_folder

    if world.main:
        make_folder(out)
        for cell in cells:
            check_folder(cell.folder(out), resume)


def _backbone(args: argparse.Namespace, model: str, world):
    from ..eval.distributed import join

    args.model = model
    backbone = create_model(args)
    join(world, backbone.device.type)
    return backbone


def register(sub) -> None:
    p = sub.add_parser("suite", help="several datasets and models in one command, one combined table (a TOML suite)")
    p.add_argument("file", help="the suite: models, methods and [[datasets]] tables (see suites/paper.toml)")
    p.add_argument(
        "--out", default="results/suite", help="folder of the cells' folders and the combined files (default: results/suite)"
    )
    p.add_argument("--resume", action="store_true", help="continue a killed suite: finished cells are read back")
    p.add_argument("--dry-run", action="store_true", help="list the cells and check every dataset's files; load no model")
    p.add_argument(
        "--only", default=None, metavar="PATTERN", help="only the cells whose DATASET/MODEL matches this shell pattern"
    )
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--batch-size", type=count(1), default=32, help="images or texts encoded per forward pass (default: 32)")
    p.add_argument("--precision", default="fp32", help="fp32, amp_bf16 or amp_fp16 (default: fp32)")
    p.add_argument("--pixels", default="torch", choices=("torch", "pil"), help="the pixel path (default: torch)")
    add_cache_options(p)
    p.add_argument("--bootstrap", type=count(0), default=1000, help="bootstrap resamples of the intervals (default: 1000)")
    p.add_argument(
        "--workers", type=count(0), default=DEFAULT_WORKERS, help=f"image-decoding processes (default: {DEFAULT_WORKERS})"
    )
    p.set_defaults(func=run)
