"""``comclip cache``: inspect or empty the persistent embedding cache."""

from __future__ import annotations

import argparse
import sys

from comclip.cli.options import cache_timeout, print_json


def run(args: argparse.Namespace) -> int:
    from comclip.cache.embeddings import SQLiteCache, default_cache_path

    cache = SQLiteCache(args.cache or default_cache_path(), timeout=cache_timeout())
    if args.action == "info":
        print_json(cache.info())
    else:
        print(f"removed {cache.clear()} embeddings from {cache.path}", file=sys.stderr)
    return 0


#: The command's name and its line in ``comclip --help``.
NAME, HELP = "cache", "inspect or empty the persistent embedding cache"


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP)
    p.add_argument("action", choices=["info", "clear"])
    p.add_argument("--cache", default=None, metavar="PATH", help="cache file (default: $COMCLIP_CACHE/embeddings.sqlite)")
    p.set_defaults(func=run)
