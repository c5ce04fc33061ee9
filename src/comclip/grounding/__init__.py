"""Entity grounding behind :class:`Grounder` and a name registry."""

from __future__ import annotations

from typing import Callable

from ..errors import InputError
from .base import Box, Detection, Grounder, bounding_box


def _clip(backbone, **options):
    from .clip_grounder import CLIPGrounder

    return CLIPGrounder(backbone, **options)


def _regions(backbone, **options):
    from .regions import RegionsGrounder

    return RegionsGrounder(backbone, **options)


def _owlv2(backbone, **options):
    from .detectors import OWLv2Grounder

    return OWLv2Grounder(backbone, **options)


def _grounding_dino(backbone, **options):
    from .detectors import GroundingDINOGrounder

    return GroundingDINOGrounder(backbone, **options)


GROUNDERS: dict[str, Callable[..., Grounder]] = {
    "clip": _clip,
    "regions": _regions,
    "owlv2": _owlv2,
    "grounding-dino": _grounding_dino,
}


def create_grounder(name: str | Grounder, backbone, **options) -> Grounder:
    """A grounder by registered name; it may use ``backbone`` (the clip and regions grounders do)."""
    if isinstance(name, Grounder):
        return name
    if name not in GROUNDERS:
        raise InputError(f"unknown grounder {name!r}; available: {', '.join(GROUNDERS)}")
    return GROUNDERS[name](backbone, **options)


__all__ = ["Box", "Detection", "GROUNDERS", "Grounder", "bounding_box", "create_grounder"]
