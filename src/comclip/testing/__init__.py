"""Helpers for testing comclip and pipelines built on it without network access.

:func:`make_tiny_clip` writes a real ``transformers`` CLIP model directory (randomly
initialised, a few hundred kilobytes of weights besides the token embedding) with CLIP's
real BPE vocabulary, so every code path that loads and runs a hub model can be exercised
offline: ``--model /that/dir`` works wherever ``--model openai/clip-vit-base-patch32`` would.
:func:`make_tiny_slip` writes a tiny random checkpoint in SLIP's own file layout
(``--model slip:/that/file.pt``), :func:`make_tiny_blip2` a BLIP-2 retrieval model folder,
:func:`make_tiny_siglip` a SigLIP folder.
"""

from __future__ import annotations

from comclip.testing.tiny_blip2 import make_tiny_blip2
from comclip.testing.tiny_clip import make_tiny_clip
from comclip.testing.tiny_siglip import make_tiny_siglip
from comclip.testing.tiny_slip import make_tiny_slip
from comclip.text.bpe import clip_bpe_files

__all__ = ["clip_bpe_files", "make_tiny_blip2", "make_tiny_clip", "make_tiny_siglip", "make_tiny_slip"]
