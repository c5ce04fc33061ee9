"""The compositional sandbox: procedural scenes with exact boxes, minimal-pair sets, and a
CLIP-architecture model the project trains itself (shipped as ``comclip/sandbox``).

Importing this package registers the ``sandbox`` evaluation dataset. The trainer lives in
:mod:`comclip.sandbox.training`, which nothing on the inference path imports.
"""

from comclip.sandbox import dataset  # noqa: F401  (registers the "sandbox" dataset)
from comclip.sandbox.scenes import (
    COLOURS,
    IMAGE_SIZE,
    RELATIONS,
    SHAPES,
    SIZES,
    Scene,
    SceneObject,
    random_scene,
    training_example,
)

__all__ = ["COLOURS", "IMAGE_SIZE", "RELATIONS", "SHAPES", "SIZES", "Scene", "SceneObject", "random_scene", "training_example"]
