"""What the web app does on Score, without the page: check the inputs, score every caption
with CLIP and ComCLIP, and render the tables and figures the page shows."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from ..backbones import Backbone
from ..config import PipelineConfig
from ..errors import InputError
from ..grounding.pool import GrounderPool
from ..images import LoadedImage, load_image
from ..methods import METHODS
from ..pipeline import ComCLIP, ComCLIPResult
from ..text import validate_captions

#: The pipeline options the page offers, each a PipelineConfig field with its registry's choices.
PAGE_OPTIONS = ("weighting", "subimage_fill", "score_mode", "grounder")
#: The method a request gets unless it names one: the paper's.
DEFAULT_METHOD = "comclip"
#: Grounders that need more than an image (a regions file, a detector's weights): not offered on the page.
_NEEDS_INPUT = {"regions", "oracle"}
#: Requests whose figure files are kept on disk (a long-running server does not fill its temp folder).
KEEP_REQUESTS = 8


def method_choices() -> list[str]:
    """The composed named methods the page offers (plain CLIP is always shown beside them)."""
    return [name for name, method in METHODS.items() if method.composed]


def option_choices() -> dict[str, list[str]]:
    """The page's choices for each of its options, from the options' declarations (grounders
    that need more than an image left out)."""
    from ..config import options

    declared = options()
    return {name: [c for c in declared[name].choices if name != "grounder" or c not in _NEEDS_INPUT] for name in PAGE_OPTIONS}


def split_captions(text: str | None) -> list[str]:
    """One caption per line; blank lines are ignored, at least one caption is needed."""
    captions = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not captions:
        raise InputError("no caption: type one caption per line")
    return validate_captions(captions)


@dataclass
class Scored:
    """One press of Score: a result per caption, the CLIP cosines, and the figures drawn."""

    image: LoadedImage
    texts: list[str]
    clip: list[float]
    results: list[ComCLIPResult]
    figures: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    method: str = DEFAULT_METHOD

    def winners(self) -> tuple[int, int]:
        """The caption CLIP prefers and the one ComCLIP prefers (first on a tie)."""
        comclip = [r.score for r in self.results]
        return self.clip.index(max(self.clip)), comclip.index(max(comclip))


class AppSession:
    """One loaded backbone and the pipelines built on it, one per page configuration.

    ``base`` holds pipeline options given on the command line; the page's choices go over
    them, and both over the model's own defaults, as ``comclip score`` layers them.
    """

    def __init__(self, backbone: Backbone, base: dict | None = None, figures_dir: str | Path | None = None):
        self.backbone = backbone
        self.base = dict(base or {})
        self.figures_dir = Path(figures_dir or tempfile.mkdtemp(prefix="comclip-app-"))
        self._pipelines: dict[str, ComCLIP] = {}
        self._grounders = GrounderPool(backbone)  # one detector per grounder setting, whatever the other choices
        self.config = self.configure()  # bad command-line options are found at start

    def configure(self, method: str | None = None, **choices) -> PipelineConfig:
        """The configuration of a request: its choices over the command line's over the named
        method's (``comclip`` by default) over the model's."""
        config = METHODS[method or DEFAULT_METHOD].config(PipelineConfig.for_backbone(self.backbone), {**self.base, **choices})
        if config is None:
            raise InputError(f"method {method!r} is plain CLIP; the page composes with a ComCLIP method")
        return config

    def defaults(self, method: str | None = None) -> dict[str, str]:
        """The page's choices for a method (the initial ones: the default method's)."""
        config = self.config if method in (None, DEFAULT_METHOD) else self.configure(method)
        return {name: getattr(config, name) for name in PAGE_OPTIONS}

    def pipeline(self, config: PipelineConfig) -> ComCLIP:
        """The pipeline of a configuration, built once; pipelines share their grounders."""
        key = json.dumps(config.to_dict(), sort_keys=True, default=str)
        if key not in self._pipelines:
            self._pipelines[key] = ComCLIP(self.backbone, config, grounder=self._grounders.for_config(config))
        return self._pipelines[key]

    def score(
        self, image_path: str | None, captions: str | None, draw: bool = True, method: str | None = None, **choices
    ) -> Scored:
        """Score every caption against the image; raise :class:`InputError` on a missing or
        undecodable image, no caption, or options that do not go together."""
        started = time.perf_counter()
        if not image_path:
            raise InputError("no image: upload one or pick an example")
        texts = split_captions(captions)
        image = load_image(image_path)
        config = self.configure(method, **{k: v for k, v in choices.items() if v is not None})
        results = self.pipeline(config).score_details([image], texts)[0]
        scored = Scored(
            image,
            texts,
            [r.clip for r in results],
            results,  # the pipeline's CLIP cosines: no second pass
            method=method or DEFAULT_METHOD,
        )
        if draw:
            scored.figures = self._draw(image.image, results)
        scored.seconds = time.perf_counter() - started
        return scored

    def score_json(self, image_path: str | None, captions: str | None, method: str | None = None) -> dict:
        """What ``comclip score IMAGE CAPTIONS --method clip,METHOD --json`` prints: the app's
        API endpoint ``/score`` returns it."""
        from ..results import score_row

        scored = self.score(image_path, captions, draw=False, method=method)
        scale = self.backbone.logit_scale
        rows = [
            score_row(text, clip, scale, ["clip", scored.method], {scored.method: result}, False)
            for text, clip, result in zip(scored.texts, scored.clip, scored.results)
        ]
        return {"model": self.backbone.name, "image": scored.image.source, "results": rows}

    def _draw(self, image, results: list[ComCLIPResult]) -> list[Path]:
        from ..explain import draw_explanation

        self._forget_old_figures()
        request = Path(tempfile.mkdtemp(prefix="request-", dir=self.figures_dir))
        return [draw_explanation(result, image, request / f"caption-{n + 1}.png") for n, result in enumerate(results)]

    def _forget_old_figures(self, keep: int = KEEP_REQUESTS) -> None:
        """Remove all but the latest requests' figures (the page has its own copies by then)."""
        import shutil

        folders = sorted(self.figures_dir.glob("request-*"), key=lambda p: p.stat().st_mtime)
        for old in folders[: max(0, len(folders) - keep + 1)]:
            shutil.rmtree(old, ignore_errors=True)


# --- what the page shows ------------------------------------------------------------------
def scores_html(scored: Scored) -> str:
    """The scores table: one row per caption, CLIP cosine and ComCLIP score, winners marked.
    Each score cell carries its full-precision value in ``data-value``."""
    clip_best, comclip_best = scored.winners()
    rows = []
    for n, (text, clip, result) in enumerate(zip(scored.texts, scored.clip, scored.results)):
        fallback = escape(result.fallback or ", ".join(result.flags) or "")
        rows.append(
            f'<tr data-caption="{n}"><td class="caption">{escape(text)}</td>'
            f"{_score_cell('clip', clip, n == clip_best)}{_score_cell('comclip', result.score, n == comclip_best)}"
            f'<td class="flags">{fallback}</td></tr>'
        )
    head = f"<tr><th>caption</th><th>CLIP</th><th>{escape(scored.method)}</th><th>fallbacks</th></tr>"
    return f'<table class="comclip-scores"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _score_cell(method: str, value: float, best: bool) -> str:
    mark = " &#9733;" if best else ""
    winner = ' data-winner="true"' if best else ""
    return f'<td class="{method}" data-value="{value!r}"{winner}>{value:.4f}{mark}</td>'


def parses_html(scored: Scored) -> str:
    """Each caption's parse: its entities (head, attributes) and relations."""
    blocks = []
    for n, result in enumerate(scored.results):
        graph = result.graph
        entities = (
            "".join(
                f"<li>[{e.id}] <b>{escape(e.phrase)}</b> (head <i>{escape(e.head)}</i>"
                f"{', attributes ' + escape(', '.join(e.attributes)) if e.attributes else ''})</li>"
                for e in graph.entities
            )
            or "<li>no entities</li>"
        )
        relations = "".join(f"<li>[{r.subject}] {escape(r.predicate)} [{r.object}]</li>" for r in graph.relations)
        blocks.append(
            f'<div class="comclip-parse" data-caption="{n}"><p><b>{n + 1}. {escape(scored.texts[n])}</b></p>'
            f"<ul>{entities}{relations}</ul></div>"
        )
    return "".join(blocks)


def weights_html(scored: Scored) -> str:
    """Every sub-image of every caption: its phrase, similarity s_i and weight w_i."""
    rows = []
    for n, result in enumerate(scored.results):
        for part in result.parts:
            rows.append(
                f'<tr data-caption="{n}"><td>{n + 1}</td><td>{part.kind}</td><td>{escape(part.phrase)}</td>'
                f'<td data-value="{part.similarity!r}">{part.similarity:.4f}</td>'
                f'<td data-value="{part.weight!r}">{part.weight:.4f}</td>'
                f"<td>{escape(', '.join(part.flags))}</td></tr>"
            )
    head = "<tr><th>caption</th><th>kind</th><th>phrase</th><th>s_i</th><th>w_i</th><th>flags</th></tr>"
    body = "".join(rows) or '<tr><td colspan="6">no sub-images: the global image alone was scored</td></tr>'
    return f'<table class="comclip-weights"><thead>{head}</thead><tbody>{body}</tbody></table>'


def config_html(scored: Scored) -> str:
    """Every pipeline option of the request (each :class:`~comclip.config.PipelineConfig` field,
    from its declaration): its value and what it does."""
    from ..config import defaults, options

    values = scored.results[0].config.to_dict() if scored.results else defaults()
    rows = "".join(
        f'<tr data-option="{name}"><td><code>{name}</code></td><td>{escape(str(values[name]))}</td>'
        f"<td>{escape(declared.help)}</td></tr>"
        for name, declared in options().items()
    )
    head = "<tr><th>option</th><th>value</th><th>what it does</th></tr>"
    return f'<table class="comclip-config"><thead>{head}</thead><tbody>{rows}</tbody></table>'


def summary(scored: Scored, model: str) -> str:
    """One line above the tables: which caption each method prefers and how long it took."""
    clip_best, comclip_best = scored.winners()
    agree = "both prefer" if clip_best == comclip_best else "CLIP prefers"
    line = f"{agree} caption {clip_best + 1}"
    if clip_best != comclip_best:
        line += f", ComCLIP prefers caption {comclip_best + 1}"
    return f"**{line}** ({len(scored.texts)} captions, model `{model}`, {scored.seconds:.1f} s)"
