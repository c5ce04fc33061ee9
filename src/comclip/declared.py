"""Options declared once: a dataclass field carries its :class:`Option` (help, flag, choices,
kind, bounds), and every tool derives what it needs from it.

:class:`~comclip.config.PipelineConfig` (what decides a score),
:class:`~comclip.backbones.runtime.RuntimeOptions` (how a model runs) and
:class:`~comclip.eval.runs.options.EvalOptions` (how an evaluation runs) are declared this
way; the command line's flags, a suite file's keys, the web app's option table, validation and
the defaults in every signature all read the declarations.
"""

from __future__ import annotations

import dataclasses
import math
import string
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from comclip.errors import InputError
from comclip.registry import Registry


@dataclass(frozen=True)
class Option:
    """What the tools need to know of one option, declared with its field.

    The command line's flags, the suite file's keys, the web app's option table, validation
    and the reading of a model's ``comclip.json`` are all derived from these, so a new option
    is one declaration.
    """

    help: str
    #: The command-line flag; ``--`` plus the field name with dashes by default.
    flag: str | None = None
    #: Older spellings of the flag, still accepted.
    aliases: tuple[str, ...] = ()
    #: The allowed values: a registry or a sequence (checked), or None (any value of ``kind``).
    choices: Any = None
    #: str, number (finite), integer (whole) or bool.
    kind: str = "str"
    #: For numbers and integers: None, "positive" or "at_least_zero".
    bound: str | None = None
    #: How the default reads in help where it is not the field's default value.
    default_text: str | None = None
    #: The grounder options this field feeds: ``{grounder: constructor option}``.
    grounder: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Where a model's ``comclip.json`` may also give it as ``{"grounder": {KEY: ...}}``.
    model_grounder_key: str | None = None
    #: A template that must hold ``{}``, where the entity goes.
    template: bool = False
    #: Whether a model folder's ``comclip.json`` may set it: not what could reach the network,
    #: run code or read other files (the parser, the grounder, a regions file).
    from_model: bool = True
    #: The command line's default where it differs from the library's (decoding workers: a
    #: script decodes in its own process unless it asks, the command line in worker processes).
    command_default: Any = dataclasses.field(default=None, compare=False)
    #: The field's former name, still accepted (with a DeprecationWarning) as a keyword, a
    #: ``comclip.json`` key, a method's change and an attribute.
    renamed_from: str | None = None


def option(help: str, default: Any = None, **meta: Any) -> Any:
    """A dataclass field with its :class:`Option` declaration."""
    return dataclasses.field(default=default, metadata={"option": Option(help, **meta)})


def check(name: str, value: Any, declared: Option) -> None:
    """One field's value against its declaration."""
    if value is None and declared.kind != "bool":
        return
    if isinstance(declared.choices, Registry):
        declared.choices.check(value)
    elif declared.choices is not None:
        _check_choice(name, value, declared.choices)
    if declared.kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        raise InputError(f"{name} must be a whole number, got {value!r}")
    if declared.kind in ("number", "integer"):
        _check_number(name, value, positive=declared.bound == "positive", at_least_zero=declared.bound == "at_least_zero")
    elif declared.kind == "bool" and not isinstance(value, bool):
        raise InputError(f"{name} must be true or false, got {value!r}")
    elif declared.kind == "str" and not isinstance(value, str):
        raise InputError(f"{name} must be a string, got {value!r}")
    if declared.template:
        _check_template(name, value)


def _check_template(name: str, value: str) -> None:
    """A template takes one entity: exactly one plain ``{}`` (``{{`` and ``}}`` are literal
    braces), so ``value.format(entity)`` neither fails nor repeats it."""
    try:
        fields = [
            (field, spec, conversion) for _, field, spec, conversion in string.Formatter().parse(value) if field is not None
        ]
    except ValueError as exc:  # a lone brace
        raise InputError(f"{name} {value!r} is not a template: {exc}; write {{{{ or }}}} for a literal brace") from None
    if fields != [("", "", None)]:
        raise InputError(
            f"{name} {value!r} needs exactly one {{}} where the entity goes, and no other {{...}} "
            "(write {{ or }} for a literal brace)"
        )


def _check_choice(name: str, value: Any, choices: Any) -> None:
    if value not in choices:
        raise InputError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def _check_number(name: str, value: Any, positive: bool = False, at_least_zero: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise InputError(f"{name} must be positive, got {value}")
    if at_least_zero and value < 0:
        raise InputError(f"{name} must be 0 or more, got {value}")


def declared(cls: Any) -> dict[str, Option]:
    """Every declared field of the dataclass ``cls`` (or an instance), in field order."""
    return {f.name: f.metadata["option"] for f in fields(cls) if "option" in f.metadata}


def check_all(instance: Any) -> None:
    """Every declared field of ``instance`` against its declaration (one :class:`InputError`
    naming the first wrong one). None is a value only of a field whose default is None ("the
    model's", "none"): elsewhere it once passed and failed mid-run."""
    for f in fields(instance):
        if "option" not in f.metadata:
            continue
        value = getattr(instance, f.name)
        if value is None and f.default is not None:
            raise InputError(f"{f.name} cannot be None; leave it out for its default, {f.default!r}")
        check(f.name, value, f.metadata["option"])


def flag(name: str, declaration: Option) -> str:
    """The command-line flag of a declared field."""
    return declaration.flag or "--" + name.replace("_", "-")


def command_defaults(cls: Any) -> dict[str, Any]:
    """The command line's defaults where they differ from the library's (:attr:`Option.command_default`)."""
    return {name: option.command_default for name, option in declared(cls).items() if option.command_default is not None}
