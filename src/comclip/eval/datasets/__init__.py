"""One module per benchmark; each ``load(path, image_dir=None) -> Dataset``, registered by name.

Data made elsewhere registers itself with :func:`register_dataset` (the sandbox does, in
:mod:`comclip.sandbox.dataset`), so this package never imports what sits above it.
"""

from __future__ import annotations

from typing import Callable

from ...errors import InputError
from ...registry import Registry
from . import (aro, cola, colorswap, comvg, jsonl, minimal_pairs, mmvp, retrieval, sugarcrepe, sugarcrepe_pp, svo_probes,
               valse, vl_checklist, whatsup, winoground)
from .base import CAPTION_CHOICE, IMAGE_CHOICE, PAIR_MATCH, TWO_POSITIVES, WINOGROUND, Dataset, Example

#: ``load(path=None, image_dir=None, **options) -> Dataset``.
DATASETS: Registry[Callable[..., Dataset]] = Registry("dataset")
#: Datasets that are generated, not read: ``--data`` is not needed.
GENERATED: set[str] = set()

for _module in (sugarcrepe, comvg, winoground, svo_probes, valse, vl_checklist, aro, whatsup, retrieval, jsonl,
                sugarcrepe_pp, mmvp, colorswap, cola, minimal_pairs):
    DATASETS.add(_module.__name__.rsplit(".", 1)[-1], _module.load)


def register_dataset(name: str, load: Callable[..., Dataset], generated: bool = False) -> None:
    """Add a dataset by name; ``generated`` ones are made from options (a seed), not read from a path."""
    DATASETS.add(name, load)
    if generated:
        GENERATED.add(name)


def load_dataset(name: str, path=None, image_dir=None, **options) -> Dataset:
    """Load a benchmark by its module name; ``options`` are passed on where the module takes
    them (``split`` for Karpathy files) and are an error where it does not."""
    load = DATASETS[name]
    options = {k: v for k, v in options.items() if v is not None}
    try:
        dataset = load(path, image_dir, **options)
    except TypeError as exc:
        if options and "unexpected keyword" in str(exc):
            raise InputError(f"dataset {name!r} takes no option {', '.join(options)}") from None
        raise _malformed(name, path, exc) from None
    except (KeyError, AttributeError, ValueError, IndexError) as exc:
        if isinstance(exc, InputError):
            raise
        raise _malformed(name, path, exc) from None
    dataset.origin = str(path) if path is not None else ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
    return dataset


def _malformed(name: str, path, exc: Exception) -> InputError:
    """A loader tripped over the structure of a user's file: the file's fault, said in one line."""
    return InputError(f"{path}: not a valid {name} dataset ({type(exc).__name__}: {str(exc)[:120]})")


__all__ = ["CAPTION_CHOICE", "DATASETS", "GENERATED", "Dataset", "Example", "IMAGE_CHOICE", "PAIR_MATCH",
           "TWO_POSITIVES", "WINOGROUND",
           "load_dataset", "register_dataset"]
