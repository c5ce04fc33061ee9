"""How good is a sandbox model as a CLIP? Held-out retrieval and single-word substitutions.

- ``r@1_i2t`` / ``r@1_t2i``: Recall@1 within galleries of 100 held-out scenes and their full
  captions (every attribute named), as in the CLIP papers' small-gallery checks.
- ``substitution``: for single-word substitution pairs (one colour, size or shape word
  changed, and the scene changed to match), the share of images that score their own
  caption above the other (pairwise accuracy), per attribute type.

Held-out means generated from a seed the trainer never uses (training draws from seed 0's
stream; these default to 1000+).
"""

from __future__ import annotations

import numpy as np

from comclip.eval.benchmarks import metrics
from comclip.sandbox.pairs import minimal_pairs
from comclip.sandbox.scenes import training_example

GALLERY = 100


def model_quality(model: str, seed: int = 1000, n: int = 1000, backbone=None) -> dict:
    """Recall@1 among 100 (both directions) and substitution accuracy per attribute, in percent."""
    from comclip.backbones import create_backbone

    backbone = backbone or create_backbone(model, batch_size=256)
    rng = np.random.default_rng(seed)
    hits: dict[str, list] = {"t2i": [], "i2t": []}
    for _ in range(max(1, n // GALLERY)):
        pairs = [training_example(rng, partial_rate=0.0) for _ in range(GALLERY)]
        similarity = backbone.similarity([scene.render() for scene, _ in pairs], [caption for _, caption in pairs]).numpy()
        gallery_hits = metrics.retrieval_hits(similarity, list(range(GALLERY)), 1)
        for direction in hits:
            hits[direction] += gallery_hits[direction].tolist()
    substitution: dict[str, list[float]] = {}
    for pair in minimal_pairs("substitution", seed, n):
        images = [scene.render() for scene in pair.scenes]
        s = backbone.similarity(images, list(pair.captions)).numpy()
        substitution.setdefault(pair.subset, []).extend([float(s[0, 0] > s[0, 1]), float(s[1, 1] > s[1, 0])])
    return {
        "model": backbone.name,
        "seed": seed,
        "gallery": GALLERY,
        "r@1_i2t": metrics.summarise(hits["i2t"], seed=seed),
        "r@1_t2i": metrics.summarise(hits["t2i"], seed=seed),
        "substitution": {k: {**metrics.summarise(v, seed=seed), "n": len(v)} for k, v in sorted(substitution.items())},
    }
