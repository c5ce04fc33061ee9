"""The web page (Gradio): inputs on the left, options on the right, then the message, the
scores table, each caption's parse and sub-image weights, and the explanation figures.

Every error a request meets is shown as a message on the page; the server keeps serving.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from comclip.app.session import DEFAULT_METHOD, PAGE_OPTIONS, AppSession, method_choices, option_choices
from comclip.app.tables import config_html, parses_html, scores_html, summary, weights_html
from comclip.errors import ComclipError, InputError
from comclip.imaging.files import load_image

log = logging.getLogger("comclip.app")
LABELS = {"weighting": "Weighting", "subimage_fill": "Fill outside the box", "score_mode": "Score mode", "grounder": "Grounder"}
CSS = """
.comclip-scores td, .comclip-scores th, .comclip-weights td, .comclip-weights th { padding: 2px 8px; }
.comclip-scores td[data-winner] { font-weight: bold; }
"""


def import_gradio():
    """Gradio, without its usage analytics (the app is meant to run offline)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError:
        raise ComclipError("the web app needs Gradio: pip install 'comclip[app]'") from None
    return gradio


def user_error(message: str) -> Exception:
    """A user's mistake as Gradio's error (the page or the client shows the message), without
    the traceback Gradio would print in the server's log for it: it is not the server's fault."""
    return import_gradio().Error(message, print_exception=False)


def _error(message: str, image_path=None) -> tuple:
    """An error as the page shows it: the upload named by its file name, not the server's copy."""
    if image_path:
        message = message.replace(str(image_path), Path(image_path).name)
    return (f"**Error:** {message}", None, "", "", "", [], "")


def score_request(session: AppSession, image_path, captions, *choices) -> tuple:
    """The Score button: (message, preview, scores, parses, weights, figures, configuration); never raises."""
    method = choices[len(PAGE_OPTIONS)] if len(choices) > len(PAGE_OPTIONS) else None  # the method radio, last
    try:
        scored = session.score(image_path, captions, method=method, **dict(zip(PAGE_OPTIONS, choices)))
    except ComclipError as exc:
        return _error(str(exc), image_path)
    except Exception as exc:  # a bug: the page says so in one line, the log keeps the traceback
        log.exception("scoring failed")
        return _error(f"internal error ({type(exc).__name__}: {exc}); the server log has the details")
    figures = [(str(path), f"{n + 1}. {text}") for n, (path, text) in enumerate(zip(scored.figures, scored.texts))]
    return (
        summary(scored, session.backbone.name),
        scored.image.image,
        scores_html(scored),
        parses_html(scored),
        weights_html(scored),
        figures,
        config_html(scored, session.backbone),
    )


def api_request(session: AppSession, image_path, captions, method) -> dict:
    """The ``/score`` API endpoint (``gradio_client``): ``comclip score --json``'s object; a
    user's error is Gradio's error, which the client raises with the message."""
    try:
        return session.score_json(image_path, captions, method or None)
    except ComclipError as exc:
        raise user_error(_error(str(exc), image_path)[0].removeprefix("**Error:** ")) from None


def preview_request(image_path) -> tuple:
    """A new upload: show the image as it will be scored, or say why it cannot be."""
    if not image_path:
        return "", None
    try:
        return "", load_image(image_path).image
    except InputError as exc:
        return _error(str(exc), image_path)[:2]


def build_page(session: AppSession, examples: list[list[str]], index=None):
    """The Gradio Blocks of the app over ``session``, with ``examples`` ([image, captions] rows);
    with a search ``index``, a Score tab and a Search tab (see :mod:`comclip.app.search_tab`)."""
    gr = import_gradio()
    with gr.Blocks(title="comclip") as page:
        if index is None:
            _score_tab(gr, session, examples)
        else:
            from comclip.app.search_tab import search_tab

            with gr.Tab("Score", elem_id="comclip-tab-score"):
                _score_tab(gr, session, examples)
            with gr.Tab("Search", elem_id="comclip-tab-search"):
                search_tab(gr, index)
        _api(gr, session)
    return page


def _score_tab(gr, session: AppSession, examples: list[list[str]]) -> None:
    """Upload an image, type captions, press Score: the scores, parses, weights and figures."""
    defaults, choices = session.defaults(), option_choices()
    gr.Markdown(
        f"# ComCLIP at work\nModel `{session.backbone.name}`. Upload an image or pick an example, "
        "type two or more captions (one per line) and press **Score**."
    )
    with gr.Row():
        with gr.Column():
            image = gr.File(label="Image", file_types=["image"], type="filepath", elem_id="comclip-image")
            preview = gr.Image(label="Image as scored", interactive=False, height=260, elem_id="comclip-preview")
        with gr.Column():
            captions = gr.Textbox(label="Captions, one per line", lines=4, elem_id="comclip-captions")
            method = gr.Radio(
                method_choices(),
                value=DEFAULT_METHOD,
                label="Method (comclip methods says what each sets)",
                elem_id="comclip-method",
            )
            options = [
                gr.Radio(choices[name], value=defaults[name], label=LABELS[name], elem_id=f"comclip-{name}")
                for name in PAGE_OPTIONS
            ]
            button = gr.Button("Score", variant="primary", elem_id="comclip-score")
    if examples:
        gr.Examples(examples, inputs=[image, captions], label="Examples")
    message = gr.Markdown(elem_id="comclip-message")
    scores = gr.HTML(elem_id="comclip-scores")
    with gr.Row():
        parses = gr.HTML(label="Parses", elem_id="comclip-parses")
        weights = gr.HTML(label="Sub-images: similarity s_i and weight w_i", elem_id="comclip-weights")
    figures = gr.Gallery(label="Explanation figures", columns=2, height="auto", object_fit="contain", elem_id="comclip-figures")
    with gr.Accordion("Configuration: every pipeline option of the last request", open=False):
        config = gr.HTML(elem_id="comclip-config")
    image.change(preview_request, inputs=image, outputs=[message, preview])
    method.change(lambda name: [session.defaults(name)[n] for n in PAGE_OPTIONS], inputs=method, outputs=options)
    button.click(
        lambda *args: score_request(session, *args),
        inputs=[image, captions, *options, method],
        outputs=[message, preview, scores, parses, weights, figures, config],
        concurrency_id="model",
        concurrency_limit=1,
    )


def _api(gr, session: AppSession) -> None:
    """The named endpoint ``/score`` (image, captions one per line, method) for ``gradio_client``,
    on components of its own that the page does not show."""
    with gr.Group(visible=False):
        image = gr.File(type="filepath")  # passed on as uploaded: comclip says what is wrong with a file, not Gradio
        captions, method = gr.Textbox(), gr.Textbox(value=DEFAULT_METHOD)
        result, trigger = gr.JSON(), gr.Button()
    trigger.click(
        lambda *args: api_request(session, *args),
        inputs=[image, captions, method],
        outputs=result,
        api_name="score",
        concurrency_id="model",
        concurrency_limit=1,
    )


def check_port(host: str, port: int) -> None:
    """Refuse a port another program holds, before the model loads."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise InputError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


def serve(page, host: str = "127.0.0.1", port: int = 7860) -> str:
    """Start serving ``page`` on ``host:port`` in the background; returns its address."""
    gr = import_gradio()
    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )  # no web fonts: works offline
    try:
        page.launch(
            server_name=host,
            server_port=port,
            share=False,
            show_error=False,
            quiet=True,
            prevent_thread_lock=True,
            theme=theme,
            css=CSS,
            footer_links=[],
        )
    except OSError as exc:
        raise InputError(f"cannot serve on {host}:{port}: {exc}") from None
    return page.local_url


def examples_folder(session: AppSession) -> Path:
    return session.figures_dir / "examples"
