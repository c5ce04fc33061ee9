"""``comclip index build|add|info``: make, extend and describe a search index (see :mod:`comclip.search`)."""

from __future__ import annotations

import argparse
import sys

from comclip.cli.options import add_model_options, add_pipeline_options, count, pipeline_options, print_json, run_in_world


def run(args: argparse.Namespace) -> int:
    return {"build": _build, "add": _add, "info": _info}[args.action](args)


def _build(args: argparse.Namespace) -> int:
    from comclip.methods import parse_methods
    from comclip.search import Index
    from comclip.search.build import check_folder
    from comclip.world import world_from_env

    methods = parse_methods(args.method)
    if world_from_env().main:
        check_folder(args.out, args.resume)  # before the model loads

    def body(args: argparse.Namespace, world) -> int:
        index = Index.build(
            args.sources,
            args.out,
            args.model,
            methods=methods,
            options=pipeline_options(args),
            union_cap=args.union_cap,
            dtype="float16" if args.float16 else "float32",
            faiss=args.faiss,
            part_size=args.part_size,
            resume=args.resume,
            progress=not args.quiet,
            world=world,
            device=args.device,
            batch_size=args.batch_size,
            precision=args.precision,
            pixels=args.pixels,
        )
        if world.main:
            _said(index, f"indexed {len(index)} images into {args.out}")
        return 0

    return run_in_world(args, body)


def _add(args: argparse.Namespace) -> int:
    from comclip.search import Index

    def body(args: argparse.Namespace, world) -> int:
        index = Index.open(args.index, device=args.device, batch_size=args.batch_size)
        before = len(index)
        known = index.add(args.sources, progress=not args.quiet, world=world)
        if world.main:
            _said(index, f"added {len(index) - before} images to {args.index} ({known} already indexed); it holds {len(index)}")
        return 0

    return run_in_world(args, body)


def _said(index, headline: str) -> None:
    skipped = index.skipped()
    print(headline + (f"; {len(skipped)} files skipped (comclip index info lists them)" if skipped else ""), file=sys.stderr)
    for record in skipped[:5]:
        print(f"  skipped {record['path']}: {record['skipped']}", file=sys.stderr)


def _info(args: argparse.Namespace) -> int:
    from comclip.search.index import describe

    info = describe(args.index)
    if args.json:
        print_json(info)
        return 0
    ident, skipped = info["identity"], info["skipped_files"]
    state = "" if info.get("complete") else " (build not finished: index build --resume continues it)"
    print(f"{args.index}: {info['indexed']} images indexed, {len(skipped)} skipped; model {ident['model']}{state}")
    print(
        f"  methods {', '.join(ident['methods'])}; faiss {ident['faiss']}; {ident['dtype']}; union cap {ident['side']['union_cap']}"
    )
    print(f"  {info['bytes'] / 1e6:.1f} MB on disk, {info['bytes_per_image'] or 0:.0f} bytes per image")
    for record in skipped:
        print(f"  skipped {record['path']}: {record['skipped']}")
    return 0


#: The command's name and its line in ``comclip --help``.
NAME, HELP = "index", "build, extend or describe a search index of an image collection"


def register(sub) -> None:
    from comclip.search.build import DEFAULT_PART_SIZE
    from comclip.search.index import DEFAULT_METHODS
    from comclip.search.side import DEFAULT_UNION_CAP

    p = sub.add_parser(NAME, help=HELP)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    b = actions.add_parser("build", help="index the images of folders, globs or lists of paths")
    b.add_argument("sources", nargs="+", metavar="SOURCE", help="image folders (searched recursively), globs, files, .txt lists")
    b.add_argument("--out", "-o", required=True, help="the index folder (new or empty; with --resume, the build to continue)")
    b.add_argument(
        "--method", default=",".join(DEFAULT_METHODS), help="methods whose image side is stored (default: %(default)s)"
    )
    b.add_argument(
        "--union-cap", type=count(0), default=DEFAULT_UNION_CAP, help="pair sub-images stored per image (default: %(default)s)"
    )
    b.add_argument(
        "--float16", action="store_true", help="store embeddings as float16 (half the bytes; scores move by about 1e-3)"
    )
    b.add_argument(
        "--faiss", default="Flat", help="FAISS factory string of the global index, e.g. HNSW32 or IVF4096,PQ32 (default: Flat)"
    )
    b.add_argument("--part-size", type=count(1), default=DEFAULT_PART_SIZE, help="images per part written (default: %(default)s)")
    b.add_argument("--resume", action="store_true", help="continue a build of the same sources, model and settings")
    b.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_model_options(b)
    add_pipeline_options(b)
    a = actions.add_parser("add", help="index more images into an existing index (its own model and settings)")
    a.add_argument("index", metavar="DIR")
    a.add_argument("sources", nargs="+", metavar="SOURCE")
    a.add_argument("--device", default=None)
    a.add_argument("--batch-size", type=count(1), default=32)
    a.add_argument("--quiet", "-q", action="store_true")
    i = actions.add_parser("info", help="what an index holds: model, methods, counts, bytes, skipped files")
    i.add_argument("index", metavar="DIR")
    i.add_argument("--json", action="store_true")
    p.set_defaults(func=run, interrupted_hint="comclip index build --resume continues from the last part written")
