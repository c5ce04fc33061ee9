"""One typed configuration of the ComCLIP pipeline, with every library default in one place.

A :class:`PipelineConfig` names each stage's choice (parser, grounder and its options,
weighting, temperature, fill, score mode, ...). Values come from three layers, for every
option alike:

1. what the caller passes explicitly (a command-line option, a keyword argument) wins over
2. the model's own defaults (``comclip.json`` in its directory, :attr:`Backbone.defaults`),
   which win over
3. the library defaults: the field defaults below.

Every named choice is checked against its registry (:data:`~comclip.composition.WEIGHTINGS`,
:data:`~comclip.imaging.subimages.FILLS`, ...), so a new choice registered there is accepted here and
offered on the command line without touching this module.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from comclip.composition import SCORE_MODES, WEIGHTINGS
from comclip.composition.geometry import RELATION_MODES
from comclip.declared import Option, check_all, option
from comclip.errors import InputError
from comclip.grounding import GROUND_BY, GROUNDERS
from comclip.grounding.assignment import ASSIGNMENTS
from comclip.grounding.clip_grounder import DEFAULT_FILL, DEFAULT_PROMPT, DEFAULT_PROPOSALS, REGION_MODES
from comclip.grounding.proposals import PROPOSALS
from comclip.imaging.subimages import FILLS, SUBIMAGE_MODES, check_source, subimage_source, tokens_stand_for
from comclip.parsing import PARSERS


@dataclass(frozen=True)
class PipelineConfig:
    """Everything besides the backbone that decides a ComCLIP score (see the module docstring)."""

    parser: str = option("caption parser", "spacy", choices=PARSERS, from_model=False)
    grounder: str = option("entity grounder", "clip", choices=GROUNDERS, from_model=False)
    weighting: str = option(
        "sub-image weights: sum (the authors' code, s_i / sum s_j) or softmax (the paper)", "sum", choices=WEIGHTINGS
    )
    temperature: float | None = option(
        "softmax temperature on cosines", None, kind="number", bound="positive", default_text="1 / the model's logit scale"
    )
    subimage_fill: str = option(
        "what replaces pixels outside an entity's box in its sub-image",
        "black",
        choices=FILLS,
        default_text="black, as in the paper",
        aliases=("--fill",),
        renamed_from="fill",
    )
    subimage: str = option(
        "how a sub-image is encoded: fill (the full-size image, the fill outside the region, as in "
        "the paper), tokens (a ViT's patch tokens the region touches, the rest as one token: "
        "costs its area; for fills of one colour) or auto (tokens where the backbone can, else fill); "
        "the clip grounder's masked candidates likewise",
        "fill",
        choices=SUBIMAGE_MODES,
        grounder={"clip": "subimage"},
    )
    score_mode: str = option(
        "score mode: comclip (the paper), evidence (+ lambda * mean entity cosine), evidence-min "
        "(+ lambda * weakest entity cosine)",
        "comclip",
        flag="--score",
        choices=SCORE_MODES,
    )
    evidence_weight: float = option("lambda of the evidence modes", 1.0, kind="number")
    evidence_relations: bool = option("evidence modes also pool the relations' cosines", False, kind="bool")
    ground_by: str = option("ground each entity by its head noun (as the paper) or its whole phrase", "head", choices=GROUND_BY)
    union_margin: float | None = option(
        "ground an entity to the union of all boxes scoring within this margin of the top",
        None,
        kind="number",
        bound="at_least_zero",
        default_text="top box only",
    )
    assignment: str = option(
        "argmax: each entity's top region on its own (the paper); joint: a caption's entities "
        "grounded together, each to a different region",
        "argmax",
        choices=ASSIGNMENTS,
    )
    attribute_weight: float = option(
        "also ground an entity with attributes by its phrase, adding this weight x the "
        "phrase's score on each region to its head's: attributes break ties",
        0.0,
        kind="number",
        bound="at_least_zero",
    )
    relation_subimages: bool = option(
        "score each relation's sub-image (subject and object together) against its predicate",
        True,
        kind="bool",
        renamed_from="use_relations",
    )
    relation_check: str = option(
        "geometry: check spatial predicates (left of, above, on, under, next to, in, ...) on the "
        "grounded boxes and add weight * mean(g - 1/2); pixels: the same, and the relations boxes cannot show "
        "(in front of, behind, points at) read from the entities' sub-images; off: the paper",
        "off",
        choices=RELATION_MODES,
        aliases=("--relations",),
        renamed_from="relations",
    )
    relation_weight: float = option("weight of the geometric check", 1.0, kind="number")
    entity_prompt: str = option("how an entity's phrase is worded for its sub-image ({} is the phrase)", "{}", template=True)
    grounder_prompt: str = option(
        "clip grounder: how an entity is worded to score candidate regions ({} is the entity)",
        DEFAULT_PROMPT,
        template=True,
        grounder={"clip": "prompt"},
        model_grounder_key="prompt",
        default_text=f"the model's, else {DEFAULT_PROMPT!r}",
    )
    proposals: str = option(
        "clip grounder's candidate regions",
        DEFAULT_PROPOSALS,
        choices=PROPOSALS,
        grounder={"clip": "proposals"},
        model_grounder_key="proposals",
        default_text=f"the model's, else {DEFAULT_PROPOSALS}",
    )
    region: str | None = option(
        "clip grounder scores candidates from patch tokens, crops, masks or masks with zoomed views",
        None,
        choices=REGION_MODES,
        grounder={"clip": "region"},
        model_grounder_key="region",
        default_text="the model's, else patches for CLIP ViTs, else crop",
    )
    grounder_fill: str = option(
        "clip grounder: what replaces pixels outside a masked candidate",
        DEFAULT_FILL,
        choices=FILLS,
        grounder={"clip": "fill"},
        model_grounder_key="fill",
    )
    regions_file: str | None = option(
        "for --grounder regions: a JSON file or a folder of <image stem>.json",
        None,
        grounder={"regions": "regions"},
        default_text="none",
        from_model=False,
        aliases=("--regions",),
        renamed_from="regions",
    )

    def __post_init__(self) -> None:
        check_all(self)
        check_source(self.subimage_source)

    @property
    def subimage_source(self) -> str:
        """What a sub-image is made of, as cache keys and index tables name it: the fill, or
        with ``subimage="tokens"`` the fill's sub-image from tokens (``tokens-mean``)."""
        return subimage_source(self.subimage, self.subimage_fill)

    @classmethod
    def layered(cls, model_defaults: Mapping[str, Any] | None = None, **explicit: Any) -> PipelineConfig:
        """Explicit options over the model's defaults (``comclip.json``) over the library's."""
        return cls(**{**model_options(model_defaults or {}), **current_names(explicit, "option")})

    @classmethod
    def for_backbone(cls, backbone: Any, **explicit: Any) -> PipelineConfig:
        """:meth:`layered` over ``backbone``'s defaults."""
        return cls.layered(backbone.defaults, **explicit)

    def replace(self, **changes: Any) -> PipelineConfig:
        return dataclasses.replace(self, **current_names(changes, "option"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PipelineConfig:
        unknown = set(values) - field_names() - set(renamed())
        if unknown:
            raise InputError(f"unknown pipeline option(s) {', '.join(sorted(unknown))}")
        return cls(**values)

    def grounder_options(self) -> dict:
        """The constructor options of the configured grounder, from the fields that feed it."""
        return {
            declared.grounder[self.grounder]: getattr(self, name)
            for name, declared in options().items()
            if self.grounder in declared.grounder and getattr(self, name) is not None
        }


class TokensUnsupportedWarning(UserWarning):
    """``subimage="tokens"`` was asked of a backbone that cannot: its sub-images keep the fill."""


def runnable_by(config: PipelineConfig, backbone: Any) -> PipelineConfig:
    """``config`` as ``backbone`` can run it, so the configuration reported is the one run:
    ``auto`` sub-images become tokens where the backbone supports them and the fill is one
    colour, else the fill; asked-for tokens it cannot make become the fill, said in one line."""
    if config.subimage == "auto":
        tokens = tokens_stand_for(config.subimage_fill, backbone)
        return config.replace(subimage="tokens" if tokens else "fill")
    if config.subimage != "tokens" or backbone.supports_tokens:
        return config
    warnings.warn(
        f"{backbone.name} cannot encode sub-images from patch tokens (--subimage tokens); its sub-images keep the fill",
        TokensUnsupportedWarning,
        stacklevel=3,
    )
    return config.replace(subimage="fill")


def resolve_config(
    model_defaults: Mapping[str, Any],
    config: PipelineConfig | None,
    parser: object,
    grounder: object,
    grounder_options: dict,
    options: dict,
) -> tuple[PipelineConfig, dict]:
    """A pipeline's configuration and the grounder options that are not configuration fields.

    Keywords win over ``config``; without a ``config`` they are layered over the model's
    defaults (``model_defaults``) and the library's. ``parser`` and ``grounder`` are names or
    instances. Grounder options that are typed fields (``prompt``,
    ``proposals``, ...) become those fields; a parser or grounder instance of a registered
    kind sets its name."""
    unknown = sorted(set(options) - field_names())
    if unknown:
        raise InputError(
            f"unknown pipeline option(s) {', '.join(unknown)} (precision and pixels belong to the "
            "backbone: create_backbone or ComCLIP.from_pretrained)"
        )
    explicit, extra = dict(options), {}
    typed = grounder_option_fields()
    for key, value in grounder_options.items():
        if key in typed:
            explicit[typed[key]] = value
        else:
            extra[key] = value
    for key, given in (("parser", parser), ("grounder", grounder)):
        name = given if isinstance(given, str) else getattr(given, "name", None)
        if name is not None and (isinstance(given, str) or name in (PARSERS if key == "parser" else GROUNDERS)):
            explicit[key] = name
    base = config if config is not None else PipelineConfig.layered(model_defaults)
    return base.replace(**explicit), extra


def renamed() -> dict[str, str]:
    """Former field names and the fields they now are."""
    return {d.renamed_from: name for name, d in options().items() if d.renamed_from}


def current_names(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``values`` with former field names replaced by the current ones (a DeprecationWarning
    for each); a value given under both names is an error."""
    out = dict(values)
    for old, new in renamed().items():
        if old in out:
            if new in out:
                raise InputError(f"{where} {old!r} and {new!r} are the same option (it was renamed {new!r}); give one")
            warnings.warn(f"{where} {old!r} is now called {new!r}", DeprecationWarning, stacklevel=3)
            out[new] = out.pop(old)
    return out


def options() -> dict[str, Option]:
    """Every field's :class:`Option`, in field order."""
    return {f.name: f.metadata["option"] for f in fields(PipelineConfig)}


def defaults() -> dict[str, Any]:
    """Every field's library default."""
    return {f.name: f.default for f in fields(PipelineConfig)}


def field_names() -> set[str]:
    return {f.name for f in fields(PipelineConfig)}


def grounder_option_fields() -> dict[str, str]:
    """Grounder constructor options that are typed fields: ``{option: field}`` over every grounder."""
    return {option: name for name, declared in options().items() for option in declared.grounder.values()}


def model_grounder_keys() -> dict[str, str]:
    """The keys a model's ``comclip.json`` may give under "grounder", and their fields."""
    return {d.model_grounder_key: name for name, d in options().items() if d.model_grounder_key}


def model_options(defaults: Mapping[str, Any]) -> dict:
    """A model's ``comclip.json`` as config fields: ``{"grounder": {"prompt": ...}, "entity_prompt": ...}``
    (keys starting with ``_`` are notes). Any other field may be given at the top level too."""
    found = {}
    for key, value in defaults.items():
        if key.startswith("_"):
            continue
        if key == "grounder" and isinstance(value, Mapping):
            keys = model_grounder_keys()
            unknown = set(value) - set(keys)
            if unknown:
                raise InputError(f"model defaults: unknown grounder option(s) {', '.join(sorted(unknown))}")
            found.update({keys[k]: v for k, v in value.items()})
        elif key in field_names() or key in renamed():
            found[key] = value
        else:
            raise InputError(f"model defaults: unknown option {key!r}")
    found = current_names(found, "model defaults")
    refused = [key for key in found if not options()[key].from_model]
    if refused:
        raise InputError(
            f"model defaults (comclip.json): {', '.join(map(repr, refused))} cannot be set by a model folder, which may "
            "not turn on anything that reaches the network or runs code; give it as an option yourself"
        )
    return found


def _accept_former_names() -> None:
    """Former field names keep working as keywords of :class:`PipelineConfig` and as
    read-only attributes, with a DeprecationWarning."""
    generated = PipelineConfig.__init__

    def __init__(self: PipelineConfig, *args: Any, **values: Any) -> None:
        generated(self, *args, **current_names(values, "PipelineConfig option"))

    PipelineConfig.__init__ = __init__  # type: ignore[method-assign]
    for old, new in renamed().items():
        setattr(PipelineConfig, old, _former(new))


def _former(new: str) -> property:
    """A read-only attribute under a field's former name."""

    def read(config: PipelineConfig) -> Any:
        warnings.warn(f"PipelineConfig attribute is now called {new!r}", DeprecationWarning, stacklevel=2)
        return getattr(config, new)

    return property(read, doc=f"Deprecated: {new}.")


_accept_former_names()
