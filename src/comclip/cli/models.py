"""``comclip models``: the registered backbones and the extras they need."""

from __future__ import annotations

import argparse

from comclip.cli.options import print_json


def run(args: argparse.Namespace) -> int:
    from comclip.backbones import registered_models

    entries = registered_models().values()
    if args.json:
        print_json(
            [
                {
                    "name": e.name,
                    "backend": e.backend,
                    "source": e.source,
                    "extra": e.extra,
                    "available": e.available,
                    "description": e.description,
                    "pattern": False,
                }
                for e in entries
            ]
            + [{**family, "pattern": True} for family in families()]
        )
        return 0
    width = max(len(e.name) for e in entries)
    print(f"{'name':<{width}}  {'backend':<9}  {'needs':<33}  description")
    for e in entries:
        print(f"{e.name:<{width}}  {e.backend:<9}  {_needs({'extra': e.extra, 'available': e.available}):<33}  {e.description}")
    print("\nEvery family comclip loads, by how a model of it is named:")
    width = max(len(f["name"]) for f in families())
    for family in families():
        print(f"{family['name']:<{width}}  {family['backend']:<9}  {_needs(family):<33}  {family['description']}")
    return 0


def families() -> list[dict]:
    """Each backbone family as a listing entry: the name pattern, what it needs, what it is."""
    from comclip.backbones.factory import BACKENDS, backend_available

    return [
        {
            "name": b.pattern,
            "backend": b.name,
            "source": b.pattern,
            "extra": b.extra,
            "available": backend_available(b.name),
            "description": b.description,
        }
        for b in BACKENDS.values()
    ]


def _needs(entry: dict) -> str:
    if entry["extra"] is None:
        return "-"
    return (
        f"[{entry['extra']}] (installed)"
        if entry["available"]
        else f"pip install -c constraints/cpu.txt 'comclip[{entry['extra']}]'"
    )


#: The command's name and its line in ``comclip --help``.
NAME, HELP = "models", "list registered backbones and the extras they need"


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP)
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=run)
