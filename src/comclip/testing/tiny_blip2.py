"""A tiny randomly initialised BLIP-2 retrieval model with its processor, written to disk."""

from __future__ import annotations

import string
from pathlib import Path

from comclip.testing.tiny_clip import seeded

#: BERT's special tokens, then characters and word pieces: any lower-case caption tokenizes.
_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tiny_blip2(
    path: str | Path,
    seed: int = 0,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    width: int = 32,
    layers: int = 2,
    query_tokens: int = 4,
    embed_dim: int = 16,
) -> Path:
    """Write a tiny random ``Blip2ForImageTextRetrieval`` and a ``Blip2Processor`` (BLIP's image
    processor, a BERT tokenizer over characters and word pieces) to the folder ``path``, as
    ``save_pretrained`` does; it loads with ``--model PATH`` like ``Salesforce/blip2-itm-vit-g``."""
    from comclip._hf_utils import quiet_transformers

    with quiet_transformers():
        return _write(Path(path), seed, image_size, patch_size, width, layers, query_tokens, embed_dim)


def _write(
    path: Path, seed: int, image_size: int, patch_size: int, width: int, layers: int, query_tokens: int, embed_dim: int
) -> Path:
    from transformers import BertTokenizer, Blip2Config, Blip2ForImageTextRetrieval, Blip2Processor, BlipImageProcessor

    path.mkdir(parents=True, exist_ok=True)
    symbols = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = _SPECIAL + symbols + [f"##{c}" for c in symbols]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    processor = Blip2Processor(
        image_processor=BlipImageProcessor(size={"height": image_size, "width": image_size}),
        tokenizer=BertTokenizer(str(path / "vocab.txt")),
    )
    vocab_size = len(processor.tokenizer)  # the processor adds its <image> token
    small = dict(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers, num_attention_heads=2)
    config = Blip2Config(
        vision_config=dict(small, image_size=image_size, patch_size=patch_size),
        qformer_config=dict(
            small, vocab_size=vocab_size, encoder_hidden_size=width, cross_attention_frequency=1, use_qformer_text_input=True
        ),
        num_query_tokens=query_tokens,
        image_text_hidden_size=embed_dim,
    )
    config.architectures = ["Blip2ForImageTextRetrieval"]
    seeded(Blip2ForImageTextRetrieval, config, seed).save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
    return path
