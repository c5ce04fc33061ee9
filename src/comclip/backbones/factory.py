"""Model names -> backbone constructors.

Known models are data (``models.json``: name, backend, source, description), backends are
code (one class per file). A name resolves, in order, as: a registered name; an
``open_clip:ARCH/PRETRAINED`` spec; a ``slip:PATH`` SLIP checkpoint; an ``hf-hub:ORG/NAME``
hub id; a local directory holding a ``transformers`` model. Anything else is an error that suggests close names.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path

from comclip.backbones.base import Backbone
from comclip.backbones.runtime import RUNTIME
from comclip.errors import ModelNotFoundError
from comclip.registry import Registry

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
HF_HUB_PREFIX = "hf-hub:"
OPEN_CLIP_PREFIX = "open_clip:"
SLIP_PREFIX = "slip:"


@dataclass(frozen=True)
class BackendInfo:
    """How to build backbones of one family and what must be installed for it."""

    name: str
    factory: Callable[..., Backbone]
    extra: str | None  # the pip extra that installs its dependencies
    module: str  # the import that must succeed
    #: How a model of this family is named on the command line, and what it is.
    pattern: str = ""
    description: str = ""


def _hf_factory(source, **kwargs):
    """A transformers model; a BLIP-2 retrieval model (by its config) gets its own backend."""
    from comclip.backbones.blip2 import ARCHITECTURE
    from comclip.backbones.hf import HFBackbone, architectures

    if ARCHITECTURE in architectures(source, kwargs.get("name") or source):
        return _blip2_factory(source, **kwargs)
    return HFBackbone(source, **kwargs)


def _blip2_factory(source, **kwargs):
    from comclip.backbones.blip2 import Blip2Backbone

    return Blip2Backbone(source, **kwargs)


def _open_clip_factory(source, **kwargs):
    from comclip.backbones.openclip import OpenCLIPBackbone

    return OpenCLIPBackbone(source, **kwargs)


def _slip_factory(source, **kwargs):
    from comclip.backbones.slip import SLIPBackbone

    return SLIPBackbone(source, **kwargs)


#: Backend families by name. A package adds one with :func:`register_backend`, or lazily as an
#: entry point of the group ``comclip.backends`` naming its :class:`BackendInfo`; nothing is
#: imported until a model of the family is built (each factory imports its own module).
BACKENDS: Registry[BackendInfo] = Registry("backend", plugins="comclip.backends")
for _info in (
    BackendInfo(
        "hf",
        _hf_factory,
        None,
        "transformers",
        "hf-hub:ORG/NAME, ORG/NAME or DIR",
        "transformers dual encoders (CLIP, SigLIP, ...): a Hub id or a save_pretrained() folder",
    ),
    BackendInfo(
        "open_clip",
        _open_clip_factory,
        "openclip",
        "open_clip",
        "open_clip:ARCH/PRETRAINED",
        "open_clip models; PRETRAINED is a tag of open_clip's or the path of a checkpoint",
    ),
    BackendInfo(
        "slip",
        _slip_factory,
        "slip",
        "ftfy",
        "slip:PATH",
        "SLIP (Mu et al., ECCV 2022): a release checkpoint such as slip_base_100ep.pt, read without its code",
    ),
    BackendInfo(
        "blip2",
        _blip2_factory,
        None,
        "transformers",
        "ORG/NAME or DIR of a Blip2ForImageTextRetrieval",
        "BLIP-2's image-text contrastive head, chosen by the model's config (Salesforce/blip2-itm-vit-g)",
    ),
):
    BACKENDS.add(_info.name, _info)


def register_backend(info: BackendInfo) -> BackendInfo:
    """Add a backend family (``info.factory(source, name=, device=, batch_size=, precision=,
    pixels=)`` builds one of its backbones); its models are then named with
    :func:`register_model`."""
    BACKENDS.add(info.name, info)
    return info


def backend_available(backend: str) -> bool:
    """Whether the package a backend family needs imports (installed is not enough: one whose
    own dependencies cannot load, a broken torchvision under open_clip, is not available)."""
    return _imports(BACKENDS[backend].module)


@cache
def _imports(module: str) -> bool:
    from comclip._optional import hide_broken

    if importlib.util.find_spec(module) is None:
        return False
    hide_broken()
    try:
        importlib.import_module(module)
    except Exception:  # any failure: the family cannot run here, whatever the reason
        return False
    return True


@dataclass(frozen=True)
class ModelEntry:
    """A registered model name."""

    name: str
    backend: str
    source: str
    description: str = ""

    @property
    def extra(self) -> str | None:
        return BACKENDS[self.backend].extra

    @property
    def available(self) -> bool:
        """Whether the backend's package is importable (weights may still need downloading)."""
        return backend_available(self.backend)


_EXTRA_ENTRIES: dict[str, ModelEntry] = {}


def register_model(name: str, backend: str, source: str, description: str = "") -> None:
    """Add a model name at run time (plugins, tests, project-shipped models)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {sorted(BACKENDS)}")
    _EXTRA_ENTRIES[name] = ModelEntry(name, backend, source, description)


@lru_cache(maxsize=1)
def _packaged_entries() -> dict[str, ModelEntry]:
    data = json.loads(resources.files(__package__).joinpath("models.json").read_text(encoding="utf-8"))
    return {name: ModelEntry(name=name, **fields) for name, fields in data.items()}


def registered_models() -> dict[str, ModelEntry]:
    """All registered names, packaged ones first."""
    return {**_packaged_entries(), **_EXTRA_ENTRIES}


def list_models() -> list[str]:
    """Registered model names, as open_clip.list_models() does for architectures."""
    return list(registered_models())


PACKAGE_PREFIX = "package:"


def packaged_path(source: str) -> str:
    """``package:PKG/sub/dir`` (model files shipped inside a Python package) as a filesystem path."""
    if not source.startswith(PACKAGE_PREFIX):
        return source
    package, _, relative = source[len(PACKAGE_PREFIX) :].partition("/")
    path = Path(str(resources.files(package))) / relative
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"the packaged model files {source!r} are missing from this installation ({path})")
    return str(path)


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "\\" in name or Path(name).expanduser().exists()


def resolve_model(name: str) -> tuple[str, str]:
    """Map a user's model name to ``(backend, source)``, or raise explaining what names exist."""
    name = str(name).strip()
    if not name:
        raise ModelNotFoundError("empty model name")
    entries = registered_models()
    if name in entries:
        return entries[name].backend, packaged_path(entries[name].source)
    if name.startswith(OPEN_CLIP_PREFIX):
        return "open_clip", name[len(OPEN_CLIP_PREFIX) :]
    if name.startswith(SLIP_PREFIX):
        return "slip", name[len(SLIP_PREFIX) :]
    if name.startswith(HF_HUB_PREFIX):
        return "hf", name[len(HF_HUB_PREFIX) :]
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return "hf", str(path)
        raise ModelNotFoundError(
            f"directory {name!r} is not a model directory: it has no config.json. Pass a directory "
            "written by transformers' save_pretrained() (or comclip.testing.make_tiny_clip)."
        )
    if _looks_like_path(name):
        problem = "is a file, not a model directory" if path.is_file() else "does not exist"
        raise ModelNotFoundError(
            f"model path {name!r} {problem}. Local models are directories written by save_pretrained(); "
            f"checkpoint files are passed as {OPEN_CLIP_PREFIX}ARCH/path/to/file.pt (open_clip) or {SLIP_PREFIX}path/to/file.pt (SLIP)"
        )
    close = difflib.get_close_matches(name, list(entries), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ModelNotFoundError(
        f"unknown model name {name!r}.{hint} Run `comclip models` for the registered names. "
        f"Other Hugging Face hub models are named {HF_HUB_PREFIX}ORG/NAME, open_clip models "
        f"{OPEN_CLIP_PREFIX}ARCH/PRETRAINED, SLIP checkpoints {SLIP_PREFIX}PATH, and a local directory written by save_pretrained() "
        "is passed by its path."
    )


def create_backbone(
    name: str = DEFAULT_MODEL,
    device=None,
    batch_size: int = RUNTIME.batch_size,
    precision: str = RUNTIME.precision,
    pixels: str = RUNTIME.pixels,
) -> Backbone:
    """Build the backbone a model name refers to (see :func:`resolve_model`); ``precision`` is
    one of :data:`~comclip.backbones.runtime.PRECISIONS`, ``pixels`` one of
    :data:`~comclip.imaging.pixels.PIXEL_PATHS`."""
    backend, source = resolve_model(name)
    return BACKENDS[backend].factory(source, name=name, device=device, batch_size=batch_size, precision=precision, pixels=pixels)
