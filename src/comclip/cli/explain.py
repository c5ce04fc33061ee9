"""``comclip explain``: how ComCLIP scored one image-caption pair, as a figure and/or JSON."""

from __future__ import annotations

import argparse
import sys

from ..errors import InputError
from .options import add_model_options, add_pipeline_options, create_model, output_file, pipeline_config, print_json


def run(args: argparse.Namespace) -> int:
    from ..images import load_image
    from ..pipeline import ComCLIP
    from ..text import validate_captions

    if not args.out and not args.json:
        raise InputError("explain needs --out FIG.png, --json, or both")
    out = output_file(args.out) if args.out else None  # every input checked before the model loads
    (text,) = validate_captions([args.text])
    image = load_image(args.image)
    pipeline_config(args)
    backbone = create_model(args)
    model = ComCLIP(backbone, pipeline_config(args, backbone))
    result = model.explain(image, text)
    if out is not None:
        from ..explain import draw_explanation

        print(f"wrote {draw_explanation(result, image.image, out)}", file=sys.stderr)
    if args.json:
        print_json({"model": backbone.name, "config": model.describe(), **result.to_dict()})
    else:
        print(f"CLIP {result.clip:.4f}  ComCLIP {result.score:.4f}  {args.text}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("explain", help="show how ComCLIP scored one image-caption pair")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("text", metavar="TEXT")
    add_model_options(p)
    add_pipeline_options(p)
    p.add_argument("--out", "-o", default=None, help="write the figure to this PNG file")
    p.add_argument("--json", action="store_true", help="print the parts as JSON")
    p.set_defaults(func=run)
