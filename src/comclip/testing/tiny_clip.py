"""A tiny randomly initialised CLIP with the real CLIP tokenizer, written to disk."""

from __future__ import annotations

from pathlib import Path

from comclip.text.bpe import clip_bpe_files


def make_tiny_clip(
    path: str | Path,
    seed: int = 0,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    width: int = 32,
    layers: int = 2,
    projection_dim: int = 32,
) -> Path:
    """Write a tiny randomly initialised ``transformers`` CLIP model to ``path``.

    The directory holds ``config.json``, ``model.safetensors``, the CLIP tokenizer (real BPE
    vocabulary, 77-token context) and a CLIP image processor, and loads with
    ``comclip score --model PATH`` or ``CLIPModel.from_pretrained(PATH)``. The same seed
    gives the same weights.
    """
    from comclip._hf_utils import quiet_transformers

    with quiet_transformers():
        return _write_tiny_clip(Path(path), seed, image_size, patch_size, width, layers, projection_dim)


def seeded(model_class, config, seed: int):
    """``model_class(config)`` initialised from ``seed``, leaving the global generator as it was."""
    import torch

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        return model_class(config)
    finally:
        torch.random.set_rng_state(state)


def _write_tiny_clip(
    path: Path, seed: int, image_size: int, patch_size: int, width: int, layers: int, projection_dim: int
) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    path.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = clip_bpe_files(path)
    tokenizer = CLIPTokenizer(str(vocab_file), str(merges_file))
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    heads = max(1, width // 16)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=width,
            intermediate_size=width * 2,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=width,
            intermediate_size=width * 2,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            image_size=image_size,
            patch_size=patch_size,
        ),
        projection_dim=projection_dim,
    )
    seeded(CLIPModel, config, seed).save_pretrained(path, safe_serialization=True)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path
