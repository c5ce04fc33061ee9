"""Cosine similarity between image and text embeddings, single- or multi-vector.

Most backbones give one unit vector per image (``[N, D]``). BLIP-2's contrastive head gives
one per query token (``[N, Q, D]``, each unit norm) and scores an image against a text by the
largest cosine over its query tokens. Every place that compares images with texts goes
through these two functions, so both kinds flow through the same code.
"""

from __future__ import annotations

import torch


def cosines(images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """``[N, M]``: each image against each text (``[M, D]``); multi-vector images by the
    largest cosine over their vectors."""
    if images.dim() == 3:
        return torch.einsum("nqd,md->nqm", images, texts).amax(dim=1)
    return images @ texts.T


def paired_cosines(images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """``[K]``: image k against text k only."""
    if images.dim() == 3:
        return (images * texts[:, None, :]).sum(dim=-1).amax(dim=-1)
    return (images * texts).sum(dim=-1)
