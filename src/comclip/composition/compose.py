"""The ComCLIP composition: sub-image weights and the composed image embedding.

Given the global image embedding ``v_global``, sub-image embeddings ``v_i`` and their
cosines ``s_i`` with their phrases:

* ``sum`` weighting (the authors' code): ``w_i = s_i / sum_j s_j``;
* ``softmax`` weighting (the paper): ``w = softmax(s / T)``, ``T`` = 1 / logit scale by default;
* ``v = normalize(v_global + sum_i w_i v_i)`` and the score is ``cos(v, caption)``.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..registry import Registry

#: ``weighting(s, temperature) -> w``: sub-image weights from their phrase cosines ``s`` ([K], float64).
WEIGHTINGS: Registry[Callable[[torch.Tensor, float], torch.Tensor]] = Registry("weighting")


@WEIGHTINGS.register("sum")
def sum_weights(s: torch.Tensor, temperature: float) -> torch.Tensor:
    """``s_i / sum_j s_j``, as the authors' code does; where the total is not positive (only
    possible with negative cosines) the weights would be meaningless, so they are uniform."""
    total = s.sum()
    if total <= 0:
        return torch.full_like(s, 1.0 / s.numel())
    return s / total


@WEIGHTINGS.register("softmax")
def softmax_weights(s: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(s / T)``, as the paper says."""
    if temperature <= 0:
        raise ValueError(f"softmax temperature must be positive, got {temperature}")
    return torch.softmax(s / temperature, dim=0)


def subimage_weights(similarities: torch.Tensor, weighting: str = "sum", temperature: float = 0.01) -> torch.Tensor:
    """Weights of the sub-images from their phrase cosines ``s`` (shape ``[K]``), by the
    registered ``weighting``."""
    weigh = WEIGHTINGS[weighting]
    s = similarities.double()
    if s.numel() == 0:
        return s
    return weigh(s, temperature)


def compose_embedding(global_embedding: torch.Tensor, sub_embeddings: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``normalize(v_global + sum_i w_i v_i)`` in float64."""
    v = global_embedding.double()
    if sub_embeddings.numel():
        v = v + (weights.double()[:, None] * sub_embeddings.double()).sum(dim=0)
    return v / v.norm()


def comclip_score(
    global_embedding: torch.Tensor,
    caption_embedding: torch.Tensor,
    sub_embeddings: torch.Tensor,
    phrase_embeddings: torch.Tensor,
    weighting: str = "sum",
    temperature: float = 0.01,
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """The ComCLIP score with its parts: ``(score, s, w)``."""
    s = (sub_embeddings.double() * phrase_embeddings.double()).sum(dim=-1)
    w = subimage_weights(s, weighting, temperature)
    v = compose_embedding(global_embedding, sub_embeddings, w)
    c = caption_embedding.double()
    return float(v @ (c / c.norm())), s, w
