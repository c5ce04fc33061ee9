"""A tiny randomly initialised SigLIP (``transformers``' real ``SiglipModel``), written to disk."""

from __future__ import annotations

from pathlib import Path

from comclip.testing.tiny_clip import seeded
from comclip.text.bpe import clip_bpe_files


def make_tiny_siglip(path: str | Path, seed: int = 0, *, image_size: int = 32, patch_size: int = 8, width: int = 32) -> Path:
    """Write a tiny randomly initialised ``SiglipModel`` to ``path`` with SigLIP's image
    processor (the whole image squashed to ``image_size``, no crop) and, since SigLIP's
    SentencePiece vocabulary cannot be had offline, CLIP's BPE tokenizer; it loads with
    ``--model PATH`` as a hub SigLIP would. The same seed gives the same weights."""
    from comclip._hf_utils import quiet_transformers

    with quiet_transformers():
        return _write(Path(path), seed, image_size, patch_size, width)


def _write(path: Path, seed: int, image_size: int, patch_size: int, width: int) -> Path:
    from transformers import CLIPTokenizer, SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    path.mkdir(parents=True, exist_ok=True)
    tokenizer = CLIPTokenizer(*map(str, clip_bpe_files(path)))
    layers = dict(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2, num_attention_heads=2)
    text = dict(layers, vocab_size=len(tokenizer), max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id)
    config = SiglipConfig(text_config=text, vision_config=dict(layers, image_size=image_size, patch_size=patch_size))
    seeded(SiglipModel, config, seed).save_pretrained(path, safe_serialization=True)
    image_processor = SiglipImageProcessor(size={"height": image_size, "width": image_size})
    SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path
