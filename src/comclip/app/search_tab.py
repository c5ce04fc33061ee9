"""The web app's Search tab (``comclip app --index DIR``): a query box, the top hits with
their grounded boxes, CLIP's order beside comclip-plus's, and the named endpoint ``/search``.

Every error a request meets is a message on the page; the server keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from html import escape
from typing import Any

from PIL import Image, ImageDraw

from comclip.errors import ComclipError
from comclip.imaging.files import load_image
from comclip.results import NOT_GROUNDED, ComCLIPResult

log = logging.getLogger("comclip.app")
#: The two orders the tab shows side by side.
SEARCH_METHODS = ("clip", "comclip-plus")
#: The shortlist each query re-ranks.
CANDIDATES = 100
BOX_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4")


def boxed(image: Image.Image, result: ComCLIPResult | None) -> Image.Image:
    """A copy of ``image`` with each grounded entity's box and phrase drawn (none for CLIP)."""
    out = image.convert("RGB").copy()
    if result is None:
        return out
    draw = ImageDraw.Draw(out)
    width = max(1, round(max(out.size) / 160))
    for n, part in enumerate(p for p in result.parts if p.kind == "entity" and NOT_GROUNDED not in p.flags):
        colour = BOX_COLOURS[n % len(BOX_COLOURS)]
        for box in part.boxes:
            draw.rectangle((box.x1, box.y1, box.x2 - 1, box.y2 - 1), outline=colour, width=width)
        draw.text((part.boxes[0].x1 + 2, part.boxes[0].y1 + 1), part.phrase, fill=colour)
    return out


def search_request(index: Any, query: str | None, top: float | None) -> tuple:
    """The Search button: (message, CLIP's hits, comclip-plus's hits, the hits table); never raises."""
    try:
        count = int(top or 8)
        results = index.search([query or ""], top=count, candidates=max(CANDIDATES, count), method=list(SEARCH_METHODS))
    except ComclipError as exc:
        return f"**Error:** {exc}", [], [], ""
    except Exception as exc:  # a bug: one line on the page, the traceback in the log
        log.exception("search failed")
        return f"**Error:** internal error ({type(exc).__name__}: {exc}); the server log has the details", [], [], ""
    galleries = [
        [(boxed(load_image(index.record(h.row)["file"]).image, h.result), f"{h.rank}. {h.score:.3f}") for h in r.hits]
        for r in results
    ]
    message = f"**{len(index)} images; {results[0].candidates} re-ranked** by {SEARCH_METHODS[1]} (CLIP's nearest)"
    return message, galleries[0], galleries[1], hits_html(results)


def hits_html(results: list) -> str:
    """Every hit of every method: rank, image, score and CLIP's cosine, full precision in ``data-*``."""
    rows = [
        f'<tr data-method="{escape(r.method)}" data-rank="{h.rank}" data-image="{escape(h.image)}" data-score="{h.score!r}">'
        f"<td>{escape(r.method)}</td><td>{h.rank}</td><td>{h.score:.4f}</td><td>{h.clip:.4f}</td><td>{escape(h.image)}</td></tr>"
        for r in results
        for h in r.hits
    ]
    head = "<tr><th>method</th><th>rank</th><th>score</th><th>CLIP</th><th>image</th></tr>"
    return f'<table class="comclip-hits"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def api_search(
    index: Any, query: str, top: float | None, method: str | None, error: Callable[[str], Exception] = Exception
) -> list[dict]:
    """The ``/search`` endpoint: ``comclip search --json``'s objects, one per method; a user's
    mistake is raised as ``error`` (Gradio's, which the client raises with the message)."""
    from comclip.methods import parse_methods

    try:
        count = int(top or 10)
        names = parse_methods(method or ",".join(SEARCH_METHODS))
        return [r.to_dict() for r in index.search([query], top=count, candidates=max(CANDIDATES, count), method=names)]
    except ComclipError as exc:
        raise error(str(exc)) from None


def search_tab(gr: Any, index: Any) -> None:
    """The tab's components and events, and the hidden ``/search`` endpoint."""
    gr.Markdown(f"Search the {len(index)} images of `{index.folder}`: CLIP's order beside {SEARCH_METHODS[1]}'s.")
    with gr.Row():
        query = gr.Textbox(label="Query", lines=1, elem_id="comclip-query", scale=4)
        top = gr.Number(value=8, precision=0, minimum=1, maximum=100, label="Top", elem_id="comclip-top", scale=1)
        button = gr.Button("Search", variant="primary", elem_id="comclip-search", scale=1)
    message = gr.Markdown(elem_id="comclip-search-message")
    with gr.Row():
        clip = gr.Gallery(label="CLIP", columns=4, height="auto", object_fit="contain", elem_id="comclip-hits-clip")
        plus = gr.Gallery(label=SEARCH_METHODS[1], columns=4, height="auto", object_fit="contain", elem_id="comclip-hits-plus")
    table = gr.HTML(elem_id="comclip-hits")
    button.click(
        lambda q, k: search_request(index, q, k),
        inputs=[query, top],
        outputs=[message, clip, plus, table],
        concurrency_id="model",
        concurrency_limit=1,
    )
    with gr.Group(visible=False):
        api_query, api_top, api_method, api_result, trigger = (
            gr.Textbox(),
            gr.Number(value=10),
            gr.Textbox(),
            gr.JSON(),
            gr.Button(),
        )
    trigger.click(
        lambda q, k, m: api_search(index, q, k, m, lambda message: gr.Error(message, print_exception=False)),
        inputs=[api_query, api_top, api_method],
        outputs=api_result,
        api_name="search",
        concurrency_id="model",
        concurrency_limit=1,
    )
