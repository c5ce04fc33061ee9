"""The ``comclip`` command line: one program, one subcommand per job.

Each subcommand lives in a ``_cmd_*`` function registered in :func:`build_parser`. Errors
meant for users (:class:`~comclip.errors.ComclipError`) print one line and exit 2 for bad
input, 1 otherwise; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Sequence

from .errors import ComclipError, InputError

PROG = "comclip"


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    from .backbones import DEFAULT_MODEL

    parser.add_argument("--model", "-m", default=DEFAULT_MODEL,
                        help=f"registered name, hf-hub:ORG/NAME, open_clip:ARCH/PRETRAINED or a local model directory (default: {DEFAULT_MODEL})")
    parser.add_argument("--batch-size", type=int, default=32, help="images or texts encoded per forward pass (default: 32)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cuda when available, else cpu)")
    parser.add_argument("--precision", default="fp32",
                        help="fp32, or amp_bf16 / amp_fp16 (CUDA) to encode under autocast, faster where the "
                             "hardware has it; cosines move by about 1e-3 (default: fp32)")


def _add_cache_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", default=None, metavar="PATH",
                        help="embedding cache file (default: $COMCLIP_CACHE/embeddings.sqlite, ~/.cache/comclip)")
    parser.add_argument("--no-cache", action="store_true", help="encode everything afresh and store nothing")


def _attach_cache(backbone, args: argparse.Namespace) -> None:
    """Give the backbone the persistent embedding cache the options ask for (on by default)."""
    if getattr(args, "no_cache", False):
        return
    from .cache import SQLiteCache, default_cache_path

    backbone.cache = SQLiteCache(args.cache or default_cache_path())


# --- models --------------------------------------------------------------------------
def _cmd_models(args: argparse.Namespace) -> int:
    from .backbones import registered_models

    entries = registered_models().values()
    if args.json:
        _print_json([
            {"name": e.name, "backend": e.backend, "source": e.source, "extra": e.extra,
             "available": e.available, "description": e.description}
            for e in entries
        ])
        return 0
    width = max(len(e.name) for e in entries)
    print(f"{'name':<{width}}  {'backend':<9}  {'needs':<33}  description")
    for e in entries:
        needs = "-" if e.extra is None else f"pip install 'comclip[{e.extra}]'"
        if e.extra is not None and e.available:
            needs = f"[{e.extra}] (installed)"
        print(f"{e.name:<{width}}  {e.backend:<9}  {needs:<33}  {e.description}")
    print("\nAlso accepted: hf-hub:ORG/NAME (any transformers dual encoder), open_clip:ARCH/PRETRAINED "
          "(PRETRAINED may be a checkpoint path), or the path of a local model directory.")
    return 0


# --- score ---------------------------------------------------------------------------
def _split_score_args(args: argparse.Namespace) -> tuple[list, list[str]]:
    from .images import expand_image_paths

    positional = list(args.inputs)
    images = list(args.image or [])
    if not images:
        if len(positional) < 2:
            raise InputError("score needs an image and at least one caption: comclip score IMAGE TEXT [TEXT ...]")
        images, positional = [positional[0]], positional[1:]
    if not positional:
        raise InputError("score needs at least one caption")
    return expand_image_paths(images), positional


def _parse_methods(value: str) -> list[str]:
    methods = [m.strip() for m in value.split(",") if m.strip()]
    unknown = [m for m in methods if m not in ("clip", "comclip")]
    if unknown or not methods:
        raise InputError(f"--method takes clip, comclip or clip,comclip; got {value!r}")
    return methods


def _cmd_score(args: argparse.Namespace) -> int:
    from .backbones import create_backbone
    from .images import load_image
    from .text import validate_captions

    methods = _parse_methods(args.method)
    image_paths, texts = _split_score_args(args)
    texts = validate_captions(texts)
    images = [load_image(p) for p in image_paths]  # fail fast on a bad file, before loading a model
    backbone = create_backbone(args.model, device=args.device, batch_size=args.batch_size, precision=args.precision)
    clip = backbone.encode_images([im.image for im in images]) @ backbone.encode_texts(texts).T
    comclip_results = None
    if "comclip" in methods:
        from .pipeline import ComCLIP

        scorer = ComCLIP.from_backbone(backbone, **_pipeline_kwargs(args))
        comclip_results = scorer.score_details(images, texts)  # one batched pass over all pairs

    names = [im.source for im in images]
    scale = backbone.logit_scale

    def result(i: int, j: int) -> dict:
        row = {"text": texts[j]}
        if "clip" in methods:
            row["clip"] = float(clip[i, j])
            row["clip_logit"] = float(clip[i, j]) * scale
        if comclip_results is not None:
            parts = comclip_results[i][j]
            row["comclip"] = parts.score
            if args.details:
                row["details"] = parts.to_dict()
        return row

    if args.json:
        if len(images) == 1:
            _print_json({"model": backbone.name, "image": names[0], "results": [result(0, j) for j in range(len(texts))]})
        else:
            _print_json({
                "model": backbone.name,
                "images": names,
                "texts": texts,
                "results": [{"image": names[i], "results": [result(i, j) for j in range(len(texts))]} for i in range(len(images))],
            })
        return 0
    for i, name in enumerate(names):
        print(f"{name}  (model {backbone.name})")
        for j in range(len(texts)):
            row = result(i, j)
            cells = [f"{key} {row[key]:8.4f}" for key in ("clip", "clip_logit", "comclip") if key in row]
            print(f"  {'  '.join(cells)}  {texts[j]}")
    return 0


def _add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parser", default="spacy", help="caption parser: spacy (default), llm or given")
    parser.add_argument("--grounder", default="clip", help="entity grounder: clip (default), regions, owlv2, grounding-dino")
    parser.add_argument("--weighting", default="sum", choices=["sum", "softmax"],
                        help="sub-image weights: sum (the authors' code, s_i / sum s_j) or softmax (the paper)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="softmax temperature on cosines (default: 1 / the model's logit scale)")
    parser.add_argument("--fill", default="black", choices=["black", "blur", "mean", "crop"],
                        help="what replaces pixels outside an entity's box (default: black, as in the paper)")
    parser.add_argument("--regions", default=None, help="for --grounder regions: a JSON file or a folder of <image stem>.json")
    parser.add_argument("--score", default="comclip", choices=["comclip", "evidence", "evidence-min"],
                        help="score mode: comclip (the paper, default), evidence (+ lambda * mean entity cosine), "
                             "evidence-min (+ lambda * weakest entity cosine)")
    parser.add_argument("--evidence-weight", type=float, default=1.0, help="lambda of the evidence modes (default: 1)")
    parser.add_argument("--evidence-relations", action="store_true", help="evidence modes also pool the relations' cosines")
    parser.add_argument("--ground-by", default="head", choices=["head", "phrase"],
                        help="ground each entity by its head noun (default, as the paper) or its whole phrase")
    parser.add_argument("--union-margin", type=float, default=None,
                        help="ground an entity to the union of all boxes scoring within this margin of the top (default: top box only)")
    parser.add_argument("--proposals", default=None, choices=["grid", "segments", "grid+segments"],
                        help="clip grounder's candidate regions (default: the model's, else grid)")
    parser.add_argument("--region", default=None, choices=["crop", "mask", "patches"],
                        help="clip grounder scores candidates from patch tokens, crops or masks (default: the model's, else patches for CLIP ViTs, else crop)")


def _pipeline_kwargs(args: argparse.Namespace) -> dict:
    return {
        "parser": getattr(args, "parser", "spacy"),
        "grounder": getattr(args, "grounder", "clip"),
        "weighting": getattr(args, "weighting", "sum"),
        "temperature": getattr(args, "temperature", None),
        "fill": getattr(args, "fill", "black"),
        "grounder_options": _grounder_options(args),
        "score_mode": getattr(args, "score", "comclip"),
        "evidence_weight": getattr(args, "evidence_weight", 1.0),
        "evidence_relations": getattr(args, "evidence_relations", False),
        "ground_by": getattr(args, "ground_by", "head"),
        "union_margin": getattr(args, "union_margin", None),
    }


def _grounder_options(args: argparse.Namespace) -> dict:
    grounder = getattr(args, "grounder", "clip")
    if grounder == "regions" and getattr(args, "regions", None):
        return {"regions": args.regions}
    if grounder == "clip":
        return {k: v for k in ("proposals", "region") if (v := getattr(args, k, None))}
    return {}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog=PROG, description="Training-free compositional image-text matching (ComCLIP).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("models", help="list registered backbones and the extras they need")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("score", help="score captions against images with CLIP (and ComCLIP)")
    p.add_argument("inputs", nargs="*", metavar="IMAGE TEXT", help="an image (file or folder) then captions; with --image, only captions")
    p.add_argument("--image", "-i", action="append", help="an image file or folder; repeat for several (gives a matrix)")
    _add_model_options(p)
    p.add_argument("--method", default="clip", help="clip, comclip or clip,comclip (default: clip)")
    p.add_argument("--details", action="store_true", help="with comclip, include the parts of each score")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_pipeline_options(p)
    p.set_defaults(func=_cmd_score)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands() -> list:
    """Functions ``(subparsers) -> None`` adding the subcommands kept in their own modules."""
    from . import cli_ablate, cli_demo, cli_eval, cli_pipeline, cli_sandbox

    return [cli_pipeline.register, cli_eval.register, cli_ablate.register, cli_sandbox.register, cli_demo.register]


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``comclip`` console script."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except ComclipError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `comclip score ... | head`
        return 0
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
