"""The ComCLIP composition: sub-image weights and the composed image embedding.

Given the global image embedding ``v_global``, sub-image embeddings ``v_i`` and their
cosines ``s_i`` with their phrases:

* ``sum`` weighting (the authors' code): ``w_i = s_i / sum_j s_j``, with negative cosines
  counted as 0 (``sum-raw`` keeps the formula as it is);
* ``softmax`` weighting (the paper): ``w = softmax(s / T)``, ``T`` = 1 / logit scale by default;
* ``v = normalize(v_global + sum_i w_i v_i)`` and the score is ``cos(v, caption)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from comclip.registry import Registry
from comclip.similarity import paired_cosines

#: Fallback flags a weighting reports (counted per example in reports).
WEIGHTS_CLAMPED, UNIFORM_WEIGHTS = "weights_clamped", "uniform_weights"
#: Below this total of positive cosines, ``sum`` weights would be noise: they are uniform.
MIN_TOTAL = 1e-6


class Weights(NamedTuple):
    weights: torch.Tensor
    flags: tuple[str, ...] = ()


#: ``weighting(s, temperature) -> Weights``: sub-image weights from their phrase cosines ``s`` ([K], float64).
WEIGHTINGS: Registry[Callable[[torch.Tensor, float], Weights]] = Registry("weighting")


@WEIGHTINGS.register("sum")
def sum_weights(s: torch.Tensor, temperature: float) -> Weights:
    """``max(s_i, 0) / sum_j max(s_j, 0)``: the authors' ``s_i / sum_j s_j`` wherever every cosine
    is positive. A sub-image that matches its phrase worse than an orthogonal one (a negative
    cosine) gets weight 0 rather than a negative weight that would subtract its embedding
    (flag ``weights_clamped``); where no cosine is positive the weights are uniform (flag
    ``uniform_weights``). So the weights lie in [0, 1] and sum to 1."""
    positive = s.clamp(min=0.0)
    total = positive.sum()
    if total <= MIN_TOTAL:
        return Weights(torch.full_like(s, 1.0 / s.numel()), (UNIFORM_WEIGHTS,))
    return Weights(positive / total, (WEIGHTS_CLAMPED,) if bool((s < 0).any()) else ())


@WEIGHTINGS.register("sum-raw")
def raw_sum_weights(s: torch.Tensor, temperature: float) -> Weights:
    """The authors' ``s_i / sum_j s_j`` as it is, whatever the signs (weights may leave [0, 1]);
    uniform only where the total is exactly zero."""
    total = s.sum()
    if total == 0:
        return Weights(torch.full_like(s, 1.0 / s.numel()), (UNIFORM_WEIGHTS,))
    return Weights(s / total)


@WEIGHTINGS.register("softmax")
def softmax_weights(s: torch.Tensor, temperature: float) -> Weights:
    """``softmax(s / T)``, as the paper says."""
    if temperature <= 0:
        raise ValueError(f"softmax temperature must be positive, got {temperature}")
    return Weights(torch.softmax(s / temperature, dim=0))


def weigh(similarities: torch.Tensor, weighting: str = "sum", temperature: float = 0.01) -> Weights:
    """Weights of the sub-images from their phrase cosines ``s`` (shape ``[K]``), by the
    registered ``weighting``, with the fallback flags it took."""
    weighting_function = WEIGHTINGS[weighting]
    s = similarities.double()
    if s.numel() == 0:
        return Weights(s)
    return weighting_function(s, temperature)


def subimage_weights(similarities: torch.Tensor, weighting: str = "sum", temperature: float = 0.01) -> torch.Tensor:
    """The weights alone (see :func:`weigh`)."""
    return weigh(similarities, weighting, temperature).weights


def compose_embedding(global_embedding: torch.Tensor, sub_embeddings: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``normalize(v_global + sum_i w_i v_i)`` in float64; for multi-vector embeddings
    (``[Q, D]`` per image, BLIP-2's query tokens) per query token: ``v_q = normalize(v_global_q
    + sum_i w_i v_i_q)``."""
    v = global_embedding.double()
    if sub_embeddings.numel():
        v = v + torch.tensordot(weights.double(), sub_embeddings.double(), dims=1)
    return torch.nn.functional.normalize(v, dim=-1)


class Composition(NamedTuple):
    """A ComCLIP score with its parts."""

    score: float
    similarities: torch.Tensor
    weights: torch.Tensor
    flags: tuple[str, ...] = ()


def comclip_score(
    global_embedding: torch.Tensor,
    caption_embedding: torch.Tensor,
    sub_embeddings: torch.Tensor,
    phrase_embeddings: torch.Tensor,
    weighting: str = "sum",
    temperature: float = 0.01,
) -> Composition:
    """The ComCLIP score with its parts: ``(score, s, w, flags)``. With multi-vector image
    embeddings, ``s_i = max_q cos(v_i_q, phrase_i)`` and the score is ``max_q cos(v_q, caption)``."""
    if global_embedding.dim() == 1:  # one vector an image: the batched computation, of one pair
        return comclip_scores(
            global_embedding[None], caption_embedding[None], sub_embeddings[None], phrase_embeddings[None], weighting, temperature
        )[0]
    s = paired_cosines(sub_embeddings.double(), phrase_embeddings.double())
    w, flags = weigh(s, weighting, temperature)
    v = compose_embedding(global_embedding, sub_embeddings, w)
    c = caption_embedding.double()
    return Composition(float(paired_cosines(v[None], (c / c.norm())[None])[0]), s, w, flags)


def comclip_scores(
    global_embeddings: torch.Tensor,
    caption_embeddings: torch.Tensor,
    sub_embeddings: torch.Tensor,
    phrase_embeddings: torch.Tensor,
    weighting: str = "sum",
    temperature: float = 0.01,
) -> list[Composition]:
    """:func:`comclip_score` of many pairs with as many parts each: ``[P, D]`` global and
    caption embeddings, ``[P, K, D]`` sub-image and phrase embeddings. The cosines, composed
    embeddings and scores of all pairs are computed together (a search re-ranks a hundred
    images against one caption); only the weighting, a registered function of one pair's
    cosines, runs pair by pair. Multi-vector embeddings are scored pair by pair."""
    if global_embeddings.dim() != 2:
        return [
            comclip_score(*pair, weighting, temperature)
            for pair in zip(global_embeddings, caption_embeddings, sub_embeddings, phrase_embeddings)
        ]
    subs = sub_embeddings.double()
    s = (subs * phrase_embeddings.double()).sum(dim=-1)
    weighed = [weigh(row, weighting, temperature) for row in s]
    w = torch.stack([x.weights for x in weighed]) if weighed else s
    v = torch.nn.functional.normalize(global_embeddings.double() + torch.einsum("pk,pkd->pd", w, subs), dim=-1)
    c = caption_embeddings.double()
    scores = (v * (c / c.norm(dim=-1, keepdim=True))).sum(dim=-1).tolist()
    return [Composition(score, s_row, x.weights, x.flags) for score, s_row, x in zip(scores, s, weighed)]
