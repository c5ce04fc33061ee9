"""CLIP's byte-pair encoding: its merge rules and the vocabulary files a CLIP tokenizer reads.

Used to write tokenizers offline: :func:`comclip.testing.make_tiny_clip` writes CLIP's full
vocabulary (49,408 tokens, the same ids as ``openai/clip-vit-base-patch32``), and the
sandbox's trainer a vocabulary restricted to the merges its caption grammar needs.
``assets/bpe_simple_vocab_16e6.txt.gz`` is CLIP's merge file from OpenAI's CLIP repository
(MIT licence).
"""

from __future__ import annotations

import gzip
import json
import math
from importlib import resources
from pathlib import Path

BPE_ASSET = "bpe_simple_vocab_16e6.txt.gz"
#: Number of merges CLIP keeps from the file: 49152 - 256 byte tokens - 2 special tokens.
N_MERGES = 49152 - 256 - 2


def bytes_to_unicode() -> dict[int, str]:
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


def clip_merges() -> list[str]:
    """CLIP's merge rules (``"a b"`` strings), highest priority first."""
    raw = resources.files("comclip").joinpath("assets").joinpath(BPE_ASSET).read_bytes()
    return gzip.decompress(raw).decode("utf-8").split("\n")[1 : N_MERGES + 1]


def write_bpe_files(directory: str | Path, merges: list[str]) -> tuple[Path, Path]:
    """Write a CLIP-style ``vocab.json`` / ``merges.txt`` pair: the 512 byte tokens, one token
    per merge (in merge order) and the two special tokens."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    byte_tokens = list(bytes_to_unicode().values())
    vocab = byte_tokens + [token + "</w>" for token in byte_tokens]
    vocab += ["".join(merge.split()) for merge in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    vocab_file, merges_file = directory / "vocab.json", directory / "merges.txt"
    vocab_file.write_text(json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return vocab_file, merges_file


def clip_bpe_files(directory: str | Path) -> tuple[Path, Path]:
    """Write CLIP's ``vocab.json`` and ``merges.txt`` (49,408 tokens) into ``directory``.

    The vocabulary is derived from the merges exactly as CLIP's own tokenizer does, so token
    ids equal those of ``openai/clip-vit-base-patch32``.
    """
    return write_bpe_files(directory, clip_merges())


def word_merges(word: str, ranks: dict[tuple[str, str], int]) -> list[tuple[str, str]]:
    """The merges CLIP's BPE applies, in order, to turn ``word`` into its tokens."""
    table = bytes_to_unicode()
    symbols = [table[b] for b in word.encode("utf-8")]
    symbols[-1] += "</w>"
    applied = []
    while len(symbols) > 1:
        pairs = [(ranks.get((a, b), math.inf), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:]))]
        rank, i = min(pairs)
        if rank == math.inf:
            break
        pair = (symbols[i], symbols[i + 1])
        applied.append(pair)
        symbols = _merged(symbols, pair)
    return applied


def _merged(symbols: list[str], pair: tuple[str, str]) -> list[str]:
    """``symbols`` with every adjacent occurrence of ``pair`` joined into one symbol."""
    merged, j = [], 0
    while j < len(symbols):
        if j < len(symbols) - 1 and (symbols[j], symbols[j + 1]) == pair:
            merged.append(symbols[j] + symbols[j + 1])
            j += 2
        else:
            merged.append(symbols[j])
            j += 1
    return merged
