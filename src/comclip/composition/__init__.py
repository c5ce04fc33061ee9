"""Sub-images and the ComCLIP composition of their embeddings."""

from .compose import WEIGHTINGS, comclip_score, compose_embedding, subimage_weights
from .subimages import FILLS, make_subimage, region_mask

__all__ = ["FILLS", "WEIGHTINGS", "comclip_score", "compose_embedding", "make_subimage", "region_mask", "subimage_weights"]
