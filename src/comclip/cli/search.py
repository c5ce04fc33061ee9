"""``comclip search``: the images of an index that best match each query, by CLIP and by the
composed methods re-ranking its shortlist (see :mod:`comclip.search`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from comclip.cli.options import add_cache_options, cache_timeout, count, method_help, output_file, print_json
from comclip.errors import InputError


def _queries(args: argparse.Namespace) -> list[str]:
    """The queries given as arguments, then those of ``--queries`` (one a line, blank lines skipped)."""
    queries = list(args.query)
    if args.queries:
        try:
            lines = Path(args.queries).read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the queries file {args.queries}: {exc}") from None
        queries += [line.strip() for line in lines if line.strip()]
    if not queries:
        raise InputError('search needs a query: comclip search DIR "QUERY" or --queries FILE')
    return queries


def run(args: argparse.Namespace) -> int:
    from comclip.methods import parse_methods
    from comclip.search import Index, settle
    from comclip.search.layout import read_manifest
    from comclip.text import validate_captions

    methods = parse_methods(args.method)
    queries = validate_captions(_queries(args))
    sheet = output_file(args.sheet, ".png", force=args.force) if args.sheet else None
    read_manifest(args.index)  # not an index: one line before the model loads
    keep = None
    if not args.no_cache:
        from comclip.cache.embeddings import SQLiteCache, default_cache_path

        keep = SQLiteCache(args.cache or default_cache_path(), timeout=cache_timeout())
    overrides = {"model": args.model} if args.model else {}
    index = Index.open(args.index, device=args.device, **overrides)
    settle(index)
    results = index.search(queries, top=args.top, candidates=args.candidates, method=methods, keep=keep)
    for result in results:
        if args.json:
            print_json(result.to_dict())
            continue
        print(f"{result.method}: {result.query}")
        for hit in result.hits:
            print(f"  {hit.rank:3d}  {hit.score:8.4f}  (clip {hit.clip:.4f})  {hit.image}")
    if sheet is not None:
        _draw(results, index, sheet)
    return 0


def _draw(results, index, sheet: Path) -> None:
    from comclip.explain import draw_sheet
    from comclip.imaging.files import load_image

    rows = [
        (
            f"{r.method}: {r.query}",
            [(load_image(index.record(h.row)["file"]).image, f"{h.rank}. {h.score:.3f}", h.result) for h in r.hits],
        )
        for r in results
    ]
    draw_sheet(rows, sheet)


#: The command's name and its line in ``comclip --help``.
NAME, HELP = "search", "search an index: CLIP's shortlist re-ranked by comclip-plus (or any method)"


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP)
    p.add_argument("index", metavar="DIR", help="an index folder (comclip index build)")
    p.add_argument("query", nargs="*", metavar="QUERY", help="captions to search for")
    p.add_argument("--queries", metavar="FILE", help="a text file of queries, one a line")
    p.add_argument("--top", type=count(1), default=10, help="hits shown per query and method (default: %(default)s)")
    p.add_argument("--candidates", type=count(1), default=100, help="the FAISS shortlist re-ranked (default: %(default)s)")
    p.add_argument("--method", default="clip,comclip-plus", help=method_help("clip,comclip-plus"))
    p.add_argument("--json", action="store_true", help="one JSON object per query and method")
    p.add_argument("--sheet", metavar="OUT.png", help="draw the top hits with their grounded boxes")
    p.add_argument("--force", action="store_true", help="overwrite the --sheet file")
    p.add_argument("--model", default=None, help="the index's model from another place (the same weights only)")
    p.add_argument("--device", default=None)
    add_cache_options(p)
    p.set_defaults(func=run)
