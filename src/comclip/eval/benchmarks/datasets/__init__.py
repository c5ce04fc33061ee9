"""One module per benchmark; each ``load(path, image_dir=None) -> Dataset``, registered by name.

Datasets made elsewhere are named by the entry points of the group ``comclip.datasets``
(the sandbox's is in comclip's own ``pyproject.toml``) and imported when first looked up,
so this package never imports what sits above it and any dataset loads in a fresh
interpreter; code can add one with :func:`register_dataset`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from comclip.errors import InputError
from comclip.eval.benchmarks.datasets import (
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
from comclip.eval.benchmarks.datasets.base import (
    CAPTION_CHOICE,
    IMAGE_CHOICE,
    PAIR_MATCH,
    TWO_POSITIVES,
    WINOGROUND,
    Dataset,
    Example,
)
from comclip.registry import Registry

#: ``load(path=None, image_dir=None, **options) -> Dataset``, or a :class:`Generated` one.
DATASETS: Registry[Callable[..., Dataset]] = Registry("dataset", plugins="comclip.datasets")


@dataclass(frozen=True)
class Generated:
    """A dataset made from options (a seed), not read from a path: ``--data`` is not needed."""

    load: Callable[..., Dataset]

    def __call__(self, path=None, image_dir=None, **options) -> Dataset:
        return self.load(path, image_dir, **options)


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
    DATASETS.add(name, Generated(load) if generated else load)


def is_generated(name: str) -> bool:
    """Whether the dataset ``name`` is made from options rather than read from a path."""
    return isinstance(DATASETS[name], Generated)


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


def takes_option(name: str, option: str) -> bool:
    """Whether the dataset ``name`` is read or generated with the keyword ``option`` (``split``,
    ``task``, ``seed``, ``n``): a suite refuses one its dataset would ignore."""
    return _takes(DATASETS[name], option)


def _takes(load: Callable, option: str) -> bool:
    """Whether ``load`` accepts the keyword ``option``."""
    parameters = inspect.signature(load.load if isinstance(load, Generated) else load).parameters.values()
    return any(p.name == option or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


__all__ = [
    "CAPTION_CHOICE",
    "DATASETS",
    "Generated",
    "Dataset",
    "Example",
    "IMAGE_CHOICE",
    "PAIR_MATCH",
    "TWO_POSITIVES",
    "WINOGROUND",
    "is_generated",
    "load_dataset",
    "register_dataset",
]
