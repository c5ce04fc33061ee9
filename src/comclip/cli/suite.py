"""``comclip suite FILE.toml``: several datasets and models in one command, one combined table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from comclip.cli.options import add_cache_options, add_declared, create_model, given, log_to_stderr, run_in_world


def run(args: argparse.Namespace) -> int:
    return run_in_world(args, _suite)


def _suite(args: argparse.Namespace, world) -> int:
    from comclip.declared import command_defaults
    from comclip.eval.experiments.suite import open_datasets, read_suite
    from comclip.eval.experiments.suite_run import SUITE_MD, check_cell_folders, run_suite, suite_folder
    from comclip.eval.runs.options import EvalOptions

    log_to_stderr()
    suite_cells = read_suite(args.file, data_root=args.data_root)
    cells = read_suite(args.file, args.only, args.data_root)
    if args.dry_run:
        return _dry_run(cells, Path(args.out))
    out = Path(args.out)
    datasets = open_datasets(cells)  # each read once, before any model loads
    args.interrupted_hint = f"each finished cell is kept in {out}: run the same command with --resume to continue"
    with suite_folder(out, suite_cells, args.resume, world):
        check_cell_folders(cells, out, args.resume, world)
        combined = run_suite(
            cells,
            datasets,
            out,
            lambda model: _backbone(args, model, world),
            resume=args.resume,
            options=given(args, EvalOptions),
            defaults=command_defaults(EvalOptions),
            world=world,
            suite_cells=suite_cells,
        )
    if combined is None:  # another process writes the tables
        return 0
    print((out / SUITE_MD).read_text(encoding="utf-8"))
    print(f"wrote {out / SUITE_MD}, suite.csv, suite.json and one folder per cell", file=sys.stderr)
    unscored = [f"{r['dataset']} / {r['model']} / {r['method']}" for r in combined["rows"] if not r["n_scored"]]
    for line in unscored:  # as eval says of a method that scored nothing, and exits 1
        print(f"comclip: error: {line} scored no example (its cell's report.md gives the reasons)", file=sys.stderr)
    return 1 if unscored else 0


def _dry_run(cells, out: Path) -> int:
    """The cells and their folders, then one line per dataset; exit 2 where any has a problem."""
    from comclip.eval.experiments.suite import check_cells

    for cell in cells:
        print(f"cell: {cell.name} -> {cell.folder(out).name} ({', '.join(cell.entry.methods)})")
    checked = check_cells(cells)
    print("\n".join(checked))
    return 2 if any(line.startswith("problem:") for line in checked) else 0


def _backbone(args: argparse.Namespace, model: str, world):
    from comclip.eval.runs.process_group import join

    args.model = model
    backbone = create_model(args)
    join(world, backbone.device.type)
    return backbone


#: The command's name and its line in ``comclip --help``.
NAME, HELP = "suite", "several datasets and models in one command, one combined table (a TOML suite)"


def register(sub) -> None:
    from comclip.backbones.runtime import RuntimeOptions
    from comclip.eval.runs.options import EvalOptions

    p = sub.add_parser(NAME, help=HELP)
    p.add_argument("file", help="the suite: models, methods and [[datasets]] tables (see suites/paper.toml)")
    p.add_argument(
        "--out", default="results/suite", help="folder of the cells' folders and the combined files (default: results/suite)"
    )
    p.add_argument("--resume", action="store_true", help="continue a killed suite: finished cells are read back")
    p.add_argument("--dry-run", action="store_true", help="list the cells and check every dataset's files; load no model")
    p.add_argument(
        "--only", default=None, metavar="PATTERN", help="only the cells whose DATASET/MODEL matches this shell pattern"
    )
    p.add_argument(
        "--data-root",
        default=None,
        metavar="DIR",
        help="read the suite's relative data and image_dir paths under DIR (default: the file's data_root, "
        "relative to the file, else the current folder)",
    )
    add_declared(p, RuntimeOptions())
    add_cache_options(p)
    add_declared(p, EvalOptions(), suppress=True)  # given, a flag wins over the suite file
    p.set_defaults(func=run)
