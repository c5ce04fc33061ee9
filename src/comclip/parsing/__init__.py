"""Caption parsing into scene graphs, behind :class:`Parser` and a name registry."""

from __future__ import annotations

from collections.abc import Callable

from comclip.parsing.base import Entity, ParseError, Parser, Relation, SceneGraph
from comclip.registry import Registry


def _spacy(**options):
    from comclip.parsing.spacy_parser import SpacyParser

    return SpacyParser(**options)


def _llm(**options):
    from comclip.parsing.llm import LLMParser

    return LLMParser(**options)


def _given(**options):
    from comclip.parsing.given import GivenParser

    return GivenParser(**options)


#: ``factory(**options) -> Parser``.
PARSERS: Registry[Callable[..., Parser]] = Registry("parser")
PARSERS.add("spacy", _spacy)
PARSERS.add("llm", _llm)
PARSERS.add("given", _given)  # graphs supplied with the data
_CACHE: dict[str, Parser] = {}


def create_parser(name: str | Parser = "spacy", **options) -> Parser:
    """A parser by registered name (``spacy``, ``llm``, ``given``); instances pass through.

    spaCy pipelines take seconds to load, so parsers without options are shared.
    """
    if isinstance(name, Parser):
        return name
    PARSERS.check(name)
    if options or name == "given":
        return PARSERS[name](**options)
    if name not in _CACHE:
        _CACHE[name] = PARSERS[name]()
    return _CACHE[name]


__all__ = ["Entity", "PARSERS", "ParseError", "Parser", "Relation", "SceneGraph", "create_parser"]
