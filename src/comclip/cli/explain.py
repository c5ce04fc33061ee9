"""``comclip explain``: how ComCLIP scored one image-caption pair, as a figure and/or JSON."""

from __future__ import annotations

import argparse
import sys

from comclip.cli.options import (
    add_model_options,
    add_pipeline_options,
    create_model,
    method_help,
    method_pipelines,
    output_file,
    print_json,
)
from comclip.errors import InputError


def run(args: argparse.Namespace) -> int:
    from comclip.imaging.files import load_image
    from comclip.pipeline import ComCLIP
    from comclip.text import validate_captions

    if not args.out and not args.json:
        raise InputError("explain needs --out FIG.png, --json, or both")
    out = output_file(args.out, ".png", force=args.force) if args.out else None  # every input checked before the model loads
    (text,) = validate_captions([args.text])
    image = load_image(args.image)
    method = _composed_method(args.method)
    method_pipelines(args, [method])
    backbone = create_model(args)
    model = ComCLIP(backbone, method_pipelines(args, [method], backbone)[method])
    result = model.explain(image, text)
    if out is not None:
        from comclip.explain import draw_explanation

        print(f"wrote {draw_explanation(result, image.image, out, method)}", file=sys.stderr)
    if args.json:
        print_json({"model": backbone.name, "method": method, "config": model.describe(), **result.to_dict()})
    else:
        print(f"CLIP {result.clip:.4f}  {method} {result.score:.4f}  {args.text}")
    return 0


def _composed_method(value: str) -> str:
    """The one method explain shows: a composed one (not plain CLIP, which has no parts)."""
    from comclip.methods import METHODS, parse_methods

    names = parse_methods(value)
    if len(names) != 1 or not METHODS[names[0]].composed:
        raise InputError(
            f"explain shows one composed method ({', '.join(m for m in METHODS if METHODS[m].composed)}); got {value!r}"
        )
    return names[0]


#: The command's name and its line in ``comclip --help``.
NAME, HELP = "explain", "show how ComCLIP scored one image-caption pair"


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP)
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("text", metavar="TEXT")
    add_model_options(p)
    add_pipeline_options(p)
    p.add_argument("--method", default="comclip", help=method_help("comclip") + "; one composed method")
    p.add_argument("--out", "-o", default=None, help="write the figure to this PNG file")
    p.add_argument("--json", action="store_true", help="print the parts as JSON")
    p.add_argument("--force", action="store_true", help="overwrite the --out file if it exists")
    p.set_defaults(func=run)
