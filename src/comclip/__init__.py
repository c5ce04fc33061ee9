"""comclip: training-free compositional image-text matching (ComCLIP) over any CLIP-like backbone.

``ComCLIP`` (Jiang, He, Xu, Wang, NAACL 2024) parses a caption into entities and relations,
grounds each entity in the image, encodes the masked sub-images with the same backbone, and
adds their embeddings, weighted by how well they match their phrases, to the global image
embedding before scoring it against the caption.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["ComCLIP", "__version__", "create_backbone", "list_models"]


def __getattr__(name: str) -> object:
    # Lazy so that `import comclip` (and `comclip --help`) does not import torch.
    if name == "ComCLIP":
        from .pipeline import ComCLIP

        return ComCLIP
    if name in ("create_backbone", "list_models"):
        from . import backbones

        return getattr(backbones, name)
    raise AttributeError(f"module 'comclip' has no attribute {name!r}")
