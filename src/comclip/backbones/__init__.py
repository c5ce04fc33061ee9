"""Image-text backbones behind one interface (:class:`Backbone`) and a name registry."""

from comclip.backbones.base import Backbone, CaptionTruncatedWarning
from comclip.backbones.devices import resolve_device
from comclip.backbones.factory import (
    BACKENDS,
    DEFAULT_MODEL,
    BackendInfo,
    ModelEntry,
    create_backbone,
    list_models,
    register_backend,
    register_model,
    registered_models,
    resolve_model,
)

__all__ = [
    "BACKENDS",
    "BackendInfo",
    "Backbone",
    "CaptionTruncatedWarning",
    "DEFAULT_MODEL",
    "ModelEntry",
    "create_backbone",
    "list_models",
    "register_backend",
    "register_model",
    "registered_models",
    "resolve_device",
    "resolve_model",
]
