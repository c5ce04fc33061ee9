"""Options shared by several commands, and the few helpers every command uses.

Pipeline options are built from :class:`~comclip.config.PipelineConfig`: their choices come
from the registries and their help from the library defaults. An option not given is absent
from the parsed arguments (``argparse.SUPPRESS``), so only what the user typed overrides the
model's own defaults (``comclip.json``) when :func:`pipeline_config` layers them.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

from comclip.errors import InputError
from comclip.jsonfile import check_writable_folder

#: What ``--task`` takes where it names sandbox tasks (comclip.sandbox.dataset.TASK_GROUPS).
SANDBOX_TASKS_HELP = (
    "sandbox tasks, comma-separated: binding, object-swap, order-swap, substitution (the group 'classic', the default); "
    "depth, direction ('pixels'); crowded-binding, crowded-object-swap, crowded-depth, crowded-direction ('crowded'); "
    "or 'all'"
)


def count(minimum: int | None):
    """An argparse type: a whole number, of at least ``minimum`` where one is given."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if minimum is not None and value < minimum:
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
    check_writable_folder(path.parent, f"the folder of {path}")
    return path


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")


def add_model_options(parser: argparse.ArgumentParser, default_model: str | None = None, default_text: str | None = None) -> None:
    """``--model`` and how it runs (:class:`~comclip.backbones.runtime.RuntimeOptions`).
    ``default_text`` describes a default the command chooses itself (``--model`` is then None
    when not given)."""
    from comclip.backbones import DEFAULT_MODEL
    from comclip.backbones.runtime import RuntimeOptions

    model = None if default_text else default_model or DEFAULT_MODEL
    parser.add_argument(
        "--model",
        "-m",
        default=model,
        help="registered name, hf-hub:ORG/NAME, open_clip:ARCH/PRETRAINED or a local model directory "
        f"(default: {default_text or model})",
    )
    add_declared(parser, RuntimeOptions())


def runtime_options(args: argparse.Namespace) -> dict:
    """The runtime options the command's flags hold, as ``create_backbone`` keywords."""
    from comclip.backbones.runtime import RuntimeOptions

    return given(args, RuntimeOptions)


def create_model(args: argparse.Namespace):
    """The backbone the model options name, with the persistent cache where the command has one
    (opened first: a bad cache path is found before the model loads)."""
    from comclip.backbones import create_backbone
    from comclip.backbones.cached import cached

    cache = open_cache(args)
    return cached(create_backbone(args.model, **runtime_options(args)), cache)


def open_cache(args: argparse.Namespace) -> Any:
    """The persistent cache the command's ``--cache`` / ``--no-cache`` name (None: no cache)."""
    if not hasattr(args, "no_cache") or args.no_cache:
        return None
    from comclip.cache.embeddings import SQLiteCache, default_cache_path
    from comclip.world import world_from_env

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
    from comclip.methods import parse_methods as parse

    return parse(value)


def method_help(default: str) -> str:
    from comclip.methods import METHODS

    return f"comma-separated named methods: {', '.join(METHODS)} (comclip methods lists them) (default: {default})"


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`~comclip.config.PipelineConfig` field; not given, a flag is absent
    from the parsed arguments (the model's own defaults then apply)."""
    from comclip.config import PipelineConfig

    add_declared(parser, PipelineConfig(), suppress=True)


def add_declared(parser: argparse.ArgumentParser, defaults: Any, *, suppress: bool = False, only=None) -> None:
    """One flag per declared field of ``defaults``' dataclass (see :mod:`comclip.declared`):
    its flag and former spellings, help, choices, type and default all from the declaration.
    ``suppress``: a flag not given is absent from the parsed arguments (so a layer below it,
    a model's ``comclip.json`` or a suite file, decides); ``only``: these fields alone."""
    from comclip.declared import declared, flag

    for name, option in declared(defaults).items():
        if only is not None and name not in only:
            continue
        default = option.command_default if option.command_default is not None else getattr(defaults, name)
        shown = option.default_text or _shown(default)
        extra: dict = {
            "dest": name,
            "default": argparse.SUPPRESS if suppress else default,
            "help": f"{option.help} (default: {shown})",
        }
        if option.kind == "bool":
            extra["action"] = argparse.BooleanOptionalAction
        elif option.kind == "number":
            extra["type"] = finite
        elif option.kind == "integer":
            extra["type"], extra["metavar"] = count({"positive": 1, "at_least_zero": 0}.get(option.bound or "")), "N"
        if option.choices is not None:
            extra["choices"] = list(option.choices)
        if option.aliases:
            extra["action"] = FormerSpelling
            extra["help"] += f" (formerly {', '.join(option.aliases)}, still accepted)"
        parser.add_argument(flag(name, option), *option.aliases, **extra)


def given(args: argparse.Namespace, cls: Any) -> dict:
    """The declared fields of ``cls`` that the parsed arguments hold, by field name."""
    from comclip.declared import declared

    return {name: getattr(args, name) for name in declared(cls) if hasattr(args, name)}


def add_former_flag(parser: argparse.ArgumentParser, former: str, current: str, dest: str, type=None) -> None:
    """A flag this command no longer uses by that name (``former``, now ``current``): still
    accepted for ``dest``, saying the current name once per use on stderr; not in the help."""
    parser.add_argument(former, dest=dest, type=type, action=FormerSpelling, current=current, help=argparse.SUPPRESS)


class FormerSpelling(argparse._StoreAction):
    """Stores the value like any option; given by a former spelling of its flag, it also says
    the current one (once per use, on stderr). The current one is the flag's first spelling,
    or ``current`` for a former flag declared on its own (:func:`add_former_flag`)."""

    def __init__(self, *args, current: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.current = current or self.option_strings[0]

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if option_string is not None and option_string != self.current:
            print(f"comclip: warning: {option_string} is deprecated; use {self.current}", file=sys.stderr)
        super().__call__(parser, namespace, values, option_string)


def pipeline_flags(name: str) -> list[str]:
    """A field's flag, then its older spellings."""
    from comclip.config import options
    from comclip.declared import flag

    declared = options()[name]
    return [flag(name, declared), *declared.aliases]


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)


def pipeline_options(args: argparse.Namespace) -> dict:
    """The pipeline options the user gave, as PipelineConfig fields."""
    from comclip.config import field_names

    return {name: getattr(args, name) for name in field_names() if hasattr(args, name)}


def method_pipelines(args: argparse.Namespace, names: list[str], backbone=None) -> dict:
    """``{method: PipelineConfig or None (plain CLIP)}``: each named method over the model's
    defaults (without a backbone, the library's: to check options before a model loads), under
    the options the user gave."""
    from comclip.config import PipelineConfig
    from comclip.methods import METHODS, method_configs

    given = pipeline_options(args)
    if given and not any(METHODS[name].composed for name in names):  # an option nothing reads is a mistake
        composed = ", ".join(m for m in METHODS if METHODS[m].composed)
        raise InputError(
            f"{pipeline_flags(next(iter(given)))[0]} is an option of the composed methods ({composed}); "
            f"--method {','.join(names)} uses none of them: add one (--method {','.join(names)},comclip) or drop the option"
        )
    base = PipelineConfig.for_backbone(backbone) if backbone is not None else PipelineConfig()
    return method_configs(names, base, given)


def pipeline_config(args: argparse.Namespace, backbone=None):
    """The options given over the model's defaults over the library's; without a backbone, the
    options alone over the library's (to check them before a model loads)."""
    from comclip.config import PipelineConfig

    if backbone is None:
        return PipelineConfig.layered({}, **pipeline_options(args))
    return PipelineConfig.for_backbone(backbone, **pipeline_options(args))


def log_to_stderr() -> None:
    """comclip's own log lines (``comclip.*`` loggers, INFO and up) on stderr, once. Only its
    own: no handler goes on the root logger, so another library's lines (a hub client's
    retries) are printed once, by its own handler, not a second time by a root one."""
    log = logging.getLogger("comclip")
    if not any(isinstance(h, _CurrentStderr) for h in log.handlers):
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)


class _CurrentStderr(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a line is logged (not the one of
    the first command run in this process: the commands a test runs in-process each see their
    own lines)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def run_in_world(args: argparse.Namespace, body) -> int:
    """``body(args, world)`` in the world torchrun (or srun) describes, one process without it:
    each process on its own device, and the group left however the command ends."""
    from comclip.eval.runs.process_group import leave, world_from_env

    world = world_from_env()
    args.device = world.device(args.device)
    try:
        return body(args, world)
    finally:
        leave(world)
