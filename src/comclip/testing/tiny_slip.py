"""A tiny randomly initialised checkpoint in SLIP's own file layout (facebookresearch/SLIP)."""

from __future__ import annotations

import argparse
from pathlib import Path

#: Attention heads of the released architectures: widths below are multiples of them.
_HEADS = {"VITS16": (12, 8), "VITB16": (12, 8), "VITL16": (16, 8)}


def make_tiny_slip(
    path: str | Path, model: str = "SLIP_VITS16", seed: int = 0, *, image_size: int = 32, patch_size: int = 16, layers: int = 2
) -> Path:
    """Write a tiny random checkpoint to the file ``path`` as SLIP's ``main.py`` saves one:
    ``{"epoch", "state_dict", "args", "best_acc"}``, every state-dict key prefixed ``module.``
    (DistributedDataParallel), a timm ViT under ``visual.``, CLIP's text transformer, the two
    projections, ``logit_scale`` and, for SLIP models, the ``image_mlp`` head; ``args`` is an
    ``argparse.Namespace`` naming ``model``. ``model`` is one of SLIP's names (``SLIP_VITS16``,
    ``CLIP_VITB16``, ...): the heads are that architecture's, the widths and depth tiny."""
    import torch

    family, _, arch = model.partition("_")
    vision_heads, text_heads = _HEADS[arch]
    generator = torch.Generator().manual_seed(seed)
    width, text_width, embed = 4 * vision_heads, 4 * text_heads, 16
    state = {**_vision(generator, width, layers, image_size, patch_size), **_text(generator, text_width, layers)}
    state["image_projection"] = _normal(generator, (width, embed), width**-0.5)
    state["text_projection"] = _normal(generator, (text_width, embed), text_width**-0.5)
    state["logit_scale"] = torch.tensor(2.6592)  # log(1 / 0.07), SLIP's initial value
    if family == "SLIP":
        state.update(_ssl_head(generator, width, mlp_dim=32, out_dim=8))
    args = argparse.Namespace(model=model, ssl_mlp_dim=32, ssl_emb_dim=8, ssl_scale=1.0, ssl_temp=0.1, epochs=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in state.items()}, "args": args, "best_acc": 0.0}, path)
    return path


def _normal(generator, shape, std: float):
    import torch

    return torch.randn(shape, generator=generator) * std


def _norm(generator, prefix: str, width: int) -> dict:
    return {f"{prefix}.weight": 1 + _normal(generator, (width,), 0.1), f"{prefix}.bias": _normal(generator, (width,), 0.1)}


def _linear(generator, prefix: str, out_features: int, in_features: int) -> dict:
    return {
        f"{prefix}.weight": _normal(generator, (out_features, in_features), in_features**-0.5),
        f"{prefix}.bias": _normal(generator, (out_features,), 0.02),
    }


def _vision(generator, width: int, layers: int, image_size: int, patch: int) -> dict:
    """timm VisionTransformer keys (no classifier), under ``visual.``."""
    grid = image_size // patch
    state = {
        "visual.cls_token": _normal(generator, (1, 1, width), 0.02),
        "visual.pos_embed": _normal(generator, (1, 1 + grid * grid, width), 0.02),
        "visual.patch_embed.proj.weight": _normal(generator, (width, 3, patch, patch), (3 * patch * patch) ** -0.5),
        "visual.patch_embed.proj.bias": _normal(generator, (width,), 0.02),
        **_norm(generator, "visual.norm", width),
    }
    for n in range(layers):
        block = f"visual.blocks.{n}"
        state.update(
            {
                **_norm(generator, f"{block}.norm1", width),
                **_linear(generator, f"{block}.attn.qkv", 3 * width, width),
                **_linear(generator, f"{block}.attn.proj", width, width),
                **_norm(generator, f"{block}.norm2", width),
                **_linear(generator, f"{block}.mlp.fc1", 4 * width, width),
                **_linear(generator, f"{block}.mlp.fc2", width, 4 * width),
            }
        )
    return state


def _text(generator, width: int, layers: int, vocab: int = 49408, context: int = 77) -> dict:
    """OpenAI CLIP text transformer keys, as SLIP's ``models.CLIP`` names them."""
    state = {
        "token_embedding.weight": _normal(generator, (vocab, width), 0.02),
        "positional_embedding": _normal(generator, (context, width), 0.01),
        **_norm(generator, "ln_final", width),
    }
    for n in range(layers):
        block = f"transformer.resblocks.{n}"
        state.update(
            {
                f"{block}.attn.in_proj_weight": _normal(generator, (3 * width, width), width**-0.5),
                f"{block}.attn.in_proj_bias": _normal(generator, (3 * width,), 0.02),
                **_linear(generator, f"{block}.attn.out_proj", width, width),
                **_norm(generator, f"{block}.ln_1", width),
                **_linear(generator, f"{block}.mlp.c_fc", 4 * width, width),
                **_linear(generator, f"{block}.mlp.c_proj", width, 4 * width),
                **_norm(generator, f"{block}.ln_2", width),
            }
        )
    return state


def _ssl_head(generator, width: int, mlp_dim: int, out_dim: int) -> dict:
    """SLIP's ``image_mlp`` (linear, sync batch norm, ReLU, twice, then linear); unused for matching."""
    import torch

    state = {
        **_linear(generator, "image_mlp.layer1", mlp_dim, width),
        **_linear(generator, "image_mlp.layer2", mlp_dim, mlp_dim),
        **_linear(generator, "image_mlp.layer3", out_dim, mlp_dim),
    }
    for bn in ("image_mlp.bn1", "image_mlp.bn2"):
        state.update(
            {
                **_norm(generator, bn, mlp_dim),
                f"{bn}.running_mean": torch.zeros(mlp_dim),
                f"{bn}.running_var": torch.ones(mlp_dim),
                f"{bn}.num_batches_tracked": torch.tensor(0),
            }
        )
    return state
