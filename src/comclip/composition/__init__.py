"""The ComCLIP composition: sub-image weights, the composed embedding and the score modes.

(The sub-images themselves are made in :mod:`comclip.imaging.subimages`, re-exported here.)
"""

from comclip.composition.compose import (
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
from comclip.composition.scoring import SCORE_MODES, Evidence
from comclip.imaging.subimages import FILLS, make_subimage, region_mask

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
