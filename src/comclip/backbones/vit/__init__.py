"""What a ViT's tokens give beyond its pooled embedding: patch grids that the default grounder
scores regions from (:mod:`~comclip.backbones.vit.patches`), and sub-images encoded from the
patch tokens a region touches (:mod:`~comclip.backbones.vit.tokens`)."""
