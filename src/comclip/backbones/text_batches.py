"""Texts in batches of like length.

A model call pads its texts to the longest of them (where the tokenizer pads to the longest,
not to the context), and comclip sends captions, their part phrases and grounder prompts in
one call, so a 5-token prompt would pay a 27-token caption's length. Each call also costs a
pass over the text tower's weights, whatever few texts it holds. So texts go longest first,
cut into batches where padded tokens plus a fixed cost per call are fewest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: What one more model call costs, in padded tokens (a pass over the text tower's weights: about
#: 60 ms for a ViT-B/32's on a 2-core CPU, where a token costs about 0.7 ms in a large batch).
CALL_TOKENS = 64


def like_length_batches(lengths: Sequence[int], size: int, call: int = CALL_TOKENS) -> list[tuple[int, int]]:
    """Cuts of a list of lengths sorted longest first into batches ``[a, b)`` of at most
    ``size``, each padded to its first, with the fewest padded tokens plus ``call`` per batch
    (a shortest path over the cut points)."""
    best = [0.0] + [math.inf] * len(lengths)
    cut = [0] * (len(lengths) + 1)
    for end in range(1, len(lengths) + 1):
        for start in range(max(0, end - size), end):
            cost = best[start] + call + (end - start) * lengths[start]
            if cost < best[end]:
                best[end], cut[end] = cost, start
    batches, end = [], len(lengths)
    while end:
        batches.append((cut[end], end))
        end = cut[end]
    return batches[::-1]
