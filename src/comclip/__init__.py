"""comclip: training-free compositional image-text matching (ComCLIP) over any CLIP-like backbone.

``ComCLIP`` (Jiang, He, Xu, Wang, NAACL 2024) parses a caption into entities and relations,
grounds each entity in the image, encodes the masked sub-images with the same backbone, and
adds their embeddings, weighted by how well they match their phrases, to the global image
embedding before scoring it against the caption.
"""

from __future__ import annotations

from comclip import _interrupt

if _interrupt.started_as_command():
    _interrupt.watch_interrupts()  # first: a Ctrl-C while the package itself imports is exit 130 too

__version__ = "0.1.0"

from comclip import _moved  # noqa: E402

_moved.install()  # the former module names import, with a DeprecationWarning

#: The public names, each imported from its module when first used, so that
#: ``import comclip`` (and ``comclip --help``) does not import torch.
_EXPORTS = {
    "ComCLIP": "comclip.pipeline",
    "PipelineConfig": "comclip.config",
    "create_backbone": "comclip.backbones",
    "list_models": "comclip.backbones",
    "register_model": "comclip.backbones",
    "register_backend": "comclip.backbones",
    "evaluate": "comclip.eval.runs.evaluate",
    "load_dataset": "comclip.eval.benchmarks.datasets",
    "register_dataset": "comclip.eval.benchmarks.datasets",
    "register_method": "comclip.methods",
    "register_kind": "comclip.eval.benchmarks.kinds",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'comclip' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
