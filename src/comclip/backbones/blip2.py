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
"""

from __future__ import annotations

import contextlib

import torch

from comclip.backbones.hf import TransformersBackbone
from comclip.backbones.runtime import RUNTIME

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
        model = self.model
        image_states = model.vision_model(pixel_values=pixels).last_hidden_state
        queries = model.query_tokens.expand(image_states.shape[0], -1, -1)
        mask = torch.ones(image_states.shape[:-1], dtype=torch.long, device=image_states.device)
        with self.qformer_precision():
            states = model.qformer(
                query_embeds=queries.float(), encoder_hidden_states=image_states.float(), encoder_attention_mask=mask
            ).last_hidden_state
        return model.vision_projection(states.to(model.vision_projection.weight.dtype))

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
