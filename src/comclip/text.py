"""Checks on captions before they reach a tokenizer."""

from __future__ import annotations

from collections.abc import Sequence

from comclip.errors import InputError


def validate_captions(texts: Sequence[str]) -> list[str]:
    """Return the captions unchanged, or raise naming the first empty or non-string one.

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
        checked.append(text)
    if not checked:
        raise InputError("no captions given")
    return checked
