"""Where and at what precision a backbone runs: the device a name means, and precisions the
device can run (the declared options are in :mod:`comclip.backbones.runtime`)."""

from __future__ import annotations

import torch

from comclip.backbones.runtime import check_runtime
from comclip.errors import InputError

#: ``--precision`` values, as open_clip names them: ``amp_bf16`` runs the forward passes under
#: bfloat16 autocast (about twice as fast on CPUs with AVX-512 BF16 or AMX, and on recent
#: GPUs; cosines move by about 1e-3), ``amp_fp16`` under float16 autocast (CUDA only).
AUTOCAST_DTYPES = {"amp_bf16": torch.bfloat16, "amp_fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> str:
    """``precision`` as declared (:class:`~comclip.backbones.runtime.RuntimeOptions`), and one
    the device can run."""
    check_runtime("precision", precision)
    if precision == "amp_fp16" and device.type != "cuda":
        raise InputError(f"precision amp_fp16 needs a CUDA device, not {device}; on CPU use amp_bf16")
    return precision


#: Device types that run a model (``meta`` holds shapes only, others need a build of their own).
COMPUTE_DEVICES = ("cpu", "cuda", "mps", "xpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` means CUDA when available, else CPU; anything else must be a valid torch device."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"unknown device {device!r}: {exc}") from None
    if resolved.type not in COMPUTE_DEVICES:
        raise InputError(f"device {device!r} cannot run a model: choose one of {', '.join(COMPUTE_DEVICES)}")
    if not _available(resolved.type):
        raise InputError(f"device {device!r} requested but {resolved.type.upper()} is not available on this machine")
    return resolved


def _available(device_type: str) -> bool:
    if device_type == "mps":
        return torch.backends.mps.is_available()
    backend = getattr(torch, device_type, None)  # torch.cuda, torch.xpu
    return device_type == "cpu" or (backend is not None and backend.is_available())
