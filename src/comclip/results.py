"""What a ComCLIP score is made of: each sub-image's part (phrase, boxes, s_i, w_i, flags)
and the result of one (image, caption) pair with the configuration that produced it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from comclip.boxes import Box
from comclip.composition.geometry import geometry_bonus, pixel_rule, relation_score, spatial_rule
from comclip.config import PipelineConfig
from comclip.parsing import SceneGraph

if TYPE_CHECKING:
    import torch

NOT_GROUNDED = "not_grounded"
#: Fallbacks a result can take, counted per example in reports (with the weightings' own:
#: ``weights_clamped``, ``uniform_weights``).
NO_ENTITIES, SHARED_BOX = "no_entities", "shared_box"


@dataclass
class Part:
    """One sub-image's contribution: an entity (scored against its phrase) or a relation
    (the union of its subject's and object's regions, scored against the predicate)."""

    kind: str
    phrase: str
    boxes: list[Box]
    similarity: float
    weight: float
    flags: list[str] = field(default_factory=list)
    entities: tuple[int, ...] = ()
    #: An entity's grounding margin: its grounder's best candidate score minus the second's.
    margin: float | None = None

    def to_dict(self, scale: float = 1.0) -> dict:
        """The part as JSON; boxes divided by ``scale`` (analysed pixels per input pixel), so
        they are in the input image's own frame."""
        return {
            "kind": self.kind,
            "phrase": self.phrase,
            "boxes": [(b if scale == 1.0 else b.scaled(1 / scale)).as_list() for b in self.boxes],
            "similarity": self.similarity,
            "weight": self.weight,
            "flags": list(self.flags),
            "entities": list(self.entities),
            "margin": self.margin,
        }


@dataclass
class ComCLIPResult:
    """A ComCLIP score with everything that produced it."""

    image: str
    text: str
    clip: float
    score: float
    parts: list[Part]
    graph: SceneGraph
    fallback: str | None = None
    composed: float | None = None  # the faithful ComCLIP score, where a score mode adds to it
    #: The configuration that made this result (its fill draws the sub-images of a figure).
    config: PipelineConfig = field(default_factory=PipelineConfig)
    #: The fallbacks this pair took: no_entities, not_grounded, shared_box, weights_clamped,
    #: uniform_weights, relation_unverified.
    flags: tuple[str, ...] = ()
    #: With ``relation_check`` geometry or pixels: each spatial relation's check, ``(subject,
    #: predicate, object, g or None, what decided it: "boxes" or "pixels")``.
    spatial: tuple[tuple[int, str, int, float | None, str], ...] = ()
    #: Pixels of the analysed image per pixel of the input: below 1 where a large input was
    #: shrunk before analysis. ``parts`` hold boxes in the analysed frame (as the figure draws
    #: them); :meth:`to_dict` gives them in the input's.
    scale: float = 1.0

    @property
    def relations_term(self) -> float:
        """What the geometric relation check adds to the score (0 without it)."""
        return geometry_bonus([c[3] for c in self.spatial if c[3] is not None], self.config.relation_weight)

    def to_dict(self) -> dict:
        """The result as JSON (``explain --json``, ``score --details``): boxes in the input
        image's own pixels, whatever size it was analysed at."""
        return {
            "image": self.image,
            "text": self.text,
            "clip": self.clip,
            "comclip": self.score,
            "composed": self.composed,
            "fallback": self.fallback,
            "flags": list(self.flags),
            "graph": self.graph.to_dict(),
            "parts": [p.to_dict(self.scale) for p in self.parts],
            "spatial": [{"subject": s, "predicate": p, "object": o, "score": g, "evidence": e} for s, p, o, g, e in self.spatial],
        }


def score_row(text: str, clip: float, scale: float, methods: list[str], parts: dict, with_details: bool) -> dict:
    """One (image, caption) result as ``comclip score --json`` and the app's API give it: the
    CLIP cosine and logit, each composed method's score and (``with_details``) its parts:
    under ``details`` for one composed method, else under ``details`` by method."""
    row: dict = {"text": text}
    if "clip" in methods:
        row["clip"], row["clip_logit"] = clip, clip * scale
    for method, result in parts.items():
        row[method] = result.score
    if with_details and parts:
        described = {method: result.to_dict() for method, result in parts.items()}
        row["details"] = next(iter(described.values())) if len(described) == 1 else described
    return row


def part_flags(parts: list[Part]) -> tuple[str, ...]:
    """not_grounded: some entity fell back to the whole image; shared_box: two entities were
    grounded to the same region (their sub-images are one)."""
    entities = [tuple(p.boxes) for p in parts if p.kind == "entity" and NOT_GROUNDED not in p.flags]
    flags = (NOT_GROUNDED,) if any(NOT_GROUNDED in p.flags for p in parts) else ()
    return flags + ((SHARED_BOX,) if len(set(entities)) < len(entities) else ())


def check_relations(graph: SceneGraph, parts: list[Part], width: int, height: int, pixels: dict | None = None) -> tuple:
    """Each spatial relation of ``graph`` checked on its entities' grounded boxes in a
    ``width`` x ``height`` image: ``(subject, predicate, object, score, evidence)``, score
    None: no evidence. With ``pixels`` (``{(subject, predicate, object): g or None}``, see
    :mod:`comclip.pipeline.pixel_relations`), a relation that boxes cannot show takes its
    pixel verdict where there is one."""
    grounded = {p.entities[0]: p.boxes for p in parts if p.kind == "entity" and NOT_GROUNDED not in p.flags}
    checks = []
    for relation in graph.relations:
        by_pixels = pixels is not None and pixel_rule(relation.predicate) is not None
        verdict = pixels.get((relation.subject, relation.predicate, relation.object)) if by_pixels else None  # type: ignore[union-attr]
        if verdict is not None:
            checks.append((relation.subject, relation.predicate, relation.object, verdict, "pixels"))
            continue
        if spatial_rule(relation.predicate) is None and not by_pixels:
            continue
        subject, obj = grounded.get(relation.subject), grounded.get(relation.object)
        score = relation_score(relation.predicate, subject, obj, width, height) if subject and obj else None
        checks.append((relation.subject, relation.predicate, relation.object, score, "boxes"))
    return tuple(checks)


@dataclass(frozen=True)
class GroupScores:
    """One group's scores (a benchmark example's, see :meth:`ComCLIP.score_groups`): the
    ``[images, texts]`` matrix, the fallbacks its pairs took (``{flag: pairs that took it}``)
    and the ``[images][texts]`` grid of results they came from."""

    matrix: torch.Tensor
    flags: dict[str, int]
    results: list[list[ComCLIPResult]]
