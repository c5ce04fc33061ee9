"""Caption parsing into scene graphs, behind :class:`Parser` and a name registry."""

from __future__ import annotations

from typing import Callable

from ..errors import InputError
from .base import Entity, ParseError, Parser, Relation, SceneGraph


def _spacy(**options):
    from .spacy_parser import SpacyParser

    return SpacyParser(**options)


def _llm(**options):
    from .llm import LLMParser

    return LLMParser(**options)


def _given(**options):
    from .given import GivenParser

    return GivenParser(**options)


PARSERS: dict[str, Callable[..., Parser]] = {"spacy": _spacy, "llm": _llm, "given": _given}
_CACHE: dict[tuple, Parser] = {}


def create_parser(name: str | Parser = "spacy", **options) -> Parser:
    """A parser by registered name (``spacy``, ``llm``, ``given``); instances pass through.

    spaCy pipelines take seconds to load, so parsers without options are shared.
    """
    if isinstance(name, Parser):
        return name
    if name not in PARSERS:
        raise InputError(f"unknown parser {name!r}; available: {', '.join(PARSERS)}")
    if options or name == "given":
        return PARSERS[name](**options)
    if name not in _CACHE:
        _CACHE[(name,)] = PARSERS[name]()
    return _CACHE[(name,)]


__all__ = ["Entity", "PARSERS", "ParseError", "Parser", "Relation", "SceneGraph", "create_parser"]
