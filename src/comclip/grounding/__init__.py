"""Entity grounding behind :class:`Grounder` and a name registry."""

from __future__ import annotations

from collections.abc import Callable

from comclip.boxes import Box, bounding_box
from comclip.grounding.base import GROUND_BY, Detection, Grounder
from comclip.registry import Registry


def _clip(backbone, **options):
    from comclip.grounding.clip_grounder import CLIPGrounder

    return CLIPGrounder(backbone, **options)


def _regions(backbone, **options):
    from comclip.grounding.regions import RegionsGrounder

    return RegionsGrounder(backbone, **options)


def _owlv2(backbone, **options):
    from comclip.grounding.detectors import OWLv2Grounder

    return OWLv2Grounder(backbone, **options)


def _grounding_dino(backbone, **options):
    from comclip.grounding.detectors import GroundingDINOGrounder

    return GroundingDINOGrounder(backbone, **options)


def _oracle(backbone, **options):
    from comclip.grounding.oracle import OracleGrounder

    return OracleGrounder(backbone, **options)


def _oracle_masks(backbone, **options):
    from comclip.grounding.oracle import OracleGrounder

    return OracleGrounder(backbone, masks=True, **options)


#: ``factory(backbone, **options) -> Grounder``.
GROUNDERS: Registry[Callable[..., Grounder]] = Registry("grounder")
GROUNDERS.add("clip", _clip)
GROUNDERS.add("regions", _regions)
GROUNDERS.add("owlv2", _owlv2)
GROUNDERS.add("grounding-dino", _grounding_dino)
GROUNDERS.add("oracle", _oracle)  # true boxes, from data that has them
GROUNDERS.add("oracle-masks", _oracle_masks)  # the true pixels that show of each object
#: The grounders that read the data's true objects (given as ``known``), not the image.
ORACLES = ("oracle", "oracle-masks")


def create_grounder(name: str | Grounder, backbone, **options) -> Grounder:
    """A grounder by registered name; it may use ``backbone`` (the clip and regions grounders do)."""
    if isinstance(name, Grounder):
        return name
    return GROUNDERS[name](backbone, **options)


__all__ = ["Box", "Detection", "GROUNDERS", "GROUND_BY", "ORACLES", "Grounder", "bounding_box", "create_grounder"]
