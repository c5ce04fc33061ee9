"""One typed configuration of the ComCLIP pipeline, with every library default in one place.

A :class:`PipelineConfig` names each stage's choice (parser, grounder and its options,
weighting, temperature, fill, score mode, ...). Values come from three layers, for every
option alike:

1. what the caller passes explicitly (a command-line option, a keyword argument) wins over
2. the model's own defaults (``comclip.json`` in its directory, :attr:`Backbone.defaults`),
   which win over
3. the library defaults: the field defaults below.

Every named choice is checked against its registry (:data:`~comclip.composition.WEIGHTINGS`,
:data:`~comclip.subimages.FILLS`, ...), so a new choice registered there is accepted here and
offered on the command line without touching this module.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

from .backbones.base import PRECISIONS
from .composition import SCORE_MODES, WEIGHTINGS
from .composition.geometry import RELATION_MODES
from .errors import InputError
from .grounding import GROUND_BY, GROUNDERS
from .grounding.assignment import ASSIGNMENTS
from .grounding.clip_grounder import DEFAULT_FILL, DEFAULT_PROMPT, DEFAULT_PROPOSALS, REGION_MODES
from .grounding.proposals import PROPOSALS
from .parsing import PARSERS
from .pixels import PIXEL_PATHS
from .subimages import FILLS

#: A model's ``comclip.json`` names the clip grounder's options under "grounder"; their fields here.
MODEL_GROUNDER_KEYS = {"prompt": "grounder_prompt", "proposals": "proposals", "region": "region", "fill": "grounder_fill"}
#: Each grounder's constructor options, from the fields that feed them.
GROUNDER_OPTIONS = {
    "clip": {"grounder_prompt": "prompt", "proposals": "proposals", "region": "region", "grounder_fill": "fill"},
    "regions": {"regions": "regions"},
}


@dataclass(frozen=True)
class PipelineConfig:
    """Everything besides the backbone that decides a ComCLIP score (see the module docstring)."""

    parser: str = "spacy"
    grounder: str = "clip"
    weighting: str = "sum"
    #: Softmax temperature on cosines; None: 1 / the model's logit scale.
    temperature: float | None = None
    fill: str = "black"
    score_mode: str = "comclip"
    evidence_weight: float = 1.0
    evidence_relations: bool = False
    ground_by: str = "head"
    #: Ground an entity to every box scoring within this margin of the top; None: the top box only.
    union_margin: float | None = None
    #: argmax: each entity's top region on its own (the paper); joint: a caption's entities
    #: grounded together, each to a different region (:mod:`comclip.grounding.assignment`).
    assignment: str = "argmax"
    #: Ground an entity with attributes also by its phrase, adding this weight times the phrase's
    #: score on each region to the head's (0: the head alone, as the paper).
    attribute_weight: float = 0.0
    use_relations: bool = True
    #: Spatial relations checked on the grounded boxes: off (the paper) or geometry.
    relations: str = "off"
    #: How much the geometric check moves a score: ``+ weight * mean(g - 1/2)``.
    relation_weight: float = 1.0
    #: How an entity's phrase is worded for its sub-image ("{}": as parsed).
    entity_prompt: str = "{}"
    grounder_prompt: str = DEFAULT_PROMPT
    proposals: str = DEFAULT_PROPOSALS
    #: crop, mask or patches; None: patches where the backbone exposes them, else crop.
    region: str | None = None
    grounder_fill: str = DEFAULT_FILL
    #: The regions grounder's JSON file or folder.
    regions: str | None = None
    precision: str = "fp32"
    #: How images reach the model: built and preprocessed as tensors on its device ("torch"),
    #: or with PIL and the backbone's own processor ("pil", the reference).
    pixels: str = "torch"

    def __post_init__(self) -> None:
        for name, registry in (("parser", PARSERS), ("grounder", GROUNDERS), ("weighting", WEIGHTINGS), ("fill", FILLS),
                               ("score_mode", SCORE_MODES), ("ground_by", GROUND_BY), ("grounder_fill", FILLS),
                               ("assignment", ASSIGNMENTS)):
            registry.check(getattr(self, name))
        _check_choice("proposals", self.proposals, PROPOSALS)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("pixels", self.pixels, PIXEL_PATHS)
        _check_choice("relations", self.relations, RELATION_MODES)
        _check_number("relation_weight", self.relation_weight)
        if self.region is not None:
            _check_choice("region", self.region, REGION_MODES)
        _check_number("temperature", self.temperature, positive=True)
        _check_number("evidence_weight", self.evidence_weight)
        _check_number("union_margin", self.union_margin, at_least_zero=True)
        _check_number("attribute_weight", self.attribute_weight, at_least_zero=True)
        for name in ("entity_prompt", "grounder_prompt"):
            if "{}" not in getattr(self, name):
                raise InputError(f"{name} {getattr(self, name)!r} needs a {{}} where the entity goes")

    @classmethod
    def layered(cls, model_defaults: Mapping[str, Any] | None = None, **explicit) -> "PipelineConfig":
        """Explicit options over the model's defaults (``comclip.json``) over the library's."""
        return cls(**{**model_options(model_defaults or {}), **explicit})

    @classmethod
    def for_backbone(cls, backbone, **explicit) -> "PipelineConfig":
        """:meth:`layered` over ``backbone``'s defaults, with the precision and pixel path it runs at."""
        return cls.layered(backbone.defaults, **explicit, precision=backbone.precision, pixels=backbone.pixels)

    def replace(self, **changes) -> "PipelineConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "PipelineConfig":
        unknown = set(values) - field_names()
        if unknown:
            raise InputError(f"unknown pipeline option(s) {', '.join(sorted(unknown))}")
        return cls(**values)

    def grounder_options(self) -> dict:
        """The constructor options of the configured grounder, from the fields that feed it."""
        mapping = GROUNDER_OPTIONS.get(self.grounder, {})
        return {option: getattr(self, name) for name, option in mapping.items() if getattr(self, name) is not None}


def field_names() -> set[str]:
    return {f.name for f in fields(PipelineConfig)}


def model_options(defaults: Mapping[str, Any]) -> dict:
    """A model's ``comclip.json`` as config fields: ``{"grounder": {"prompt": ...}, "entity_prompt": ...}``
    (keys starting with ``_`` are notes). Any other field may be given at the top level too."""
    options = {}
    for key, value in defaults.items():
        if key.startswith("_"):
            continue
        if key == "grounder" and isinstance(value, Mapping):
            unknown = set(value) - set(MODEL_GROUNDER_KEYS)
            if unknown:
                raise InputError(f"model defaults: unknown grounder option(s) {', '.join(sorted(unknown))}")
            options.update({MODEL_GROUNDER_KEYS[k]: v for k, v in value.items()})
        elif key in field_names():
            options[key] = value
        else:
            raise InputError(f"model defaults: unknown option {key!r}")
    return options


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise InputError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def _check_number(name: str, value, positive: bool = False, at_least_zero: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise InputError(f"{name} must be positive, got {value}")
    if at_least_zero and value < 0:
        raise InputError(f"{name} must be 0 or more, got {value}")
