"""BLIP-2's image-text contrastive (ITC) head (Li, Li, Savarese, Hoi, ICML 2023), from
``transformers``' ``Blip2ForImageTextRetrieval``: hub ids such as ``Salesforce/blip2-itm-vit-g``
or a local folder written by ``save_pretrained``.

The image side gives one embedding per Q-Former query token (32 for the released models),
the text side one (the [CLS] state): the ITC score is the largest cosine over the query
tokens. comclip keeps the query tokens (``image_tokens``), so ComCLIP composes per token,
``v_q = normalize(v_global_q + sum_i w_i v_i_q)``, scores ``max_q cos(v_q, caption)`` and
weighs sub-images by ``s_i = max_q cos(v_i_q, phrase_i)``: our reading of the paper's
plug-and-play claim for a multi-vector model (the paper does not spell out BLIP-2's case).

The image-text matching (ITM) head scores a pair through cross-attention between the query
tokens and the text: there is no image embedding to add sub-images to, so it does not fit
ComCLIP's composition and is not offered. transformers' port has no learned ITC temperature;
``logit_scale`` is BLIP-2's initial one, 1 / 0.07.

Sub-images from patch tokens (``--subimage tokens``, see :mod:`comclip.backbones.vit.tokens`):
the vision tower runs on a region's shorter sequence, and the Q-Former's query tokens read it
through their cross-attention, the merged token's key bias added there as in the tower. The
tower's own attention takes no mask in transformers, so its layers are run here from their
weights (:func:`_vision_states`, checked against the model's forward by the tests).
"""

from __future__ import annotations

import contextlib
import importlib.metadata

import torch

from comclip.backbones.hf import TransformersBackbone
from comclip.backbones.runtime import RUNTIME
from comclip.backbones.vit.tokens import ViewGeometry, squash_geometry

ARCHITECTURE = "Blip2ForImageTextRetrieval"
#: BLIP-2's initial ITC temperature (LAVIS ``temp``), absent from transformers' weights.
ITC_LOGIT_SCALE = 1 / 0.07


class Blip2Backbone(TransformersBackbone):
    """The ITC embeddings of a ``Blip2ForImageTextRetrieval`` model: ``[N, Q, D]`` per image."""

    def __init__(
        self,
        source: str,
        name: str | None = None,
        device=None,
        batch_size: int = RUNTIME.batch_size,
        precision: str = RUNTIME.precision,
        pixels: str = RUNTIME.pixels,
    ):
        from transformers import Blip2ForImageTextRetrieval

        super().__init__(
            source,
            name,
            device=device,
            batch_size=batch_size,
            precision=precision,
            pixels=pixels,
            model_class=Blip2ForImageTextRetrieval,
        )
        self.image_tokens = int(self.model.config.num_query_tokens)

    @property
    def logit_scale(self) -> float:
        return ITC_LOGIT_SCALE

    @property
    def context_length(self) -> int:
        return int(self.model.config.qformer_config.max_position_embeddings)

    def qformer_precision(self):
        """The Q-Former (and its query tokens and text embeddings) in float32 whatever the
        precision, as transformers keeps them (``_keep_in_fp32_modules``): autocast is turned off
        around it; the vision tower and the projections run at ``precision``."""
        return torch.autocast(self.device.type, enabled=False) if self.precision != "fp32" else contextlib.nullcontext()

    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """The query tokens' projections, ``[B, Q, D]``, as the retrieval model's ITC branch."""
        image_states = self.model.vision_model(pixel_values=pixels).last_hidden_state
        mask = torch.ones(image_states.shape[:-1], dtype=torch.long, device=image_states.device)
        return self._queried(image_states, mask)

    def _queried(self, image_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, Q, D]``: the query tokens read ``image_states`` through the Q-Former, its
        cross-attention masked by ``mask`` (2-D ones, or a 4-D additive bias), then projected."""
        model = self.model
        queries = model.query_tokens.expand(image_states.shape[0], -1, -1)
        with self.qformer_precision():
            states = model.qformer(
                query_embeds=queries.float(), encoder_hidden_states=image_states.float(), encoder_attention_mask=mask
            ).last_hidden_state
        return model.vision_projection(states.to(model.vision_projection.weight.dtype))

    # --- sub-images from patch tokens (see comclip.backbones.vit.tokens) ---------------------
    @property
    def supports_tokens(self) -> bool:
        """Where the view is the whole image squashed (BLIP's processor) and the Q-Former takes
        an additive mask as it is (transformers 5)."""
        major = int(importlib.metadata.version("transformers").split(".")[0])
        return major >= 5 and self._view_is_whole_image

    def view_geometry(self, size: tuple[int, int]) -> ViewGeometry:
        return squash_geometry(size, self.image_size, int(self.model.config.vision_config.patch_size))

    def class_and_positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        embeddings = self.model.vision_model.embeddings
        return embeddings.class_embedding.reshape(-1), embeddings.position_embedding[0]

    def encode_token_sequences(self, tokens: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        """``[N, Q, D]``: each sequence's query-token projections, as :meth:`_encode_pixels`."""
        bias = key_bias[:, None, None, :]
        states = _vision_states(self.model.vision_model, tokens, bias.to(tokens.dtype))
        return self._queried(states, bias.float())

    pads_to_longest = True  # its tokenizer pads a batch to the longest text, masked out

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        """The [CLS] state of the Q-Former's text pass, projected, as the ITC branch computes it."""
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.context_length, return_tensors="pt")
        ids, mask = tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)
        with self.qformer_precision():
            states = self.model.qformer(
                query_embeds=self.model.embeddings(input_ids=ids), query_length=0, attention_mask=mask
            ).last_hidden_state
        return self.model.text_projection(states[:, 0, :].to(self.model.text_projection.weight.dtype))

    def describe(self) -> dict:
        return {**super().describe(), "image_tokens": self.image_tokens, "head": "itc"}


def _vision_states(vision, tokens: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """BLIP-2's vision tower over token sequences ``[N, L, C]`` (embedded, positions added),
    ``bias`` ``[N, 1, 1, L]`` added to every attention logit of its keys: each layer's
    pre-norm attention and MLP, then the final layer norm, as ``Blip2VisionModel`` runs them."""
    hidden = tokens
    for layer in vision.encoder.layers:
        attention = layer.self_attn
        batch, length, width = hidden.shape
        qkv = attention.qkv(layer.layer_norm1(hidden)).reshape(batch, length, 3, attention.num_heads, -1)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)
        mixed = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=attention.scale)
        hidden = hidden + attention.projection(mixed.transpose(1, 2).reshape(batch, length, width))
        hidden = hidden + layer.mlp(layer.layer_norm2(hidden))
    return vision.post_layernorm(hidden)
