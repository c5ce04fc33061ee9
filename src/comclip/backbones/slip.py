"""SLIP checkpoints (Mu, Kirillov, Wagner, Xie, ECCV 2022; facebookresearch/SLIP), by path:
``slip:PATH``, e.g. ``slip:~/models/slip_base_100ep.pt``.

A SLIP release file is a pickle holding ``state_dict`` (every key prefixed ``module.``) and
``args`` (an ``argparse.Namespace`` whose ``model`` names the architecture, e.g.
``SLIP_VITB16``). The model, from that repository's ``models.py``: a timm VisionTransformer
(``vit_small_mocov3_patch16_224`` for ViT-S, ``vit_base_patch16_224``, ``vit_large_patch16_224``,
no classifier: the class token after the final norm) under ``visual.``; OpenAI CLIP's text
transformer (causal mask, QuickGELU, the end-of-text token's state after ``ln_final``);
``image_projection`` and ``text_projection`` (multiplied on the right), ``logit_scale``;
``image_mlp`` (SLIP's self-supervised head) is not used for matching.

Captions and images are prepared exactly as SLIP's own code prepares them, without its
dependencies (torchvision): its ``tokenizer.py`` cleans text with ftfy, unescapes HTML
entities twice, collapses whitespace and lower-cases, then applies CLIP's BPE between start
and end tokens; a caption past 77 tokens is cut there, its end token lost, and the text
feature is the state at the highest token id (``encode_text``'s argmax), zeros padding the
rest. Images (``eval_zeroshot.py``) go through torchvision's ``Resize(224)`` (bilinear, the
short side to 224, the long side truncated to an integer), ``CenterCrop(224)`` (its offset
rounded, not floored) and ImageNet's mean and std; so SLIP uses the PIL pixel path. ftfy is
the ``slip`` extra.

The weights are mapped onto ``transformers``' ``ViTModel`` and ``CLIPTextModel``, which
compute exactly these functions (pre-norm blocks, fused qkv split into query, key and value,
exact GELU and LayerNorm eps 1e-6 on the vision side), so no timm is needed: timm imports
torchvision, which many CPU or custom torch builds lack. The file is read with
``torch.load(weights_only=True)``, allowing only ``argparse.Namespace`` besides tensors, so
a crafted file cannot run code.
"""

from __future__ import annotations

import argparse
import html
import importlib.util
import inspect
import pickle
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from comclip._hf_utils import quiet_transformers
from comclip.backbones.base import Backbone
from comclip.backbones.runtime import RUNTIME
from comclip.backbones.vit.tokens import ViewGeometry, centre_crop_geometry
from comclip.digests import files_digest
from comclip.errors import ModelNotFoundError
from comclip.text.bpe import clip_bpe_files

PREFIX = "slip:"
#: Attention heads of each released architecture (widths and depths are read from the weights).
HEADS = {"VITS16": (12, 8), "VITB16": (12, 8), "VITL16": (16, 8)}  # (vision, text)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def read_checkpoint(path: Path) -> tuple[dict, str]:
    """The state dict (``module.`` removed) and the stored model name of a SLIP release file."""
    if not path.is_file():
        raise ModelNotFoundError(f"SLIP checkpoint not found: {path}")
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is None:
        raise ModelNotFoundError("loading SLIP checkpoints safely needs torch >= 2.4 (torch.serialization.safe_globals)")
    try:
        with safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelNotFoundError(
            f"refusing to load {path}: it holds more than tensors and SLIP's stored arguments, and "
            f"loading it could run code ({str(exc).splitlines()[0][:200]})"
        ) from None
    except (RuntimeError, OSError, EOFError) as exc:
        raise ModelNotFoundError(f"cannot read SLIP checkpoint {path}: {exc}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "args" not in checkpoint:
        raise ModelNotFoundError(f"{path} is not a SLIP checkpoint: it needs 'state_dict' and 'args' entries")
    model = str(getattr(checkpoint["args"], "model", ""))
    state = {key.removeprefix("module."): value for key, value in checkpoint["state_dict"].items()}
    return state, model


def architecture(model: str, state: dict, path: Path) -> dict:
    """Sizes of the vision and text towers: heads from the model name, the rest from the weights."""
    family, _, arch = model.partition("_")
    if family == "SIMCLR":
        raise ModelNotFoundError(f"{path} is a SIMCLR checkpoint ({model}): it has no text tower to match captions with")
    if family not in ("SLIP", "CLIP") or arch not in HEADS:
        raise ModelNotFoundError(
            f"{path}: unknown SLIP model {model!r}; known: " + ", ".join(f"{f}_{a}" for f in ("SLIP", "CLIP") for a in HEADS)
        )
    vision_heads, text_heads = HEADS[arch]
    patch = state["visual.patch_embed.proj.weight"]
    grid = int(round((state["visual.pos_embed"].shape[1] - 1) ** 0.5))
    return {
        "vision": {
            "hidden_size": patch.shape[0],
            "patch_size": patch.shape[-1],
            "image_size": grid * patch.shape[-1],
            "num_hidden_layers": _count_blocks(state, "visual.blocks."),
            "num_attention_heads": vision_heads,
            "intermediate_size": state["visual.blocks.0.mlp.fc1.weight"].shape[0],
        },
        "text": {
            "hidden_size": state["token_embedding.weight"].shape[1],
            "vocab_size": state["token_embedding.weight"].shape[0],
            "max_position_embeddings": state["positional_embedding"].shape[0],
            "num_attention_heads": text_heads,
            "num_hidden_layers": _count_blocks(state, "transformer.resblocks."),
            "intermediate_size": state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        },
    }


def _count_blocks(state: dict, prefix: str) -> int:
    return len({key[len(prefix) :].split(".")[0] for key in state if key.startswith(prefix)})


#: A weight's place in a transformers module, as the names its versions give it (4.x, 5.x).
Target = tuple[str, ...]


def vision_weights(state: dict, layers: int) -> dict[Target, torch.Tensor]:
    """timm ViT weights (``visual.``) -> their places in ``ViTModel``."""
    out: dict[Target, torch.Tensor] = {
        ("embeddings.cls_token",): state["visual.cls_token"],
        ("embeddings.position_embeddings",): state["visual.pos_embed"],
        ("embeddings.patch_embeddings.projection.weight",): state["visual.patch_embed.proj.weight"],
        ("embeddings.patch_embeddings.projection.bias",): state["visual.patch_embed.proj.bias"],
        ("layernorm.weight",): state["visual.norm.weight"],
        ("layernorm.bias",): state["visual.norm.bias"],
    }
    renamed = {
        "norm1": ("layernorm_before",),
        "norm2": ("layernorm_after",),
        "attn.proj": ("attention.output.dense", "attention.o_proj"),
        "mlp.fc1": ("intermediate.dense", "mlp.fc1"),
        "mlp.fc2": ("output.dense", "mlp.fc2"),
    }
    split = (
        ("attention.attention.query", "attention.q_proj"),
        ("attention.attention.key", "attention.k_proj"),
        ("attention.attention.value", "attention.v_proj"),
    )
    for n in range(layers):
        block, layers_at = f"visual.blocks.{n}.", (f"encoder.layer.{n}.", f"layers.{n}.")
        for kind in ("weight", "bias"):
            for old, names in renamed.items():
                out[_places(layers_at, names, kind)] = state[f"{block}{old}.{kind}"]
            for names, part in zip(split, state[f"{block}attn.qkv.{kind}"].chunk(3)):
                out[_places(layers_at, names, kind)] = part
    return out


def text_weights(state: dict, layers: int) -> dict[Target, torch.Tensor]:
    """OpenAI-CLIP text weights -> their places in ``CLIPTextModel``."""
    roots = ("text_model.", "")
    out: dict[Target, torch.Tensor] = {
        _places(roots, ("embeddings.token_embedding",), "weight"): state["token_embedding.weight"],
        _places(roots, ("embeddings.position_embedding",), "weight"): state["positional_embedding"],
        _places(roots, ("final_layer_norm",), "weight"): state["ln_final.weight"],
        _places(roots, ("final_layer_norm",), "bias"): state["ln_final.bias"],
    }
    renamed = {
        "ln_1": "layer_norm1",
        "ln_2": "layer_norm2",
        "mlp.c_fc": "mlp.fc1",
        "mlp.c_proj": "mlp.fc2",
        "attn.out_proj": "self_attn.out_proj",
    }
    for n in range(layers):
        block, layers_at = f"transformer.resblocks.{n}.", tuple(f"{r}encoder.layers.{n}." for r in roots)
        for kind, key in (("weight", "in_proj_weight"), ("bias", "in_proj_bias")):
            for old, new in renamed.items():
                out[_places(layers_at, (new,), kind)] = state[f"{block}{old}.{kind}"]
            for name, part in zip(("q_proj", "k_proj", "v_proj"), state[f"{block}attn.{key}"].chunk(3)):
                out[_places(layers_at, (f"self_attn.{name}",), kind)] = part
    return out


def _places(prefixes: Sequence[str], names: Sequence[str], kind: str) -> Target:
    return tuple(f"{prefix}{name}.{kind}" for prefix in prefixes for name in names)


def _load_weights(model: torch.nn.Module, weights: dict[Target, torch.Tensor], what: str, path: Path) -> None:
    """Copy each weight to the first of its places the module has; every parameter must get one."""
    parameters = dict(model.named_parameters())
    filled = set()
    for places, value in weights.items():
        place = next((p for p in places if p in parameters), None)
        if place is None or parameters[place].shape != value.shape:
            found = "no such parameter" if place is None else f"shape {tuple(parameters[place].shape)}"
            raise ModelNotFoundError(
                f"{path}: the {what} weight for {places[0]} does not fit ({found}, checkpoint {tuple(value.shape)})"
            )
        with torch.no_grad():
            parameters[place].copy_(value)
        filled.add(place)
    left = sorted(set(parameters) - filled)
    if left:
        raise ModelNotFoundError(f"{path}: the checkpoint gives no {what} weights for {', '.join(left[:3])}")


class SLIPBackbone(Backbone):
    """A SLIP (or SLIP-release CLIP) checkpoint, on transformers' ViT and CLIP text modules;
    captions and pixels prepared by SLIP's own rules (no ``pixel_spec``: the PIL path)."""

    def __init__(
        self,
        source: str,
        name: str | None = None,
        device=None,
        batch_size: int = RUNTIME.batch_size,
        precision: str = RUNTIME.precision,
        pixels: str = RUNTIME.pixels,
    ):
        super().__init__(name or f"{PREFIX}{source}", device=device, batch_size=batch_size, precision=precision, pixels=pixels)
        self.path = Path(source.removeprefix(PREFIX)).expanduser()
        state, self.model_name = read_checkpoint(self.path)
        try:
            sizes = architecture(self.model_name, state, self.path)
            self.visual, self.text = _build_towers(state, sizes, self.path)
            self.image_projection = state["image_projection"].float().to(self.device)
            self.text_projection = state["text_projection"].float().to(self.device)
            self._logit_scale = float(state["logit_scale"].exp())
        except KeyError as exc:
            raise ModelNotFoundError(f"{self.path} is not a SLIP checkpoint: its state dict lacks {exc}") from None
        self.visual.eval().to(self.device)
        self.text.eval().to(self.device)
        _needs_ftfy()
        self.tokenizer = _tokenizer()  # its BPE; SLIP's cleaning and cut are slip_ids / slip_tokens
        self._context = sizes["text"]["max_position_embeddings"]

    @property
    def fingerprint(self) -> str:
        """The name plus a hash of the checkpoint file."""
        if getattr(self, "_fingerprint", None) is None:
            self._fingerprint = f"{self.name}@{files_digest([Path(self.path)])}"
        return self._fingerprint

    @property
    def logit_scale(self) -> float:
        return self._logit_scale

    @property
    def image_size(self) -> int:
        return int(self.visual.config.image_size)

    @property
    def context_length(self) -> int:
        return self._context

    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixel_values=pixels).last_hidden_state[:, 0] @ self.image_projection

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        ids = slip_tokens(self.tokenizer, texts, self._context).to(self.device)
        hidden = self.text(input_ids=ids).last_hidden_state  # after ln_final; the causal mask alone, as SLIP
        return hidden[torch.arange(len(ids), device=ids.device), ids.argmax(dim=-1)] @ self.text_projection

    def _token_count(self, text: str) -> int:
        return len(slip_ids(self.tokenizer, text))

    def _processor_pixels(self, images: list[Image.Image]) -> torch.Tensor:
        return slip_pixels(images, self.image_size)

    def describe(self) -> dict:
        return {**super().describe(), "checkpoint": str(self.path), "architecture": self.model_name}

    # --- sub-images from patch tokens (see comclip.backbones.vit.tokens) ---------------------
    @property
    def _layers(self):
        """The ViT's blocks (transformers 5 keeps them on the model, 4 under ``encoder.layer``)."""
        return getattr(self.visual, "layers", None) or self.visual.encoder.layer

    @property
    def supports_tokens(self) -> bool:  # blocks that take an attention mask (transformers 5)
        return "attention_mask" in inspect.signature(self._layers[0].forward).parameters

    def view_geometry(self, size: tuple[int, int]) -> ViewGeometry:
        return centre_crop_geometry(size, self.image_size, int(self.visual.config.patch_size))

    def embed_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        conv = self.visual.embeddings.patch_embeddings.projection
        return conv(pixels.to(conv.weight.dtype)).flatten(2).transpose(1, 2)

    def class_and_positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        embeddings = self.visual.embeddings
        return embeddings.cls_token[0, 0], embeddings.position_embeddings[0]

    def encode_token_sequences(self, tokens: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        mask, hidden = key_bias[:, None, None, :].to(tokens.dtype), tokens
        for layer in self._layers:
            hidden = layer(hidden, mask)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        return self.visual.layernorm(hidden[:, 0]) @ self.image_projection


def _build_towers(state: dict, sizes: dict, path: Path):
    from transformers import CLIPTextConfig, CLIPTextModel, ViTConfig, ViTModel

    vision_config = ViTConfig(**sizes["vision"], hidden_act="gelu", layer_norm_eps=1e-6, qkv_bias=True)
    text_config = CLIPTextConfig(
        **sizes["text"], hidden_act="quick_gelu", layer_norm_eps=1e-5, bos_token_id=49406, eos_token_id=49407, pad_token_id=0
    )
    with quiet_transformers():
        visual = ViTModel(vision_config, add_pooling_layer=False)
        text = CLIPTextModel(text_config)
    _load_weights(visual, vision_weights(state, sizes["vision"]["num_hidden_layers"]), "vision", path)
    _load_weights(text, text_weights(state, sizes["text"]["num_hidden_layers"]), "text", path)
    return visual, text


def _tokenizer():
    """CLIP's BPE tokenizer (SLIP's SimpleTokenizer is CLIP's): start and end tokens, 77 at most."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as directory, quiet_transformers():
        vocab, merges = clip_bpe_files(directory)
        return CLIPTokenizer(str(vocab), str(merges))


def _needs_ftfy() -> None:
    if importlib.util.find_spec("ftfy") is None:
        raise ModelNotFoundError("SLIP's tokenizer cleans captions with ftfy: pip install 'comclip[slip]'")


def slip_clean(text: str) -> str:
    """SLIP's ``basic_clean`` then ``whitespace_clean``, lower-cased: ftfy's fixes, HTML
    entities unescaped twice (``"tom &amp;amp; jerry"`` is ``"tom & jerry"``), runs of
    whitespace made one space."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip().lower()


def slip_ids(tokenizer, text: str) -> list[int]:
    """Start token, CLIP's BPE of the cleaned caption, end token (not yet cut to the context)."""
    bpe = tokenizer(slip_clean(text), add_special_tokens=False)["input_ids"]
    return [tokenizer.bos_token_id, *bpe, tokenizer.eos_token_id]


def slip_tokens(tokenizer, texts: Sequence[str], context: int) -> torch.Tensor:
    """``[len(texts), context]`` as SLIP's tokenizer returns them: cut to ``context`` (the end
    token is lost past it), zeros after."""
    out = torch.zeros(len(texts), context, dtype=torch.long)
    for row, text in zip(out, texts):
        ids = slip_ids(tokenizer, text)[:context]
        row[: len(ids)] = torch.tensor(ids)
    return out


def slip_pixels(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """torchvision's ``Resize(size)``, ``CenterCrop(size)``, ``ToTensor()`` and ImageNet's
    ``Normalize`` on PIL images, as SLIP evaluates (``[N, 3, size, size]``)."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    out = []
    for image in images:
        width, height = image.size
        short, long = min(width, height), max(width, height)
        if short != size:  # torchvision returns the image as it is when its short side is the size already
            resized = (size, int(size * long / short))
            image = image.resize(resized if width <= height else resized[::-1], Image.Resampling.BILINEAR)
        left, top = int(round((image.width - size) / 2.0)), int(round((image.height - size) / 2.0))
        array = np.asarray(image.convert("RGB").crop((left, top, left + size, top + size)), dtype=np.float32)
        out.append((torch.from_numpy(array / np.float32(255.0)).permute(2, 0, 1) - mean) / std)
    return torch.stack(out)
