"""Captions longer than the model's context, counted once per run from the data.

The encoder cuts such captions and would warn each time it encodes one (not at all when its
embedding comes from the cache, and by its place in a batch rather than by example). An
evaluation says it once instead: how many captions, and the first examples holding one, the
same on a first run and a repeat; the report keeps the count. While it scores, the encoder
neither counts nor warns again (:func:`comclip.backbones.base.truncation_said`).
"""

from __future__ import annotations

import warnings
from typing import Any

from comclip.backbones.base import CaptionTruncatedWarning

#: Example ids a warning names before "...".
SHOWN = 3


def caption_rows(dataset: Any) -> list[tuple[str, str]]:
    """``(example id, caption)`` for every caption a run scores (a retrieval query by its id)."""
    if hasattr(dataset, "examples"):
        return [(ex.id, text) for ex in dataset.examples for text in ex.texts]
    return [(f"t2i/{k}", text) for k, text in enumerate(dataset.captions)]


def truncated_captions(dataset: Any, backbone: Any) -> dict:
    """``{"n_captions", "n_examples", "examples", "context_length"}`` of the captions of
    ``dataset`` the backbone cuts (each distinct caption counted once)."""
    holders: dict[str, list[str]] = {}
    for example_id, text in caption_rows(dataset):
        holders.setdefault(text, []).append(example_id)
    texts = list(holders)
    cut = [text for text, long in zip(texts, backbone.too_long(texts)) if long]
    ids = list(dict.fromkeys(example_id for text in cut for example_id in holders[text]))
    return {"n_captions": len(cut), "n_examples": len(ids), "examples": ids[:20], "context_length": backbone.context_length}


def warn_once(found: dict, model: str) -> None:
    """One warning for the whole run, naming how many captions and the first examples: for
    every run, also a second one in the same process with the same message (Python shows a
    warning once per place unless its filters changed since; ``catch_warnings`` marks them
    changed and keeps the user's own)."""
    if found["n_captions"]:
        shown = ", ".join(found["examples"][:SHOWN]) + (", ..." if found["n_examples"] > SHOWN else "")
        with warnings.catch_warnings():
            warnings.warn(
                f"{found['n_captions']} captions in {found['n_examples']} examples ({shown}) are longer than {model}'s "
                f"context of {found['context_length']} tokens and are truncated",
                CaptionTruncatedWarning,
                stacklevel=2,
            )
