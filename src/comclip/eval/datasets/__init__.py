"""One module per benchmark; each ``load(path, image_dir=None) -> Dataset``, registered by name.

Data made elsewhere registers itself with :func:`register_dataset` (the sandbox does, in
:mod:`comclip.sandbox.dataset`), so this package never imports what sits above it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from ...errors import InputError
from ...registry import Registry
from . import (
    aro,
    cola,
    colorswap,
    comvg,
    jsonl,
    minimal_pairs,
    mmvp,
    retrieval,
    sugarcrepe,
    sugarcrepe_pp,
    svo_probes,
    valse,
    vl_checklist,
    whatsup,
    winoground,
)
from .base import CAPTION_CHOICE, IMAGE_CHOICE, PAIR_MATCH, TWO_POSITIVES, WINOGROUND, Dataset, Example

#: ``load(path=None, image_dir=None, **options) -> Dataset``.
DATASETS: Registry[Callable[..., Dataset]] = Registry("dataset")
#: Datasets that are generated, not read: ``--data`` is not needed.
GENERATED: set[str] = set()

for _module in (
    sugarcrepe,
    comvg,
    winoground,
    svo_probes,
    valse,
    vl_checklist,
    aro,
    whatsup,
    retrieval,
    jsonl,
    sugarcrepe_pp,
    mmvp,
    colorswap,
    cola,
    minimal_pairs,
):
    DATASETS.add(_module.__name__.rsplit(".", 1)[-1], _module.load)


def register_dataset(name: str, load: Callable[..., Dataset], generated: bool = False) -> None:
    """Add a dataset by name; ``generated`` ones are made from options (a seed), not read from a path."""
    DATASETS.add(name, load)
    if generated:
        GENERATED.add(name)


def load_dataset(name: str, path=None, image_dir=None, **options) -> Dataset:
    """Load a benchmark by its module name; ``options`` are passed on where the module takes
    them (``split`` for Karpathy files) and are an error where it does not.

    A loader raises :class:`~comclip.errors.InputError` for whatever is wrong with the user's
    file; any other exception is a bug in the loader and is not dressed up as the file's fault.
    """
    load = DATASETS[name]
    options = {k: v for k, v in options.items() if v is not None}
    refused = [k for k in options if not _takes(load, k)]
    if refused:
        raise InputError(f"dataset {name!r} takes no option {', '.join(refused)}")
    dataset = load(path, image_dir, **options)
    if not len(dataset):
        raise InputError(f"{path if path is not None else name}: no examples in this {name} dataset; nothing to evaluate")
    problem = dataset.first_problem()
    if problem is not None:
        raise InputError(f"{path}: {problem}")
    dataset.origin = str(path) if path is not None else ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
    return dataset


def _takes(load: Callable, option: str) -> bool:
    """Whether ``load`` accepts the keyword ``option``."""
    parameters = inspect.signature(load).parameters.values()
    return any(p.name == option or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


__all__ = [
    "CAPTION_CHOICE",
    "DATASETS",
    "GENERATED",
    "Dataset",
    "Example",
    "IMAGE_CHOICE",
    "PAIR_MATCH",
    "TWO_POSITIVES",
    "WINOGROUND",
    "load_dataset",
    "register_dataset",
]
