"""Checks on captions before they reach a tokenizer."""

from __future__ import annotations

from collections.abc import Sequence

from comclip.errors import InputError

#: The longest caption read, in characters: far past any text tower's context (77 tokens for
#: CLIP; a tokenizer reads 100,000 characters in a tenth of a second), and far below what
#: spaCy refuses (1,000,000); the parser's own bounds are tighter (256 words, 4,096 characters).
MAX_CAPTION_CHARS = 100_000


def validate_captions(texts: Sequence[str]) -> list[str]:
    """Return the captions unchanged, or raise naming the first empty, non-string or over-long
    (:data:`MAX_CAPTION_CHARS`) one.

    An empty caption has no meaning to score; tokenizers would silently encode it as the
    start/end tokens alone and produce a plausible-looking but meaningless number.
    """
    if isinstance(texts, str):
        texts = [texts]
    checked = []
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"caption #{index} is not a string: {text!r}")
        if not text.strip():
            raise InputError(f"caption #{index} is empty or whitespace only: {text!r}")
        if len(text) > MAX_CAPTION_CHARS:
            raise InputError(
                f"caption #{index} has {len(text):,} characters, more than the {MAX_CAPTION_CHARS:,} comclip reads: {text[:40]!r}..."
            )
        checked.append(text)
    if not checked:
        raise InputError("no captions given")
    return checked
