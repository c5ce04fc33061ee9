"""``comclip app``: the web app (Gradio) over one backbone loaded at start."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from pathlib import Path

from comclip.cli.options import (
    add_cache_options,
    add_model_options,
    add_pipeline_options,
    count,
    create_model,
    open_cache,
    pipeline_config,
    pipeline_options,
)


def run(args: argparse.Namespace) -> int:
    from comclip.app import AppSession, bundled_examples
    from comclip.app.page import build_page, check_port, examples_folder, import_gradio, serve
    from comclip.backbones import DEFAULT_MODEL

    with tempfile.TemporaryDirectory(prefix="comclip-app-") as work:  # private (0700), removed at exit
        # Gradio keeps uploads, their previews and served figures under GRADIO_TEMP_DIR, read when
        # it is imported; left to itself that is a folder every local user can read, kept after exit
        os.environ["GRADIO_TEMP_DIR"] = str(Path(work) / "gradio")
        import_gradio()  # a missing extra, a port in use or a bad option is found before the model loads
        check_port(args.host, args.port)
        pipeline_config(args)
        signal.signal(signal.SIGTERM, _stop)  # `kill`, systemd, docker stop: the same clean stop as Ctrl-C
        index = _open_index(args) if args.index else None
        args.model = args.model or DEFAULT_MODEL
        backbone = _with_cache(args, index.backbone) if index is not None else create_model(args)
        session = AppSession(backbone, pipeline_options(args), figures_dir=work)
        examples = bundled_examples(examples_folder(session), args.shared_data)
        page = build_page(session, examples, index)
        url = serve(page, host=args.host, port=args.port)
        try:
            print(
                f"comclip app: model {session.backbone.name}, {len(examples)} examples; serving on {url} (Ctrl-C stops)",
                file=sys.stderr,
                flush=True,
            )
            page.block_thread()  # closes the server on Ctrl-C (and SIGTERM, see _stop) and returns
        except KeyboardInterrupt:  # a stop that came before the page blocked: the same clean stop
            page.close()
    return 0


def _open_index(args: argparse.Namespace):
    """The search index of ``--index``, with its own model unless ``--model`` names it elsewhere."""
    from comclip.search import Index, settle

    overrides = {"model": args.model} if args.model else {}
    index = Index.open(args.index, device=args.device, batch_size=args.batch_size, **overrides)
    settle(index)
    return index


def _with_cache(args: argparse.Namespace, backbone):
    """The index's backbone with the cache the Score tab uses (``--cache``, ``--no-cache``)."""
    backbone.cache = open_cache(args)
    return backbone


def _stop(signum, frame) -> None:
    """SIGTERM as Ctrl-C: Gradio closes its server, and the temporary folder is removed."""
    raise KeyboardInterrupt


#: The command's name and its line in ``comclip --help``.
NAME, HELP = "app", "a web page that scores captions with CLIP and ComCLIP and shows why (Gradio)"


def register(sub) -> None:
    from comclip.backbones import DEFAULT_MODEL

    p = sub.add_parser(NAME, help=HELP)
    add_model_options(p, default_text="the --index's model, else " + DEFAULT_MODEL)
    add_cache_options(p)
    p.add_argument("--index", default=None, metavar="DIR", help="a search index (comclip index build): adds a Search tab")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=count(1), default=7860, help="port (default: 7860)")
    p.add_argument(
        "--shared-data",
        default="../shared/data",
        metavar="DIR",
        help="where SugarCrepe's COCO examples are found, if there (default: ../shared/data)",
    )
    add_pipeline_options(p)
    p.set_defaults(func=run)
