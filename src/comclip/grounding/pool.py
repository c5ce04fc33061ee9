"""Grounders shared between pipelines: one per distinct grounder configuration, so that each
image's candidate regions are encoded (or a detector run) once for all the pipelines that
ground the same way. The evaluation, the ablation and the web app build their pipelines
through one pool.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from comclip.errors import InputError
from comclip.grounding import ORACLES, create_grounder
from comclip.grounding.base import Grounder


class GrounderPool:
    """``get(name, options)``: the pool's grounder of that configuration, made on first use.

    ``known`` holds the true boxes of the data, ``(image, [(label, box), ...], shown)`` per
    image (``shown``: what shows of each object), for the oracle grounders; without them they
    are refused.
    """

    def __init__(self, backbone: Any, known: Sequence[Any] | None = None) -> None:
        self.backbone, self.known = backbone, known
        self._grounders: dict[str, Grounder] = {}

    def get(self, name: str, options: dict | None = None) -> Grounder:
        options = dict(options or {})
        key = json.dumps([name, options], sort_keys=True)
        if key not in self._grounders:
            if name in ORACLES:
                if not self.known:
                    raise InputError(f"--grounder {name} needs data with known boxes (comclip eval sandbox)")
                self._grounders[key] = create_grounder(name, None, known=list(self.known))
            else:
                self._grounders[key] = create_grounder(name, self.backbone, **options)
        return self._grounders[key]

    def for_config(self, config: Any) -> Grounder:
        """The grounder of a :class:`~comclip.config.PipelineConfig`."""
        return self.get(config.grounder, config.grounder_options())
