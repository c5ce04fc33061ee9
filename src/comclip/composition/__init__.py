"""The ComCLIP composition: sub-image weights, the composed embedding and the score modes.

(The sub-images themselves are made in :mod:`comclip.subimages`, re-exported here.)
"""

from ..subimages import FILLS, make_subimage, region_mask
from .compose import (
    UNIFORM_WEIGHTS,
    WEIGHTINGS,
    WEIGHTS_CLAMPED,
    Composition,
    Weights,
    comclip_score,
    comclip_scores,
    compose_embedding,
    subimage_weights,
    weigh,
)
from .scoring import SCORE_MODES, Evidence

__all__ = [
    "Composition",
    "Evidence",
    "FILLS",
    "UNIFORM_WEIGHTS",
    "WEIGHTS_CLAMPED",
    "Weights",
    "weigh",
    "SCORE_MODES",
    "WEIGHTINGS",
    "comclip_score",
    "comclip_scores",
    "compose_embedding",
    "make_subimage",
    "region_mask",
    "subimage_weights",
]
