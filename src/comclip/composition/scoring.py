"""Score modes: how the composed embedding and the parts' evidence become one score.

Every mode is one small function of the same inputs, so a new one is one function and one
registry entry:

- ``comclip`` (the paper, the default): ``cos(caption, v)`` with ``v`` the composed embedding.
  The parts' phrase cosines ``s_i`` only set the mixing weights; the caption is still
  compared as a whole, which is what leaves CLIP a bag of words.
- ``evidence``: ``cos(caption, v) + lambda * mean_i s_i``, adding how well each entity's
  sub-image matches its own phrase ("red circle" must match the circle's region, not
  just some red somewhere in the image).
- ``evidence-min``: ``cos(caption, v) + lambda * min_i s_i``, a soft AND: a caption is only as
  well supported as its least supported entity (a product of experts in the limit).

``s_i`` are the entity parts' cosines, plus the relation parts' when ``relations`` is set.
Entities that could not be grounded are scored on the whole image (flagged
``not_grounded``), so they add weak but honest evidence rather than none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from comclip.registry import Registry


@dataclass(frozen=True)
class Evidence:
    """What a score mode sees for one (image, caption) pair."""

    composed: float  # cos(caption, composed embedding): the faithful ComCLIP score
    clip: float  # cos(caption, global image embedding)
    entity_similarities: Sequence[float]
    relation_similarities: Sequence[float]


def _pooled(evidence: Evidence, relations: bool) -> torch.Tensor:
    values = list(evidence.entity_similarities) + (list(evidence.relation_similarities) if relations else [])
    return torch.tensor(values, dtype=torch.float64)


#: ``mode(evidence, weight, relations) -> score``.
SCORE_MODES: Registry[Callable[[Evidence, float, bool], float]] = Registry("score mode")


@SCORE_MODES.register("comclip")
def faithful_score(evidence: Evidence, weight: float = 1.0, relations: bool = False) -> float:
    return evidence.composed


@SCORE_MODES.register("evidence")
def evidence_score(evidence: Evidence, weight: float = 1.0, relations: bool = False) -> float:
    s = _pooled(evidence, relations)
    return evidence.composed + (weight * float(s.mean()) if s.numel() else 0.0)


@SCORE_MODES.register("evidence-min")
def evidence_min_score(evidence: Evidence, weight: float = 1.0, relations: bool = False) -> float:
    s = _pooled(evidence, relations)
    return evidence.composed + (weight * float(s.min()) if s.numel() else 0.0)
