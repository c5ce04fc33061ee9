"""The compositional sandbox: procedural scenes with exact boxes, minimal-pair sets, and a
CLIP-architecture model the project trains itself (shipped as ``comclip/sandbox``)."""

from .scenes import COLOURS, IMAGE_SIZE, RELATIONS, SHAPES, SIZES, Scene, SceneObject, random_scene, training_example

__all__ = ["COLOURS", "IMAGE_SIZE", "RELATIONS", "SHAPES", "SIZES", "Scene", "SceneObject", "random_scene", "training_example"]
