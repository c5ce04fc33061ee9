"""The compositional sandbox: procedural scenes with exact boxes, minimal-pair sets, and a
CLIP-architecture model the project trains itself (shipped as ``comclip/sandbox``).

The ``sandbox`` evaluation dataset (:mod:`comclip.sandbox.dataset`) is named by comclip's own
entry point, so ``load_dataset("sandbox")`` finds it without this package imported first. The
trainer lives in :mod:`comclip.sandbox.training`, which nothing on the inference path imports.
"""

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
