"""Scene graphs supplied with the data (ComVG and SVO-Probes triplets, or full graphs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from comclip.parsing.base import Entity, ParseError, Parser, Relation, SceneGraph


def graph_from_triplet(text: str, triplet: Any) -> SceneGraph:
    """Two entities and one relation from ``"man,sit,grass"`` or ``("man", "sit", "grass")``."""
    parts = [p.strip() for p in triplet.split(",")] if isinstance(triplet, str) else [str(p).strip() for p in triplet]
    if len(parts) != 3 or not all(parts):
        raise ParseError(f"a triplet needs subject, verb and object, got {triplet!r} for {text!r}")
    subject, verb, obj = parts
    return SceneGraph(
        text=text,
        entities=[Entity(0, subject.lower(), subject), Entity(1, obj.lower(), obj)],
        relations=[Relation(0, verb, 1)],
    )


class GivenParser(Parser):
    """Looks captions up in a table of graphs or triplets instead of parsing them.

    ``graphs`` maps caption -> scene-graph dict (as ``comclip parse --json`` prints) or a
    (subject, verb, object) triplet. A caption missing from the table is an error, not an
    empty parse.
    """

    name = "given"

    def __init__(self, graphs: Mapping[str, Any] | None = None):
        self.graphs = dict(graphs or {})

    def add(self, text: str, graph_or_triplet: Any) -> None:
        self.graphs[text] = graph_or_triplet

    def parse(self, text: str) -> SceneGraph:
        if text not in self.graphs:
            raise ParseError(f"no given scene graph for caption {text!r}")
        value = self.graphs[text]
        if isinstance(value, SceneGraph):
            return value
        if isinstance(value, Mapping):
            return SceneGraph.from_dict(value, text=text)
        return graph_from_triplet(text, value)
