"""How a backbone runs, declared once: the device, the batch size, the precision and the pixel
path. These do not change what a score means (cosines move by about 1e-3 under autocast, and
reports record the precision and the pixel path), so they are not :class:`~comclip.config.PipelineConfig`
fields; every backbone's constructor, ``create_backbone`` and the command line's flags take
their defaults from :data:`RUNTIME`."""

from __future__ import annotations

from dataclasses import dataclass

from comclip.declared import check, check_all, declared, option
from comclip.imaging.pixels import PIXEL_PATHS

#: fp32, or autocast to bfloat16 / float16 (CUDA) for the forward passes.
PRECISIONS = ("fp32", "amp_bf16", "amp_fp16")


@dataclass(frozen=True)
class RuntimeOptions:
    """How a model runs (see the module docstring)."""

    device: str | None = option(
        "torch device, e.g. cpu or cuda:0", None, default_text="cuda when available, else cpu", from_model=False
    )
    batch_size: int = option("images or texts encoded per forward pass", 32, kind="integer", bound="positive")
    precision: str = option(
        "fp32, or amp_bf16 / amp_fp16 (CUDA) to encode under autocast, faster where the hardware has it; "
        "cosines move by about 1e-3",
        "fp32",
        choices=PRECISIONS,
    )
    pixels: str = option(
        "torch: build sub-images and preprocess images as tensors on the model's device; pil: with PIL and "
        "the model's own processor, the reference (cosines within 0.01 of each other)",
        "torch",
        choices=PIXEL_PATHS,
        default_text="torch; models without a known processor use pil",
    )

    def __post_init__(self) -> None:
        check_all(self)


#: The defaults every signature that takes a runtime option uses.
RUNTIME = RuntimeOptions()


def check_runtime(name: str, value: object) -> None:
    """One runtime option's value against its declaration (a backbone built without
    :class:`RuntimeOptions` is checked by the same rules)."""
    check(name, value, declared(RuntimeOptions)[name])
