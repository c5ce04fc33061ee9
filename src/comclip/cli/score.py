"""``comclip score``: CLIP (and ComCLIP) scores of captions against images."""

from __future__ import annotations

import argparse

from comclip.cli.options import (
    add_model_options,
    add_pipeline_options,
    create_model,
    method_help,
    method_pipelines,
    parse_methods,
    print_json,
)
from comclip.errors import InputError


def _split_inputs(args: argparse.Namespace) -> tuple[list, list[str]]:
    from comclip.imaging.files import expand_image_paths

    positional = list(args.inputs)
    images = list(args.image or [])
    if not images:
        if len(positional) < 2:
            raise InputError("score needs an image and at least one caption: comclip score IMAGE TEXT [TEXT ...]")
        images, positional = [positional[0]], positional[1:]
    if not positional:
        raise InputError("score needs at least one caption")
    return expand_image_paths(images), positional


def run(args: argparse.Namespace) -> int:
    from comclip.imaging.files import load_image
    from comclip.pipeline import ComCLIP
    from comclip.results import score_row
    from comclip.text import validate_captions

    methods = parse_methods(args.method)
    image_paths, texts = _split_inputs(args)
    texts = validate_captions(texts)
    images = [load_image(p) for p in image_paths]  # fail fast on a bad file, before loading a model
    method_pipelines(args, methods)  # bad options are found before the model loads too
    backbone = create_model(args)
    clip = backbone.similarity([im.image for im in images], texts)
    details = {
        name: ComCLIP(backbone, config).score_details(images, texts)
        for name, config in method_pipelines(args, methods, backbone).items()
        if config is not None
    }
    rows = [
        [
            score_row(
                texts[j], float(clip[i, j]), backbone.logit_scale, methods, {m: d[i][j] for m, d in details.items()}, args.details
            )
            for j in range(len(texts))
        ]
        for i in range(len(images))
    ]
    names = [im.source for im in images]
    if args.json:
        if len(images) == 1:
            print_json({"model": backbone.name, "image": names[0], "results": rows[0]})
        else:
            print_json(
                {
                    "model": backbone.name,
                    "images": names,
                    "texts": texts,
                    "results": [{"image": name, "results": row} for name, row in zip(names, rows)],
                }
            )
        return 0
    for name, row in zip(names, rows):
        print(f"{name}  (model {backbone.name})")
        for result in row:
            cells = [f"{key} {result[key]:8.4f}" for key in ("clip", "clip_logit", *details) if key in result]
            print(f"  {'  '.join(cells)}  {result['text']}")
    return 0


#: The command's name and its line in ``comclip --help``.
NAME, HELP = "score", "score captions against images with CLIP (and ComCLIP)"


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP)
    p.add_argument(
        "inputs", nargs="*", metavar="IMAGE TEXT", help="an image (file or folder) then captions; with --image, only captions"
    )
    p.add_argument("--image", "-i", action="append", help="an image file or folder; repeat for several (gives a matrix)")
    add_model_options(p)
    p.add_argument("--method", default="clip", help=method_help("clip"))
    p.add_argument(
        "--details", action="store_true", help="with a composed method (comclip, comclip-plus), include the parts of each score"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_pipeline_options(p)
    p.set_defaults(func=run)
