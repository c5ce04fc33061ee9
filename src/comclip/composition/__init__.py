"""Sub-images and the ComCLIP composition of their embeddings."""

from .compose import WEIGHTINGS, comclip_score, compose_embedding, subimage_weights
from .scoring import SCORE_MODES, Evidence
from .subimages import FILLS, make_subimage, region_mask

__all__ = ["Evidence", "FILLS", "SCORE_MODES", "WEIGHTINGS", "comclip_score", "compose_embedding", "make_subimage", "region_mask", "subimage_weights"]
