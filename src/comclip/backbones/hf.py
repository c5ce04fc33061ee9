"""Backbones from Hugging Face ``transformers``: CLIP, SigLIP and any dual encoder that has
``get_image_features`` / ``get_text_features``, from a hub id or a local directory."""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import torch
from PIL import Image

from comclip._hf_utils import quiet_transformers
from comclip._optional import hide_broken
from comclip.backbones.base import PatchGrid, ProcessorBackbone
from comclip.backbones.runtime import RUNTIME
from comclip.backbones.vit.tokens import ViewGeometry, centre_crop_geometry, squash_geometry
from comclip.digests import files_digest
from comclip.errors import ModelNotFoundError

#: Model types whose text tower was trained on inputs padded to the full context.
_PAD_TO_MAX_LENGTH = {"siglip", "siglip2"}


def hub_offline() -> bool:
    """Whether the Hugging Face Hub is switched off (``HF_HUB_OFFLINE``, as huggingface_hub reads it)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hf_cache_dir() -> str:
    """Where downloaded models are looked for (huggingface_hub's cache: ``HF_HUB_CACHE`` or ``HF_HOME``)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _features(output) -> torch.Tensor:
    """transformers <5 returns a tensor; 5.x returns a ModelOutput whose pooler output is the projection."""
    if isinstance(output, torch.Tensor):
        return output
    for key in ("image_embeds", "text_embeds", "pooler_output"):
        value = getattr(output, key, None)
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError(f"cannot find embeddings in model output of type {type(output).__name__}")


class TransformersBackbone(ProcessorBackbone):
    """What every backbone loaded from a hub id or a ``save_pretrained`` folder shares: the
    model (``model_class``, default ``AutoModel``) and its processor, the folder's
    ``comclip.json`` defaults, the fingerprint, the image processor's pixel path."""

    def __init__(
        self,
        source: str,
        name: str | None = None,
        device=None,
        batch_size: int = RUNTIME.batch_size,
        precision: str = RUNTIME.precision,
        pixels: str = RUNTIME.pixels,
        model_class=None,
    ):
        super().__init__(name or source, device=device, batch_size=batch_size, precision=precision, pixels=pixels)
        self.source = source
        self.model, self.processor = _load(source, self.name, model_class)
        self.model.eval().to(self.device)
        self._use(self.processor.image_processor, self.processor.tokenizer)
        self.defaults = _comclip_defaults(source)
        _check_tokenizer(self.tokenizer, self.name, source)

    @property
    def fingerprint(self) -> str:
        """The name plus the hub commit, or a hash of every file of a local directory that
        decides the outputs (:data:`IDENTITY_FILES`), so a retrained or edited model in the same
        folder never reuses its predecessor's embeddings."""
        if getattr(self, "_fingerprint", None) is None:
            self._fingerprint = f"{self.name}@{weights_fingerprint(self.source, self.model)}"
        return self._fingerprint

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    # --- shared by the ViTs that encode sub-images from patch tokens (comclip.backbones.vit.tokens)
    @property
    def _view_is_whole_image(self) -> bool:
        """Whether the processor squashes the whole image to its view (no crop), so a patch's
        place in the image is known from the image's size alone (SigLIP's, BLIP's)."""
        spec = self.pixel_spec
        return spec is not None and spec.resize_mode == "squash" and spec.crop is None

    def embed_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        """The vision tower's patch embedding (``vision_model.embeddings.patch_embedding``)."""
        conv = self.model.vision_model.embeddings.patch_embedding
        return conv(pixels.to(conv.weight.dtype)).flatten(2).transpose(1, 2)


class HFBackbone(TransformersBackbone):
    """A ``transformers`` dual encoder loaded with ``AutoModel`` and ``AutoProcessor``."""

    def __init__(
        self,
        source: str,
        name: str | None = None,
        device=None,
        batch_size: int = RUNTIME.batch_size,
        precision: str = RUNTIME.precision,
        pixels: str = RUNTIME.pixels,
    ):
        super().__init__(source, name, device=device, batch_size=batch_size, precision=precision, pixels=pixels)
        missing = [m for m in ("get_image_features", "get_text_features") if not hasattr(self.model, m)]
        if missing:
            raise ModelNotFoundError(
                f"model {self.name!r} ({type(self.model).__name__}) is not a dual image-text encoder: "
                f"it lacks {', '.join(missing)}"
            )
        self._model_type = getattr(self.model.config, "model_type", "")
        self.pads_to_longest = self._model_type not in _PAD_TO_MAX_LENGTH

    @property
    def logit_scale(self) -> float:
        scale = getattr(self.model, "logit_scale", None)
        return float(scale.detach().exp()) if scale is not None else 100.0

    @property
    def context_length(self) -> int:
        return int(self.model.config.text_config.max_position_embeddings)

    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return _features(self.model.get_image_features(pixel_values=pixels))

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        padding = "max_length" if self._model_type in _PAD_TO_MAX_LENGTH else True
        tokens = self.tokenizer(texts, padding=padding, truncation=True, max_length=self.context_length, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        if self._model_type in _PAD_TO_MAX_LENGTH:
            inputs.pop("attention_mask", None)
        return _features(self.model.get_text_features(**inputs))

    @property
    def supports_patches(self) -> bool:  # CLIP's ViT: a class token, then a square grid of patches
        return self._model_type == "clip"

    def _encode_with_patches(self, images: list[Image.Image]) -> tuple[torch.Tensor, list[PatchGrid]]:
        """One ViT pass: the pooled embedding and every last-layer patch token through the same
        final layer norm and projection as the class token. (MaskCLIP reads the last layer's value
        embeddings instead; on the sandbox models that reading ranked segment proposals better,
        66 against 52% at seed 100, but grid windows worse, 0 against 26%, so it is not used.)"""
        globals_, grids = [], []
        vision, projection = self.model.vision_model, self.model.visual_projection
        patch = int(self.model.config.vision_config.patch_size)
        with torch.inference_mode(), self.autocast():
            for start in range(0, len(images), self.batch_size):
                batch = images[start : start + self.batch_size]
                pixels = self.pixel_values(batch)
                hidden = vision(pixel_values=pixels).last_hidden_state
                tokens = torch.nn.functional.normalize(projection(vision.post_layernorm(hidden)).float(), dim=-1).cpu()
                globals_.append(tokens[:, 0])
                side = pixels.shape[-1] // patch
                for image, row in zip(batch, tokens[:, 1:]):
                    size = (image.shape[-1], image.shape[-2]) if isinstance(image, torch.Tensor) else image.size
                    view = centre_crop_geometry(size, pixels.shape[-1], patch)
                    grids.append(
                        PatchGrid(row.reshape(side, side, -1), view.x0, view.y0, patch / view.scale_x, patch / view.scale_y)
                    )
        return torch.cat(globals_), grids

    # --- sub-images from patch tokens (see comclip.backbones.vit.tokens) ---------------------
    @property
    def supports_tokens(self) -> bool:
        """CLIP's ViT (a class token), and SigLIP's (pooled by attention) where its view is known."""
        if self._model_type == "siglip":
            return getattr(self.model.vision_model, "head", None) is not None and self._view_is_whole_image
        return self._model_type == "clip"

    def view_geometry(self, size: tuple[int, int]) -> ViewGeometry:
        patch = int(self.model.config.vision_config.patch_size)
        if self._model_type == "siglip":
            return squash_geometry(size, self.image_size, patch)
        return centre_crop_geometry(size, self.image_size, patch)

    def class_and_positions(self) -> tuple[torch.Tensor | None, torch.Tensor]:
        embeddings = self.model.vision_model.embeddings
        return getattr(embeddings, "class_embedding", None), embeddings.position_embedding.weight

    def encode_token_sequences(self, tokens: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        vision = self.model.vision_model
        mask = key_bias[:, None, None, :].to(tokens.dtype)
        if self._model_type == "siglip":
            hidden = vision.post_layernorm(vision.encoder(inputs_embeds=tokens, attention_mask=mask).last_hidden_state)
            return _pooled_by_attention(vision.head, hidden, key_bias.to(tokens.dtype))
        hidden = vision.pre_layrnorm(tokens)
        *early, last = vision.encoder.layers
        for layer in early:
            hidden = _through_layer(layer, hidden, mask)
        return self.model.visual_projection(vision.post_layernorm(_class_token_out(last, hidden, mask)[:, 0]))


def _through_layer(layer, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One CLIP encoder layer, as its encoder calls it (transformers 4 also takes a causal
    mask and returns a tuple)."""
    out = layer(hidden, mask, None) if _takes_causal_mask(type(layer).forward) else layer(hidden, mask)
    return out[0] if isinstance(out, tuple) else out


@functools.cache
def _takes_causal_mask(forward) -> bool:
    """Whether a CLIP encoder layer class's ``forward`` takes a causal mask (transformers 4),
    read once a class rather than for every layer of every call."""
    return "causal_attention_mask" in inspect.signature(forward).parameters


def _class_token_out(layer, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A CLIP encoder layer's output ``[N, 1, C]`` at the class token only, which is all the
    pooled embedding reads of the last layer: every token's keys and values, but one query,
    one attention output and one MLP row per sequence (a quarter of the layer's work; the
    same arithmetic as :func:`_through_layer`'s row 0, to float rounding)."""
    attention = layer.self_attn
    count, _, width = hidden.shape
    normed = layer.layer_norm1(hidden)
    heads = attention.num_heads
    split = (count, -1, heads, width // heads)
    query = attention.q_proj(normed[:, :1]).view(split).transpose(1, 2)
    keys = attention.k_proj(normed).view(split).transpose(1, 2)
    values = attention.v_proj(normed).view(split).transpose(1, 2)
    mixed = torch.nn.functional.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=attention.scale)
    first = hidden[:, :1] + attention.out_proj(mixed.transpose(1, 2).reshape(count, 1, width))
    return first + layer.mlp(layer.layer_norm2(first))


def _pooled_by_attention(head, hidden: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
    """SigLIP's attention pooling (its ``SiglipMultiheadAttentionPoolingHead``: a probe attends
    to every token, then a residual MLP) with ``key_bias`` added to the probe's logits, so a
    merged token weighs as the tokens it stands for there too."""
    probe = head.probe.expand(len(hidden), -1, -1)
    bias = key_bias[:, None, :].repeat_interleave(head.attention.num_heads, dim=0)
    pooled = head.attention(probe, hidden, hidden, attn_mask=bias, need_weights=False)[0]
    return (pooled + head.mlp(head.layernorm(pooled)))[:, 0]


#: The files of a model folder that decide its outputs: weights, the model's configuration
#: (``hidden_act``...), the processor's (normalisation, size), the tokenizer's, comclip's defaults.
IDENTITY_FILES = (
    "*.safetensors",
    "*.bin",
    "config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "*.model",
    "comclip.json",
)


def weights_fingerprint(source: str, model) -> str:
    """A model's identity: for a local folder, the hash of every file that decides its outputs
    (:data:`IDENTITY_FILES`), so a processor or config edited in place is another model (its
    cached embeddings are not reused, its runs not resumed); for a hub model, its commit."""

    directory = Path(source)
    if directory.is_dir():
        files = sorted({path for pattern in IDENTITY_FILES for path in directory.glob(pattern) if path.is_file()})
        return files_digest(files)
    return str(getattr(model.config, "_commit_hash", None) or "unknown-revision")


#: Optional file in a model directory with comclip's defaults for that model.
DEFAULTS_FILE = "comclip.json"


def _comclip_defaults(source: str) -> dict:
    path = Path(source) / DEFAULTS_FILE
    if not path.is_file():
        return {}
    from comclip.jsonfile import read_json_object

    return read_json_object(path, "model defaults file", "pipeline stage -> options")


def _check_tokenizer(tokenizer, name: str, source: str) -> None:
    """A model folder without (or with broken) tokenizer files can load a tokenizer that
    gives every caption the same ids, and so the same score: refuse it."""
    # Two captions of the same length: a tokenizer without its vocabulary (each character an
    # unknown token) gives them the same ids, where a real one does not.
    first, second = (tokenizer(text)["input_ids"] for text in ("a red cat", "a big dog"))
    if first == second:
        raise ModelNotFoundError(
            f"the tokenizer of model {name!r} ({source}) gives the same tokens to different captions: "
            "its vocabulary files (vocab.json, merges.txt or tokenizer.json) are missing or broken"
        )


def _load(source: str, name: str, model_class=None):
    """Load model (with ``model_class``, default ``AutoModel``) and processor."""
    hide_broken()  # before transformers looks for torchvision
    from transformers import AutoModel, AutoProcessor

    return _reading(
        source,
        name,
        lambda: (
            (model_class or AutoModel).from_pretrained(source, trust_remote_code=False),
            AutoProcessor.from_pretrained(source, trust_remote_code=False),
        ),
    )


def architectures(source: str, name: str) -> list[str]:
    """The model classes a hub id or local folder's ``config.json`` names."""
    hide_broken()
    from transformers import AutoConfig

    return list(_reading(source, name, lambda: AutoConfig.from_pretrained(source, trust_remote_code=False)).architectures or [])


def first_line(exc: BaseException, limit: int = 160) -> str:
    """An exception's first line, cut at a word (never mid-URL) to ``limit`` characters."""
    line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return line if len(line) <= limit else line[:limit].rsplit(" ", 1)[0] + " ..."


def _reading(source: str, name: str, read):
    """``read()``, turning the hub's errors into ones that say what to do. A hub model read
    where the Hub cannot be reached is read from the cache alone (the Hub's client would
    otherwise retry for half a minute before saying so)."""
    is_local = Path(source).is_dir()
    user_offline = hub_offline()
    unreachable = not is_local and not user_offline and not hub_reachable()
    try:
        with quiet_transformers(), offline_hub() if unreachable else contextlib.nullcontext():
            return read()
    except Exception as exc:  # a local folder's files are the user's: any failure to read them is theirs
        if not is_local and not isinstance(exc, (OSError, ValueError)):
            raise
        if is_local:
            raise ModelNotFoundError(
                f"cannot load model {name!r} from local directory {source}: {type(exc).__name__}: {str(exc)[:300]}. A local model "
                "directory must hold config.json, the weights (model.safetensors) and the "
                "tokenizer/processor files written by save_pretrained()."
            ) from None
        if user_offline:
            reason = f"it is not in the Hugging Face cache ({hf_cache_dir()}) and HF_HUB_OFFLINE=1 forbids downloading it"
            after = ""
        elif unreachable:
            reason = f"the Hugging Face Hub cannot be reached from this machine and it is not in the cache ({hf_cache_dir()})"
            after = ""
        else:
            reason = "the Hugging Face Hub has no such repository, or could not be reached"
            after = " (then HF_HUB_OFFLINE=1 reads the cache without trying the network)"
        raise ModelNotFoundError(
            f"cannot load model {name!r} (hub id {source!r}): {reason}. Download it once where the Hub is "
            f"reachable (`hf download {source}`){after}, or pass a local directory written by save_pretrained() "
            f"as --model; --model comclip/sandbox works offline. ({type(exc).__name__}: {first_line(exc)})"
        ) from None


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub's host (``HF_ENDPOINT``'s) takes a connection within ``timeout`` seconds:
    asked once per process, before the first hub model is read."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname or "", url.port or (443 if url.scheme == "https" else 80)), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def offline_hub() -> Iterator[None]:
    """The Hub's client offline for the block, as ``HF_HUB_OFFLINE=1`` makes it (the cache only)."""
    from huggingface_hub import constants

    before, before_env = constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE")
    constants.HF_HUB_OFFLINE, os.environ["HF_HUB_OFFLINE"] = True, "1"
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before
        if before_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before_env
