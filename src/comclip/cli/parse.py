"""``comclip parse``: captions as scene graphs (entities and relations)."""

from __future__ import annotations

import argparse
import sys

from comclip.cli.options import print_json
from comclip.errors import InputError


def run(args: argparse.Namespace) -> int:
    from comclip.parsing import create_parser
    from comclip.text import validate_captions

    if args.parser == "given":
        raise InputError("the given parser takes scene graphs from a dataset; it has nothing to parse on the command line")
    options = {}
    if args.parser == "llm":
        options = {k: v for k, v in {"base_url": args.llm_base_url, "model": args.llm_model}.items() if v}
    parser = create_parser(args.parser, **options)
    failures = 0
    for text in validate_captions(args.texts):
        try:
            graph = parser.parse(text)
        except InputError as exc:  # a ParseError: report it for this caption, go on with the others
            failures += 1
            print(f"comclip: error: {exc}", file=sys.stderr)
            if args.json:
                print_json({"text": text, "error": str(exc)})
            continue
        if args.json:
            print_json(graph.to_dict())
        else:
            _print_graph(text, graph)
    return 1 if failures else 0


def _print_graph(text: str, graph) -> None:
    print(text)
    for e in graph.entities:
        attrs = f"  attributes: {', '.join(e.attributes)}" if e.attributes else ""
        print(f"  [{e.id}] {e.phrase}  (head: {e.head}){attrs}")
    for r in graph.relations:
        print(f"  [{r.subject}] --{r.predicate}--> [{r.object}]")


#: The command's name and its line in ``comclip --help``.
NAME, HELP = "parse", "parse captions into scene graphs (entities and relations)"


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP)
    p.add_argument("texts", nargs="+", metavar="TEXT")
    p.add_argument("--parser", default="spacy", help="spacy (default) or llm")
    p.add_argument("--llm-base-url", default=None, help="OpenAI-compatible endpoint for --parser llm (or COMCLIP_LLM_BASE_URL)")
    p.add_argument("--llm-model", default=None, help="chat model for --parser llm (or COMCLIP_LLM_MODEL)")
    p.add_argument("--json", action="store_true", help="one JSON object per caption, one per line")
    p.set_defaults(func=run)
