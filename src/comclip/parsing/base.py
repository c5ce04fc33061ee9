"""Scene graphs: what a caption says exists (entities) and how things relate (relations).

Every parser returns a :class:`SceneGraph`; grounding and composition only read these
dataclasses, so a new parser is one new file plus a registry entry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from comclip.errors import InputError


@dataclass(frozen=True)
class Entity:
    """A thing the caption mentions: ``head`` is the noun's lemma ("man"), ``phrase`` the words
    naming it with its modifiers ("young man"), ``attributes`` the modifiers ("young")."""

    id: int
    head: str
    phrase: str
    attributes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"id": self.id, "head": self.head, "phrase": self.phrase, "attributes": list(self.attributes)}


@dataclass(frozen=True)
class Relation:
    """``subject`` --predicate--> ``object``, both entity ids; predicate keeps its particles and
    prepositions, with the verb lemmatised ("sit on", "next to")."""

    subject: int
    predicate: str
    object: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SceneGraph:
    """The parse of one caption."""

    text: str
    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)

    def entity(self, entity_id: int) -> Entity:
        for entity in self.entities:
            if entity.id == entity_id:
                return entity
        raise KeyError(entity_id)

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "entities": [e.to_dict() for e in self.entities],
            "relations": [r.to_dict() for r in self.relations],
        }

    @classmethod
    def from_dict(cls, data: Any, text: str | None = None) -> SceneGraph:
        """Build and validate a scene graph from JSON-like data, naming what is malformed."""
        if not isinstance(data, dict):
            raise InputError(f"scene graph must be an object, got {type(data).__name__}")
        caption = text if text is not None else data.get("text", "")
        try:
            entities = [
                Entity(
                    id=int(e["id"]),
                    head=str(e["head"]).strip().lower(),
                    phrase=str(e.get("phrase") or e["head"]).strip(),
                    attributes=tuple(str(a) for a in e.get("attributes", []) or []),
                )
                for e in data.get("entities", [])
            ]
            relations = [
                Relation(subject=int(r["subject"]), predicate=str(r["predicate"]).strip(), object=int(r["object"]))
                for r in data.get("relations", [])
            ]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"malformed scene graph for {caption!r}: {type(exc).__name__}: {exc}") from None
        ids = {e.id for e in entities}
        if len(ids) != len(entities):
            raise InputError(f"malformed scene graph for {caption!r}: duplicate entity ids")
        for e in entities:
            if not e.head:
                raise InputError(f"malformed scene graph for {caption!r}: entity {e.id} has an empty head")
        for r in relations:
            if r.subject not in ids or r.object not in ids:
                raise InputError(
                    f"malformed scene graph for {caption!r}: relation {r.predicate!r} refers to an unknown entity id"
                )
            if not r.predicate:
                raise InputError(f"malformed scene graph for {caption!r}: relation with an empty predicate")
        return cls(text=caption, entities=entities, relations=relations)


class ParseError(InputError):
    """A caption could not be parsed (e.g. an LLM's reply was missing or invalid)."""


class Parser(ABC):
    """Turns captions into scene graphs."""

    name: str = "parser"
    #: Whether its graphs may be kept in the persistent cache (see :mod:`comclip.pipeline.memory`).
    cacheable: bool = False

    @abstractmethod
    def parse(self, text: str) -> SceneGraph:
        """Parse one caption; raise :class:`ParseError` when that is impossible."""

    def parse_many(self, texts: Sequence[str]) -> list[SceneGraph]:
        """Parse several captions (implementations may batch)."""
        return [self.parse(t) for t in texts]

    def describe(self) -> dict:
        return {"name": self.name}
