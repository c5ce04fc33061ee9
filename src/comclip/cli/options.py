"""Options shared by several commands, and the few helpers every command uses.

Pipeline options are built from :class:`~comclip.config.PipelineConfig`: their choices come
from the registries and their help from the library defaults. An option not given is absent
from the parsed arguments (``argparse.SUPPRESS``), so only what the user typed overrides the
model's own defaults (``comclip.json``) when :func:`pipeline_config` layers them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError

#: Decoding workers: one core or more is left to the model (clip_benchmark's default is 4).
DEFAULT_WORKERS = min(4, max(0, (os.cpu_count() or 1) - 1))


def count(minimum: int):
    """An argparse type: an integer of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def finite(text: str) -> float:
    """An argparse type: a finite number (no nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def output_file(path, suffix: str | None = None, force: bool = False) -> Path:
    """A file the command will write: not a folder, with the format's ``suffix`` where one is
    required, not an existing file unless ``force``, in a folder that exists or can be made and
    that this process may write; checked before any work is done."""
    text = str(path)
    path = Path(path)
    if path.is_dir() or text.endswith(("/", os.sep)):
        raise InputError(f"{text} is a folder; give the file to write")
    if suffix is not None and path.suffix.lower() != suffix:
        raise InputError(f"{path}: the output is a {suffix[1:].upper()} file; give a path ending in {suffix}")
    if path.exists() and not force:
        raise InputError(f"{path} exists; pass --force to overwrite it, or give another path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder of {path}: {exc.strerror or exc}") from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"cannot write {path}: permission denied")
    return path


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")


def add_model_options(parser: argparse.ArgumentParser, default_model: str | None = None, default_text: str | None = None) -> None:
    """``--model`` and how it runs. ``default_text`` describes a default the command chooses
    itself (``--model`` is then None when not given)."""
    from ..backbones import DEFAULT_MODEL
    from ..pixels import PIXEL_PATHS

    model = None if default_text else default_model or DEFAULT_MODEL
    parser.add_argument(
        "--model",
        "-m",
        default=model,
        help="registered name, hf-hub:ORG/NAME, open_clip:ARCH/PRETRAINED or a local model directory "
        f"(default: {default_text or model})",
    )
    parser.add_argument("--batch-size", type=count(1), default=32, help="images or texts encoded per forward pass (default: 32)")
    parser.add_argument(
        "--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cuda when available, else cpu)"
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        help="fp32, or amp_bf16 / amp_fp16 (CUDA) to encode under autocast, faster where the "
        "hardware has it; cosines move by about 1e-3 (default: fp32)",
    )
    parser.add_argument(
        "--pixels",
        default="torch",
        choices=PIXEL_PATHS,
        help="torch: build sub-images and preprocess images as tensors on the model's device; "
        "pil: with PIL and the model's own processor, the reference (cosines within 0.01 of "
        "each other) (default: torch; models without a known processor use pil)",
    )


def create_model(args: argparse.Namespace):
    """The backbone the model options name, with the persistent cache where the command has one
    (opened first: a bad cache path is found before the model loads)."""
    from ..backbones import create_backbone

    cache = open_cache(args)
    backbone = create_backbone(
        args.model, device=args.device, batch_size=args.batch_size, precision=args.precision, pixels=args.pixels
    )
    backbone.cache = cache
    return backbone


def open_cache(args: argparse.Namespace) -> Any:
    """The persistent cache the command's ``--cache`` / ``--no-cache`` name (None: no cache)."""
    if not hasattr(args, "no_cache") or args.no_cache:
        return None
    from ..cache import SQLiteCache, default_cache_path
    from ..world import world_from_env

    return SQLiteCache(args.cache or world_from_env().cache_path(default_cache_path()), timeout=cache_timeout())


def cache_timeout() -> float:
    """Seconds a cache write waits for another process's lock: ``COMCLIP_CACHE_TIMEOUT`` (default 60)."""
    value = os.environ.get("COMCLIP_CACHE_TIMEOUT", "60")
    try:
        seconds = float(value)
    except ValueError:
        raise InputError(f"COMCLIP_CACHE_TIMEOUT must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise InputError(f"COMCLIP_CACHE_TIMEOUT must be 0 or more seconds, got {value!r}")
    return seconds


def add_cache_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache",
        default=None,
        metavar="PATH",
        help="embedding cache file (default: $COMCLIP_CACHE/embeddings.sqlite, ~/.cache/comclip)",
    )
    parser.add_argument("--no-cache", action="store_true", help="encode everything afresh and store nothing")


def parse_methods(value: str) -> list[str]:
    from ..methods import parse_methods as parse

    return parse(value)


def method_help(default: str) -> str:
    from ..methods import METHODS

    return f"comma-separated named methods: {', '.join(METHODS)} (comclip methods lists them) (default: {default})"


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`~comclip.config.PipelineConfig` field, from its declaration (flag,
    help, choices, kind, default); not given, a flag is absent from the parsed arguments."""
    from ..config import PipelineConfig, options

    defaults = PipelineConfig()
    for name, declared in options().items():
        default = declared.default_text or _shown(getattr(defaults, name))
        extra: dict = {"dest": name, "default": argparse.SUPPRESS, "help": f"{declared.help} (default: {default})"}
        if declared.kind == "bool":
            extra["action"] = argparse.BooleanOptionalAction
        elif declared.kind == "number":
            extra["type"] = finite
        if declared.choices is not None:
            extra["choices"] = list(declared.choices)
        if declared.aliases:
            extra["action"] = FormerSpelling
            extra["help"] += f" (formerly {', '.join(declared.aliases)}, still accepted)"
        parser.add_argument(*pipeline_flags(name), **extra)


class FormerSpelling(argparse._StoreAction):
    """Stores the value like any option; given by a former spelling of its flag, it also says
    the current one (once per use, on stderr)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if option_string is not None and option_string != self.option_strings[0]:
            print(f"comclip: warning: {option_string} is deprecated; use {self.option_strings[0]}", file=sys.stderr)
        super().__call__(parser, namespace, values, option_string)


def pipeline_flags(name: str) -> list[str]:
    """A field's flag, then its older spellings."""
    from ..config import options

    declared = options()[name]
    return [declared.flag or "--" + name.replace("_", "-"), *declared.aliases]


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)


def pipeline_options(args: argparse.Namespace) -> dict:
    """The pipeline options the user gave, as PipelineConfig fields."""
    from ..config import field_names

    return {name: getattr(args, name) for name in field_names() if hasattr(args, name)}


def method_pipelines(args: argparse.Namespace, names: list[str], backbone=None) -> dict:
    """``{method: PipelineConfig or None (plain CLIP)}``: each named method over the model's
    defaults (without a backbone, the library's: to check options before a model loads), under
    the options the user gave."""
    from ..config import PipelineConfig
    from ..methods import method_configs

    base = PipelineConfig.for_backbone(backbone) if backbone is not None else PipelineConfig()
    return method_configs(names, base, pipeline_options(args))


def pipeline_config(args: argparse.Namespace, backbone=None):
    """The options given over the model's defaults over the library's; without a backbone, the
    options alone over the library's (to check them before a model loads)."""
    from ..config import PipelineConfig

    if backbone is None:
        return PipelineConfig.layered({}, **pipeline_options(args))
    return PipelineConfig.for_backbone(backbone, **pipeline_options(args))


def log_to_stderr() -> None:
    """comclip's own log lines (``comclip.*`` loggers, INFO and up) on stderr, once. Only its
    own: no handler goes on the root logger, so another library's lines (a hub client's
    retries) are printed once, by its own handler, not a second time by a root one."""
    import logging

    log = logging.getLogger("comclip")
    if not any(getattr(h, "comclip", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.comclip = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def run_in_world(args: argparse.Namespace, body) -> int:
    """``body(args, world)`` in the world torchrun (or srun) describes, one process without it:
    each process on its own device, and the group left however the command ends."""
    from ..eval.distributed import leave, world_from_env

    world = world_from_env()
    args.device = world.device(args.device)
    try:
        return body(args, world)
    finally:
        leave(world)
