"""What the web app does on Score, without the page: check the inputs, score every caption
with CLIP and ComCLIP, and draw the figures. The tables the page shows are
:mod:`comclip.app.tables`."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from comclip.backbones import Backbone
from comclip.config import PipelineConfig
from comclip.errors import InputError
from comclip.grounding import ORACLES
from comclip.grounding.pool import GrounderPool
from comclip.imaging.files import LoadedImage, load_image
from comclip.methods import METHODS
from comclip.pipeline import ComCLIP
from comclip.results import ComCLIPResult
from comclip.text import validate_captions

#: The pipeline options the page offers, each a PipelineConfig field with its registry's choices.
PAGE_OPTIONS = ("weighting", "subimage_fill", "score_mode", "grounder")
#: The method a request gets unless it names one: the paper's.
DEFAULT_METHOD = "comclip"
#: Grounders that need more than an image (a regions file, a detector's weights): not offered on the page.
_NEEDS_INPUT = {"regions", *ORACLES}
#: Requests whose figure files are kept on disk (a long-running server does not fill its temp folder).
KEEP_REQUESTS = 8


def method_choices() -> list[str]:
    """The composed named methods the page offers (plain CLIP is always shown beside them)."""
    return [name for name, method in METHODS.items() if method.composed]


def option_choices() -> dict[str, list[str]]:
    """The page's choices for each of its options, from the options' declarations (grounders
    that need more than an image left out)."""
    from comclip.config import options

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
        from comclip.results import score_row

        scored = self.score(image_path, captions, draw=False, method=method)
        scale = self.backbone.logit_scale
        rows = [
            score_row(text, clip, scale, ["clip", scored.method], {scored.method: result}, False)
            for text, clip, result in zip(scored.texts, scored.clip, scored.results)
        ]
        return {"model": self.backbone.name, "image": scored.image.source, "results": rows}

    def _draw(self, image, results: list[ComCLIPResult]) -> list[Path]:
        from comclip.explain import draw_explanation

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
