"""Subcommands of the ComCLIP pipeline: ``parse`` and ``explain``."""

from __future__ import annotations

import argparse
import sys

from .cli import _add_model_options, _add_pipeline_options, _pipeline_kwargs, _print_json
from .errors import InputError


def _cmd_parse(args: argparse.Namespace) -> int:
    from .parsing import create_parser
    from .text import validate_captions

    options = {}
    if args.parser == "llm":
        options = {k: v for k, v in {"base_url": args.llm_base_url, "model": args.llm_model}.items() if v}
    if args.parser == "given":
        raise InputError("the given parser takes scene graphs from a dataset; it has nothing to parse on the command line")
    parser = create_parser(args.parser, **options)
    texts = validate_captions(args.texts)
    failures = 0
    for text in texts:
        try:
            graph = parser.parse(text)
        except InputError as exc:  # a ParseError: report it for this caption, go on with the others
            failures += 1
            print(f"comclip: error: {exc}", file=sys.stderr)
            if args.json:
                _print_json({"text": text, "error": str(exc)})
            continue
        if args.json:
            _print_json(graph.to_dict())
        else:
            print(text)
            for e in graph.entities:
                attrs = f"  attributes: {', '.join(e.attributes)}" if e.attributes else ""
                print(f"  [{e.id}] {e.phrase}  (head: {e.head}){attrs}")
            for r in graph.relations:
                print(f"  [{r.subject}] --{r.predicate}--> [{r.object}]")
    return 1 if failures else 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from .images import load_image
    from .pipeline import ComCLIP

    if not args.out and not args.json:
        raise InputError("explain needs --out FIG.png, --json, or both")
    image = load_image(args.image)
    model = ComCLIP.from_pretrained(args.model, device=args.device, batch_size=args.batch_size, precision=args.precision, **_pipeline_kwargs(args))
    result = model.explain(image, args.text)
    if args.out:
        from .explain import draw_explanation

        path = draw_explanation(result, image.image, args.out, fill=model.fill)
        print(f"wrote {path}", file=sys.stderr)
    if args.json:
        _print_json({"model": model.backbone.name, "config": model.config(), **result.to_dict()})
    else:
        print(f"CLIP {result.clip:.4f}  ComCLIP {result.score:.4f}  {args.text}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("parse", help="parse captions into scene graphs (entities and relations)")
    p.add_argument("texts", nargs="+", metavar="TEXT")
    p.add_argument("--parser", default="spacy", help="spacy (default) or llm")
    p.add_argument("--llm-base-url", default=None, help="OpenAI-compatible endpoint for --parser llm (or COMCLIP_LLM_BASE_URL)")
    p.add_argument("--llm-model", default=None, help="chat model for --parser llm (or COMCLIP_LLM_MODEL)")
    p.add_argument("--json", action="store_true", help="one JSON object per caption, one per line")
    p.set_defaults(func=_cmd_parse)

    p = sub.add_parser("explain", help="show how ComCLIP scored one image-caption pair")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("text", metavar="TEXT")
    _add_model_options(p)
    _add_pipeline_options(p)
    p.add_argument("--out", "-o", default=None, help="write the figure to this PNG file")
    p.add_argument("--json", action="store_true", help="print the parts as JSON")
    p.set_defaults(func=_cmd_explain)
