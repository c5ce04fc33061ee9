"""``comclip report``: several evaluation runs side by side."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from comclip.eval.reports.compare import comparison_table, load_reports, write_comparison

    reports = load_reports(args.dirs, args.label)
    table = comparison_table(reports)
    print(table)
    if args.out:
        for path in write_comparison(reports, table, Path(args.out), force=args.force):
            print(f"wrote {path}", file=sys.stderr)
    return 0


#: The command's name and its line in ``comclip --help``.
NAME, HELP = "report", "put several evaluation runs side by side (markdown table, bar charts)"


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP)
    p.add_argument("dirs", nargs="+", metavar="DIR", help="output folders of comclip eval (or report.json files)")
    p.add_argument("--out", default=None, help="folder for comparison.md and one PNG chart per dataset")
    p.add_argument("--force", action="store_true", help="replace a comparison.md or chart already in --out")
    p.add_argument(
        "--label",
        action="append",
        default=None,
        help="a run's name in the table and charts, once per DIR in order (default: each folder's name)",
    )
    p.set_defaults(func=run)
