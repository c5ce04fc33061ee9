"""``comclip methods``: the named methods (``--method``) and what each one sets."""

from __future__ import annotations

import argparse

from comclip.cli.options import print_json


def run(args: argparse.Namespace) -> int:
    from comclip.methods import METHODS

    described = [method.describe() for method in METHODS.values()]
    if args.json:
        print_json(described)
        return 0
    for entry in described:
        print(f"{entry['name']}: {entry['description']}")
        for name, value in entry.get("changes", {}).items():
            reason = entry["reasons"].get(name, "")
            print(f"    {name} = {value}" + (f"  ({reason})" if reason else ""))
        if "reasons" in entry:
            for name in entry["reasons"].keys() - entry["changes"].keys():  # set only over some models' defaults
                print(f"    {name}: {entry['reasons'][name]}")
    print("\nA method's settings go over the model's defaults (comclip.json); options you pass go over both.")
    return 0


#: The command's name and its line in ``comclip --help``.
NAME, HELP = "methods", "list the named methods (--method) and what each sets"


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP)
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=run)
