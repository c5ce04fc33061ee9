"""``comclip report``: several evaluation runs side by side."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from ..eval.compare import bar_charts, comparison_table, load_reports

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


def register(sub) -> None:
    p = sub.add_parser("report", help="put several evaluation runs side by side (markdown table, bar charts)")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="output folders of comclip eval (or report.json files)")
    p.add_argument("--out", default=None, help="folder for comparison.md and one PNG chart per dataset")
    p.set_defaults(func=run)
