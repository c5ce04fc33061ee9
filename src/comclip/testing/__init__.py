"""Helpers for testing comclip and pipelines built on it without network access.

:func:`make_tiny_clip` writes a real ``transformers`` CLIP model directory (randomly
initialised, a few hundred kilobytes of weights besides the token embedding) with CLIP's
real BPE vocabulary, so every code path that loads and runs a hub model can be exercised
offline: ``--model /that/dir`` works wherever ``--model openai/clip-vit-base-patch32`` would.
"""

from __future__ import annotations

from ..bpe import clip_bpe_files
from .tiny_clip import make_tiny_clip

__all__ = ["clip_bpe_files", "make_tiny_clip"]
