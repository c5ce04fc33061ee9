"""The ComCLIP composition: sub-image weights, the composed embedding and the score modes.

(The sub-images themselves are made in :mod:`comclip.subimages`, re-exported here.)
"""

from ..subimages import FILLS, make_subimage, region_mask
from .compose import WEIGHTINGS, comclip_score, compose_embedding, subimage_weights
from .scoring import SCORE_MODES, Evidence

__all__ = ["Evidence", "FILLS", "SCORE_MODES", "WEIGHTINGS", "comclip_score", "compose_embedding", "make_subimage", "region_mask", "subimage_weights"]
