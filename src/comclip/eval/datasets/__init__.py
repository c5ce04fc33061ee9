"""One module per benchmark; each ``load(path, image_dir=None) -> Dataset``."""

from __future__ import annotations

from ...errors import InputError
from . import aro, comvg, jsonl, retrieval, sugarcrepe, svo_probes, valse, vl_checklist, winoground
from .base import CAPTION_CHOICE, IMAGE_CHOICE, WINOGROUND, Dataset, Example

def _sandbox(path=None, image_dir=None, **options) -> Dataset:
    from ...sandbox.evaluate import load

    return load(path, image_dir, **options)


#: Datasets that are generated, not read: ``--data`` is not needed.
GENERATED = {"sandbox"}

DATASETS = {
    "sugarcrepe": sugarcrepe.load,
    "comvg": comvg.load,
    "winoground": winoground.load,
    "svo_probes": svo_probes.load,
    "valse": valse.load,
    "vl_checklist": vl_checklist.load,
    "aro": aro.load,
    "retrieval": retrieval.load,
    "jsonl": jsonl.load,
    "sandbox": _sandbox,
}


def load_dataset(name: str, path=None, image_dir=None, **options) -> Dataset:
    """Load a benchmark by its module name; ``options`` are passed on where the module takes
    them (``split`` for Karpathy files) and are an error where it does not."""
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    options = {k: v for k, v in options.items() if v is not None}
    try:
        return DATASETS[name](path, image_dir, **options)
    except TypeError as exc:
        if options and "unexpected keyword" in str(exc):
            raise InputError(f"dataset {name!r} takes no option {', '.join(options)}") from None
        raise


__all__ = ["CAPTION_CHOICE", "DATASETS", "GENERATED", "Dataset", "Example", "IMAGE_CHOICE", "WINOGROUND", "load_dataset"]
