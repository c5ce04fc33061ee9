"""The contract every image-text backbone fulfils.

ComCLIP is plug-and-play over CLIP-like models: everything downstream (grounding,
composition, evaluation) only needs L2-normalised image and text embeddings in one space
and the model's logit scale. A new backbone subclasses :class:`Backbone`, implements
``_processor_pixels`` (its own preprocessing of PIL images), ``_encode_pixels``,
``_encode_text_batch`` and ``_token_count``, and registers a constructor in
:mod:`comclip.backbones.factory`. One that also gives a :class:`~comclip.imaging.pixels.PixelSpec`
(``pixel_spec``) gets its images preprocessed as tensors on its device (``pixels="torch"``).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any

import numpy as np
import torch
from PIL import Image

from comclip._hf_utils import quiet_transformers
from comclip.backbones.devices import AUTOCAST_DTYPES, check_precision, resolve_device
from comclip.backbones.runtime import RUNTIME, check_runtime
from comclip.backbones.text_batches import like_length_batches
from comclip.backbones.vit.patches import PatchGrid
from comclip.backbones.vit.tokens import TokenMemory, encode_regions
from comclip.cache.embeddings import MemoryCache, read_through
from comclip.errors import InputError
from comclip.imaging.files import DEFAULT_MAX_SIDE, ImageInput, LoadedImage, load_images
from comclip.imaging.pixels import PixelSpec, preprocess, spec_from_hf_processor, to_tensor
from comclip.imaging.subimages import TokenRegion
from comclip.similarity import cosines
from comclip.text import validate_captions


def loaded_images(images: Sequence[ImageInput | LoadedImage], max_side: int | None = DEFAULT_MAX_SIDE) -> list[LoadedImage]:
    """A sequence of paths, PIL images or loaded images, loaded (see
    :func:`~comclip.imaging.files.load_images`); none is an error."""
    return load_images(list(images), max_side)


class CaptionTruncatedWarning(UserWarning):
    """A caption was longer than the backbone's text context and was cut."""


#: True while a caller has counted the over-long captions itself (an evaluation says it once per
#: run): the encoder then neither counts nor warns caption by caption.
_TRUNCATION_SAID: ContextVar[bool] = ContextVar("truncation_said", default=False)


@contextlib.contextmanager
def truncation_said() -> Iterator[None]:
    """Encoding inside the block does not count over-long captions again, nor warn of each."""
    token = _TRUNCATION_SAID.set(True)
    try:
        yield
    finally:
        _TRUNCATION_SAID.reset(token)


class Backbone(ABC):
    """A dual encoder mapping images and texts into one normalised embedding space.

    ``encode_images`` and ``encode_texts`` return float32 CPU tensors with unit-norm rows,
    computed in batches of ``batch_size`` under ``torch.inference_mode()``; batching never
    changes the numbers beyond float rounding.
    """

    def __init__(
        self,
        name: str,
        device: str | torch.device | None = None,
        batch_size: int = RUNTIME.batch_size,
        precision: str = RUNTIME.precision,
        pixels: str = RUNTIME.pixels,
    ):
        check_runtime("batch_size", batch_size)
        self.name = name
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self.precision = check_precision(precision, self.device)
        self.pixels = pixels  # checked by the setter
        #: Model-specific defaults for the pipeline's stages, e.g. ``{"grounder": {"prompt": "a {}"}}``
        #: for a model trained on captions without "a photo of". Empty for hub models.
        self.defaults: dict = {}

    #: Vectors per image: None for one (``[N, D]`` embeddings), Q for a multi-vector backbone
    #: (``[N, Q, D]``, each row unit norm: BLIP-2's query tokens); see :mod:`comclip.similarity`.
    image_tokens: int | None = None

    # --- what a backbone must provide -------------------------------------------------
    @property
    @abstractmethod
    def logit_scale(self) -> float:
        """The learned temperature multiplying cosines into logits (100 for OpenAI CLIP)."""

    @property
    @abstractmethod
    def image_size(self) -> int:
        """Side length in pixels of the square input the vision tower sees."""

    @property
    @abstractmethod
    def context_length(self) -> int:
        """Maximum number of text tokens, start and end tokens included."""

    @abstractmethod
    def _processor_pixels(self, images: list[Image.Image]) -> torch.Tensor:
        """The model's inputs for a batch of RGB PIL images, made by its own processor."""

    @abstractmethod
    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unnormalised embeddings of a batch of model inputs (on the device)."""

    @abstractmethod
    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        """Unnormalised embeddings of one batch of captions, truncated to the context."""

    @abstractmethod
    def _token_count(self, text: str) -> int:
        """Number of tokens ``text`` takes before truncation, special tokens included."""

    # --- pixels: PIL and the processor, or tensors on the device ------------------------
    @property
    def pixel_spec(self) -> PixelSpec | None:
        """What the processor does, for the tensor path; None: this backbone keeps the PIL path."""
        return None

    @property
    def pixels(self) -> str:
        """The path images take: ``torch`` (built and preprocessed on the device) where asked for
        and the backbone has a :attr:`pixel_spec`, else ``pil`` (its own processor)."""
        return self._pixels if self.pixel_spec is not None else "pil"

    @pixels.setter
    def pixels(self, value: str) -> None:
        check_runtime("pixels", value)
        if value != getattr(self, "_pixels", value):
            self.__dict__.pop("_token_memory", None)  # its views were made the other way
        self._pixels = value

    @property
    def pixel_device(self) -> torch.device | None:
        """Where sub-images are built (see :class:`comclip.imaging.subimages.Canvas`); None: with PIL."""
        return self.device if self.pixels == "torch" else None

    def pixel_values(self, images: Sequence[Image.Image | torch.Tensor]) -> torch.Tensor:
        """Model inputs on the device for PIL images, or on the tensor path also for uint8
        ``[3, H, W]`` tensors (sub-images built on the device)."""
        spec = self.pixel_spec
        if self.pixels == "torch" and spec is not None:  # the torch path is chosen only where there is a spec
            return preprocess([im if isinstance(im, torch.Tensor) else to_tensor(im, self.device) for im in images], spec)
        pil = [im for im in images if isinstance(im, Image.Image)]
        if len(pil) != len(images):
            raise TypeError("tensor images need the torch pixel path")
        return self._processor_pixels(pil).to(self.device)

    def _encode_image_batch(self, images: list) -> torch.Tensor:
        return self._encode_pixels(self._views_of(images))

    def _views_of(self, images: list) -> torch.Tensor:
        """:meth:`pixel_values` of images, taking the views that the token memory keeps for
        these very PIL images (a search index's candidates made them just before)."""
        memory = self.__dict__.get("_token_memory")  # made by the first token regions, if any
        kept = [memory.parent(im) if memory is not None and isinstance(im, Image.Image) else None for im in images]
        if not any(kept):
            return self.pixel_values(images)
        missing = [im for im, k in zip(images, kept) if k is None]
        made = iter(self.pixel_values(missing)) if missing else iter(())
        return torch.stack([k[0] if k is not None else next(made) for k in kept])

    def encode_views(self, views: Sequence[Image.Image | torch.Tensor] | Sequence[TokenRegion]) -> torch.Tensor:
        """Embeddings (``[N, D]``, unit-norm rows) of images made on the fly and used once, such
        as a grounder's candidate regions (or regions to encode from patch tokens, all of one
        kind): batched, never looked up in or written to the cache."""
        made = list(views)
        if made and isinstance(made[0], TokenRegion):
            return self._token_rows(made)  # type: ignore[arg-type]
        return self._batched(made, self._encode_image_batch)

    # --- shared behaviour -------------------------------------------------------------
    # A backbone computes; it keeps nothing. A cache goes in front of it as a
    # :class:`~comclip.backbones.cached.CachedEncoder`, which has the same methods.
    #: The cache in front of this backbone: none (see :class:`~comclip.backbones.cached.CachedEncoder`).
    cache = None

    def encode_images(self, images: Sequence[ImageInput | LoadedImage], max_side: int | None = DEFAULT_MAX_SIDE) -> torch.Tensor:
        """Embed images (paths or PIL images); returns ``[N, D]`` unit-norm rows."""
        return self._batched([im.image for im in loaded_images(images, max_side)], self._encode_image_batch)

    def _image_rows_array(self, images: list) -> np.ndarray:
        """Embeddings of images (PIL or, on the tensor path, tensors; or regions to encode from
        patch tokens, see :mod:`comclip.backbones.vit.tokens`) as one array, for a cache."""
        if images and isinstance(images[0], TokenRegion):
            return self._token_rows(images).numpy()
        return self._batched(images, self._encode_image_batch).numpy()

    # --- sub-images from patch tokens (optional capability) -------------------------------
    @property
    def supports_tokens(self) -> bool:
        """Whether sub-images can be encoded from patch tokens (``--subimage tokens``): a ViT
        that implements the hooks of :class:`~comclip.backbones.vit.tokens.TokenEncoder`."""
        return False

    @functools.cached_property
    def _token_memory(self) -> TokenMemory:
        """Parents' patches and fill colours kept between calls (see :class:`TokenMemory`)."""
        return TokenMemory()

    def _token_rows(self, regions: list[TokenRegion]) -> torch.Tensor:
        """Unit-norm embeddings ``[N, D]`` of regions encoded from their parents' patch tokens."""
        if not self.supports_tokens:
            raise InputError(f"{self.name} ({type(self).__name__}) cannot encode sub-images from patch tokens")
        with torch.inference_mode(), self.autocast():
            rows = encode_regions(self, regions, memory=self._token_memory)  # type: ignore[arg-type]
            return torch.nn.functional.normalize(rows.float(), dim=-1).cpu()

    def _text_rows_array(self, texts: list[str]) -> np.ndarray:
        """Embeddings of captions as one array, for a cache."""
        return self._texts_batched(texts).numpy()

    #: Whether a batch of texts is padded to the longest of it (else to the context, whatever
    #: the texts: open_clip's and SLIP's tokenizers, SigLIP's processor).
    pads_to_longest = False

    def _texts_batched(self, texts: list[str]) -> torch.Tensor:
        """Texts encoded in batches of like length, rows in the order given (see
        :mod:`comclip.backbones.text_batches`). Over-long ones are warned of (unless the
        caller said them, see :func:`truncation_said`) from the same token counts."""
        counts = None if _TRUNCATION_SAID.get() else self._token_counts(texts)
        if counts is not None:
            self._warn_truncated(texts, counts)
        if not self.pads_to_longest or len(texts) < 2:
            return self._batched(texts, self._encode_text_batch)
        counts = counts if counts is not None else self._token_counts(texts)
        order = sorted(range(len(texts)), key=lambda n: -counts[n])
        batches = like_length_batches([counts[n] for n in order], self.batch_size)
        encoded = torch.cat([self._batched([texts[order[n]] for n in range(a, b)], self._encode_text_batch) for a, b in batches])
        rows = torch.empty_like(encoded)
        rows[order] = encoded
        return rows

    def encode_keyed(self, keys: Sequence[str], make: Callable[[int], Image.Image | torch.Tensor | TokenRegion]) -> torch.Tensor:
        """Embeddings of images known by content key (``[N, D]``, unit-norm rows); ``make(n)``
        renders image ``n`` (a PIL image, or on the tensor path a uint8 ``[3, H, W]`` tensor),
        each distinct key once."""
        return self.encode_keyed_through(MemoryCache(), list(keys), make)

    def encode_keyed_through(
        self, cache, keys: list[str], make: Callable[[int], Image.Image | torch.Tensor | TokenRegion]
    ) -> torch.Tensor:
        """:meth:`encode_keyed` reading and filling ``cache`` (keys as given): ``make`` is
        called only for keys not in it, so a warm run renders nothing."""
        if not keys:
            raise InputError("no images given")
        rows = read_through(cache, keys, _Rendered(make), self._image_rows_array)
        return self.image_rows(torch.from_numpy(rows))

    def image_rows(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cached rows come back flat: a multi-vector backbone's get their ``[Q, D]`` shape back."""
        return embeddings if self.image_tokens is None else embeddings.reshape(len(embeddings), self.image_tokens, -1)

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed captions; returns ``[M, D]`` unit-norm rows. Over-long captions are cut with a warning."""
        return self._texts_batched(validate_captions(texts))

    def too_long(self, texts: Sequence[str]) -> list[bool]:
        """Whether each caption has more tokens than the context, and so is cut when encoded."""
        return [count > self.context_length for count in self._token_counts(texts)]

    def _token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text takes before truncation (a backbone whose tokenizer counts many
        texts in one call does so)."""
        return [self._token_count(text) for text in texts]

    def _warn_truncated(self, texts: Sequence[str], counts: Sequence[int]) -> None:
        for index, (text, count) in enumerate(zip(texts, counts)):
            if count > self.context_length:
                warnings.warn(
                    f"caption #{index} has {count} tokens, more than {self.name}'s context of "
                    f"{self.context_length}; it was truncated: {text[:60]!r}...",
                    CaptionTruncatedWarning,
                    stacklevel=4,
                )

    @property
    def model_key(self) -> str:
        """The model part of a cache key (what `comclip cache info` lists): reduced precision
        and the tensor pixel path give other vectors, so they are part of the model's identity
        (the PIL path at fp32 keeps the plain fingerprint)."""
        model = self.fingerprint if self.precision == "fp32" else f"{self.fingerprint}+{self.precision}"
        return model if self.pixels == "pil" else f"{model}+torch-pixels"

    def autocast(self):
        """The context the forward passes run in: plain fp32, or autocast at ``precision``."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AUTOCAST_DTYPES[self.precision])

    # --- patch tokens (optional capability) -------------------------------------------
    @property
    def supports_patches(self) -> bool:
        """Whether :meth:`encode_with_patches` works (a CLIP ViT's patch tokens)."""
        return False

    def encode_with_patches(
        self, images: Sequence[Image.Image], keys: Sequence[str] | None = None
    ) -> tuple[torch.Tensor, list[PatchGrid]]:
        """Global embeddings plus each image's patch tokens projected into the joint space, from
        one forward pass. ``keys``: the images' content keys where known (a cache in front of
        the backbone reads them). Backbones that cannot (``supports_patches`` False) raise."""
        if not self.supports_patches:
            raise InputError(f"{self.name} ({type(self).__name__}) does not expose patch tokens")
        return self._encode_with_patches(list(images))

    def _encode_with_patches(self, images: list[Image.Image]) -> tuple[torch.Tensor, list[PatchGrid]]:
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
        """Identifies the weights for cache keys: the model name unless a backbone knows better."""
        return self.name

    def similarity(self, images: Sequence[ImageInput], texts: Sequence[str]) -> torch.Tensor:
        """Cosine similarity matrix ``[N images, M texts]`` (see :func:`comclip.similarity.cosines`)."""
        return cosines(self.encode_images(images), self.encode_texts(texts))

    def _batched(self, items: list, encode) -> torch.Tensor:
        chunks = []
        with torch.inference_mode(), self.autocast():
            for start in range(0, len(items), self.batch_size):
                features = encode(items[start : start + self.batch_size]).float()
                chunks.append(torch.nn.functional.normalize(features, dim=-1).cpu())
        return torch.cat(chunks)

    def describe(self) -> dict:
        """Identity of the backbone for reports: name, class, device and input sizes."""
        return {
            "name": self.name,
            "backend": type(self).__name__,
            "device": str(self.device),
            "precision": self.precision,
            "pixels": self.pixels,
            "image_size": self.image_size,
            "context_length": self.context_length,
            "logit_scale": self.logit_scale,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device={str(self.device)!r})"


class ProcessorBackbone(Backbone):
    """A backbone whose images go through a ``transformers``-style image processor and whose
    captions through a tokenizer (set by :meth:`_use`): its PIL path, its tensor path's
    :class:`~comclip.imaging.pixels.PixelSpec` (read once) and its token counts come from them."""

    image_processor: Any = None
    tokenizer: Any = None
    _pixel_spec: PixelSpec | None = None

    def _use(self, image_processor, tokenizer) -> None:
        self.image_processor, self.tokenizer = image_processor, tokenizer
        self._pixel_spec = spec_from_hf_processor(image_processor)

    @property
    def pixel_spec(self) -> PixelSpec | None:
        return self._pixel_spec

    def _processor_pixels(self, images: list[Image.Image]) -> torch.Tensor:
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"]

    def _token_count(self, text: str) -> int:
        return self._token_counts([text])[0]

    def _token_counts(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        with quiet_transformers():  # counting is not running: no "will result in indexing errors" warning
            return [len(ids) for ids in self.tokenizer(list(texts), truncation=False)["input_ids"]]


class _Rendered:
    """A sequence whose items are made when asked for (sub-images, for cache misses only)."""

    def __init__(self, make: Callable[[int], Image.Image | torch.Tensor | TokenRegion]):
        self.make = make

    def __getitem__(self, n: int) -> Image.Image | torch.Tensor | TokenRegion:
        return self.make(n)
