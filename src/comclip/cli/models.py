"""``comclip models``: the registered backbones and the extras they need."""

from __future__ import annotations

import argparse

from .options import print_json


def run(args: argparse.Namespace) -> int:
    from ..backbones import registered_models

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
                }
                for e in entries
            ]
        )
        return 0
    width = max(len(e.name) for e in entries)
    print(f"{'name':<{width}}  {'backend':<9}  {'needs':<33}  description")
    for e in entries:
        needs = "-" if e.extra is None else f"pip install 'comclip[{e.extra}]'"
        if e.extra is not None and e.available:
            needs = f"[{e.extra}] (installed)"
        print(f"{e.name:<{width}}  {e.backend:<9}  {needs:<33}  {e.description}")
    print(
        "\nAlso accepted: hf-hub:ORG/NAME (any transformers dual encoder), open_clip:ARCH/PRETRAINED "
        "(PRETRAINED may be a checkpoint path), or the path of a local model directory."
    )
    return 0


def register(sub) -> None:
    p = sub.add_parser("models", help="list registered backbones and the extras they need")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=run)
