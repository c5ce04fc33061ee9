"""A tiny randomly initialised CLIP with the real CLIP tokenizer, written to disk."""

from __future__ import annotations

import gzip
import json
from importlib import resources
from pathlib import Path

#: CLIP's byte-pair-encoding merges, as shipped by OpenAI CLIP and open_clip (MIT licence).
BPE_ASSET = "bpe_simple_vocab_16e6.txt.gz"
#: Number of merges CLIP keeps from the file: 49152 - 256 byte tokens - 2 special tokens.
N_MERGES = 49152 - 256 - 2


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def clip_bpe_files(directory: str | Path) -> tuple[Path, Path]:
    """Write CLIP's ``vocab.json`` and ``merges.txt`` (49,408 tokens) into ``directory``.

    The vocabulary is derived from the merges exactly as CLIP's own tokenizer does, so token
    ids equal those of ``openai/clip-vit-base-patch32``.
    """
    return write_bpe_files(directory, clip_merges())


def clip_merges() -> list[str]:
    """CLIP's merge rules (``"a b"`` strings), highest priority first."""
    raw = resources.files(__package__).joinpath("assets", BPE_ASSET).read_bytes()
    return gzip.decompress(raw).decode("utf-8").split("\n")[1 : N_MERGES + 1]


def write_bpe_files(directory: str | Path, merges: list[str]) -> tuple[Path, Path]:
    """Write a CLIP-style ``vocab.json`` / ``merges.txt`` pair: the 512 byte tokens, one token
    per merge (in merge order) and the two special tokens."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    byte_tokens = list(_bytes_to_unicode().values())
    vocab = byte_tokens + [token + "</w>" for token in byte_tokens]
    vocab += ["".join(merge.split()) for merge in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    vocab_file, merges_file = directory / "vocab.json", directory / "merges.txt"
    vocab_file.write_text(json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return vocab_file, merges_file


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
    from .._hf_utils import quiet_transformers

    with quiet_transformers():
        return _write_tiny_clip(Path(path), seed, image_size, patch_size, width, layers, projection_dim)


def _write_tiny_clip(path: Path, seed: int, image_size: int, patch_size: int, width: int, layers: int, projection_dim: int) -> Path:
    import torch
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
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = CLIPModel(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.save_pretrained(path, safe_serialization=True)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path
