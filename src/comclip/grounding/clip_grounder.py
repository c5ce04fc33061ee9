"""Training-free grounding with the scoring backbone itself.

Candidate regions (a multi-scale grid of windows, and/or segment proposals) are cropped (or
masked in place) and encoded once per image, in batches; each query ("a photo of a {noun}") is then ranked against all candidates. Encodings
are kept per image content, so every phrase and caption of an image reuses them.
"""

from __future__ import annotations

import math
import weakref
from collections import OrderedDict
from collections.abc import Sequence

import torch
from PIL import Image

from comclip.backbones import Backbone
from comclip.boxes import Box
from comclip.digests import image_digest
from comclip.errors import InputError
from comclip.grounding.base import Detection, Grounder
from comclip.grounding.proposals import DEFAULT_SCALES, PROPOSALS, WITH_PARTS, propose_many
from comclip.grounding.segment_parts import VERSION as SEGMENT_PARTS_VERSION
from comclip.imaging.subimages import SUBIMAGE_MODES, TOKENS, SubimageMaker, encode_subimages, tokens_stand_for
from comclip.similarity import cosines

#: The library defaults of the clip grounder's options (see :class:`comclip.config.PipelineConfig`).
DEFAULT_PROMPT = "a photo of a {}"
DEFAULT_PROPOSALS = "grid"
DEFAULT_FILL = "mean"
#: Decimals of the cosine that rank candidates; beyond them, differences are float noise.
RANK_DECIMALS = 5
#: How a candidate is shown to the encoder: cut out and resized ("crop"), or kept in place at
#: full image size with everything else filled ("mask", the sub-image form ComCLIP scores).
#: "patches" scores candidates from the patch tokens of one forward pass per image, without
#: encoding any crop (needs a backbone with ``supports_patches``: transformers CLIP).
#: "multiscale" scores each candidate by its mean cosine over the mask view and zoomed views
#: (the masked candidate cut to a square :data:`ZOOMS` times its size, centred on it), so a
#: small object is also seen at the size large ones have.
REGION_MODES = ("crop", "mask", "patches", "multiscale")
#: The zoomed views of the multiscale mode, as factors of the candidate's longer side.
ZOOMS = (2.0, 2.5, 3.0)


class CLIPGrounder(Grounder):
    """Ranks candidate regions by the backbone's similarity between the region and the query prompt.

    ``region=None`` scores from patch tokens where the backbone exposes them (one forward pass
    per image), else from crops (one forward pass per candidate). A model's own defaults
    (``comclip.json``) are applied by :class:`comclip.config.PipelineConfig`, not here.
    """

    name = "clip"
    cacheable = True  # rankings depend only on the image, the query, the backbone and describe()

    def __init__(
        self,
        backbone: Backbone,
        prompt: str = DEFAULT_PROMPT,
        scales=DEFAULT_SCALES,
        proposals: str = DEFAULT_PROPOSALS,
        region: str | None = None,
        fill: str = DEFAULT_FILL,
        cache_images: int = 512,
        subimage: str = "fill",
    ):
        self.backbone = backbone
        self.prompt = prompt
        self.scales = tuple(tuple(s) for s in scales)
        self.proposals = proposals
        self.region = region or ("patches" if backbone.supports_patches else "crop")
        self.fill = fill
        if self.proposals not in PROPOSALS:
            raise InputError(f"unknown proposals {self.proposals!r}; choose one of {', '.join(PROPOSALS)}")
        if self.region not in REGION_MODES:
            raise InputError(f"unknown region mode {self.region!r}; choose one of {', '.join(REGION_MODES)}")
        if self.region == "patches" and not backbone.supports_patches:
            raise InputError(f"region mode 'patches' needs patch tokens, which {backbone.name} does not expose; use crop or mask")
        if subimage not in SUBIMAGE_MODES:
            raise InputError(f"unknown sub-image mode {subimage!r}; choose one of {', '.join(SUBIMAGE_MODES)}")
        # A masked candidate is a sub-image: encoded from patch tokens where sub-images are
        # (its fill one colour, the backbone able), so it costs its area, not a forward pass.
        self.tokens = subimage != "fill" and self.region in ("mask", "multiscale") and tokens_stand_for(self.fill, backbone)
        if "{}" not in self.prompt:
            raise InputError(f"grounding prompt {self.prompt!r} needs a {{}} where the entity goes")
        self._cache: OrderedDict[str, tuple[list[Box], torch.Tensor]] = OrderedDict()
        self._cache_images = cache_images
        self._keys: dict[int, tuple[weakref.ref, str]] = {}
        self._prompts: dict[str, torch.Tensor] = {}

    def describe(self) -> dict:
        described: dict[str, object] = {
            "name": self.name,
            "prompt": self.prompt,
            "proposals": self.proposals,
            "region": self.region,
        }
        if "grid" in self.proposals:
            described["scales"] = [list(s) for s in self.scales]
        if self.proposals.endswith(WITH_PARTS):
            described["segment_parts"] = SEGMENT_PARTS_VERSION
        if self.region in ("mask", "multiscale"):
            described["fill"] = TOKENS + self.fill if self.tokens else self.fill
        if self.region == "multiscale":
            described["zooms"] = list(ZOOMS)
        return described

    def candidates(self, image: Image.Image) -> tuple[list[Box], torch.Tensor]:
        """Candidate boxes and their region embeddings, computed once per image content."""
        key = self._key(image)
        if key not in self._cache:
            self.prepare([image])
        self._cache.move_to_end(key)
        return self._cache[key]

    def adopt(self, image: Image.Image, digest: str, boxes: list[Box], embeddings: torch.Tensor) -> None:
        """Take an image's candidates computed earlier (a search index stores them), so that
        :meth:`ground` ranks them without a forward pass and without reading the pixels:
        ``digest`` is the image's content key, known to whoever stored them."""
        self._remember(image, digest)
        self._cache[digest] = (list(boxes), embeddings)
        self._cache.move_to_end(digest)
        self._evict()

    #: Images whose candidates are encoded together: large enough for full batches, small
    #: enough that their crops (about 45 an image) never pile up in memory.
    IMAGES_PER_CALL = 8
    #: The same where candidates are encoded from patch tokens: a region is no image in
    #: memory, and a call's batches of short token sequences cost about as much as the call.
    TOKEN_IMAGES_PER_CALL = 64

    def prepare(self, images, keys: Sequence[str] | None = None) -> list[torch.Tensor | None]:
        """Propose and encode the candidates of all not yet cached images, in batched calls
        (patch tokens: a backbone batch of images at a time, one grid each; views: a few
        images at a time, whose crops are many). Returns the global embeddings that
        patch-token scoring computes on the way (None for images already cached, and in the
        crop and mask modes)."""
        images = list(images)
        for image, key in zip(images, keys or ()):
            self._remember(image, key)
        per_call = self.backbone.batch_size if self.region == "patches" else self.IMAGES_PER_CALL
        per_call = self.TOKEN_IMAGES_PER_CALL if self.tokens else per_call
        out: list[torch.Tensor | None] = []
        for start in range(0, len(images), per_call):
            out += self._prepare_some(images[start : start + per_call])
        return out

    def _prepare_some(self, images: list[Image.Image]) -> list[torch.Tensor | None]:
        keys = [self._key(image) for image in images]
        todo = {key: image for key, image in zip(keys, images) if key not in self._cache}
        if not todo:
            return [None] * len(images)
        boxes = dict(zip(todo, propose_many(list(todo.values()), self.proposals, self.scales)))  # parts found together
        fresh = self._encode_patches(todo, boxes) if self.region == "patches" else self._encode_views(todo, boxes)
        self._evict()
        return [fresh.get(key) for key in keys]

    def _encode_patches(self, todo: dict[str, Image.Image], boxes: dict[str, list[Box]]) -> dict[str, torch.Tensor]:
        """Candidates pooled from patch tokens; returns the global embeddings of ``todo``."""
        global_embeddings, grids = self.backbone.encode_with_patches(list(todo.values()), keys=list(todo))
        for key, grid in zip(todo, grids):
            weights = grid.overlap_weights(boxes[key]).float() if boxes[key] else torch.zeros(0, grid.embeddings[..., 0].numel())
            pooled = weights @ grid.embeddings.reshape(-1, grid.embeddings.shape[-1])
            self._cache[key] = (boxes[key], torch.nn.functional.normalize(pooled, dim=-1))
        return dict(zip(todo, global_embeddings))

    def _encode_views(self, todo: dict[str, Image.Image], boxes: dict[str, list[Box]]) -> dict:
        """Candidates encoded as crops, masked sub-images (from patch tokens where
        :attr:`tokens`) or (multiscale) the mean of a masked sub-image's and its zoomed views'
        embeddings, whose dot product with a text is the mean cosine. A masked view is the
        sub-image it shows and is encoded as one (by its sub-image key, through the backbone's
        cache where it has one); crops and zoomed views are encoded once and not kept: the
        rankings they give are."""
        maker = SubimageMaker(list(todo.values()), self.backbone.pixel_device)
        fill = "crop" if self.region == "crop" else self.fill
        zooms = ZOOMS if self.region == "multiscale" else ()
        candidates = [(n, b) for n, key in enumerate(todo) for b in boxes[key]]
        embeddings = torch.zeros(0)
        if candidates and self.tokens:
            views = [self._masked(todo, maker, candidates, TOKENS + fill)[:, None]]  # [candidates, 1, D] (or [..., Q, D])
            zoomed = [maker.zoomed(n, b, fill, z) for n, b in candidates for z in zooms]
            if zoomed:
                encoded = self.backbone.encode_views(zoomed)
                views.append(encoded.reshape(len(candidates), len(zooms), *encoded.shape[1:]))
            embeddings = torch.cat(views, dim=1).mean(dim=1)
        elif candidates and self.region == "mask":
            embeddings = self._masked(todo, maker, candidates, fill)
        elif candidates:  # each candidate's views in a row: its masked view, then its zoomed ones
            filled = [[maker.sub(n, [b], fill), *(maker.zoomed(n, b, fill, z) for z in zooms)] for n, b in candidates]
            embeddings = self.backbone.encode_views([view for some in filled for view in some])
            embeddings = embeddings.reshape(len(candidates), 1 + len(zooms), *embeddings.shape[1:]).mean(dim=1)
        start = 0
        for key in todo:
            count = len(boxes[key])
            self._cache[key] = (boxes[key], embeddings[start : start + count])
            start += count
        return {}

    def _masked(self, todo: dict[str, Image.Image], maker: SubimageMaker, candidates: list, source: str) -> torch.Tensor:
        """The masked candidates of ``todo``'s images, as the sub-images they are: an entity's
        sub-image of the same box and fill, once it is grounded to the candidate, is read back
        rather than encoded again."""
        return encode_subimages(self.backbone, maker, list(todo), [(n, [b]) for n, b in candidates], source)

    def _key(self, image: Image.Image) -> str:
        """The image's content key, hashed once per image object while it lives (``prepare``
        and each ``ground`` see the same object); like the candidate memory, it assumes an
        image is not changed in place between calls."""
        known = self._keys.get(id(image))
        if known is not None and known[0]() is image:
            return known[1]
        key = image_digest(image)
        self._remember(image, key)
        return key

    def _remember(self, image: Image.Image, key: str) -> None:
        """``key`` is the content key of ``image`` while that object lives."""
        number = id(image)
        forget = self._keys.pop
        self._keys[number] = (weakref.ref(image, lambda _: forget(number, None)), key)

    def _evict(self) -> None:
        while len(self._cache) > self._cache_images:
            self._cache.popitem(last=False)

    def ground(self, image: Image.Image, queries: Sequence[str], source: str | None = None) -> list[list[Detection]]:
        return self.ground_many([image], [queries], [source])[0]

    def ground_many(
        self, images: Sequence[Image.Image], queries: Sequence[Sequence[str]], sources: Sequence[str | None]
    ) -> list[list[list[Detection]]]:
        """Each image's candidates ranked for each of its queries, the similarities of all the
        images' candidates to all their prompts computed at once (a search ranks a shortlist)."""
        found = [self.candidates(image) for image in images]
        distinct = list(dict.fromkeys(q for some in queries for q in some))
        present = [embeddings for boxes, embeddings in found if boxes]  # segment proposals may find none
        if not distinct or not present:
            return [[[] for _ in some] for some in queries]
        # Scores equal to float noise (batch size changes the last bits) rank in candidate
        # order, so the chosen box never depends on how the encodings were batched.
        rounded = torch.round(cosines(torch.cat(present), self._prompt_embeddings(distinct)).double(), decimals=RANK_DECIMALS)
        counts = [len(boxes) for boxes, _ in found]
        padded = rounded.new_full((len(found), max(counts), len(distinct)), -math.inf)  # padding ranks last
        padded[torch.arange(max(counts)) < torch.tensor(counts)[:, None]] = rounded  # row-major: the concatenated order
        padded = padded.transpose(1, 2)  # [images, prompts, candidates]
        orders = torch.argsort(padded, dim=2, descending=True, stable=True).tolist()
        scores = padded.tolist()
        column = {q: k for k, q in enumerate(distinct)}
        ranked = []
        for n, (boxes, _) in enumerate(found):
            columns = [column[q] for q in queries[n]]
            ranked.append([[Detection((boxes[i],), scores[n][c][i], "") for i in orders[n][c][: len(boxes)]] for c in columns])
        return ranked

    #: Prompt embeddings kept by the grounder: every image of a search grounds the same queries.
    PROMPT_MEMORY = 4096

    def texts(self, queries: Sequence[str]) -> list[str]:
        return list(dict.fromkeys(p for p in (self.prompt.format(q) for q in queries) if p not in self._prompts))

    def _prompt_embeddings(self, queries: Sequence[str]) -> torch.Tensor:
        """The prompts' text embeddings, each encoded by the backbone once and then kept."""
        prompts = [self.prompt.format(q) for q in queries]
        missing = self.texts(queries)
        if missing:
            self._prompts.update(zip(missing, self.backbone.encode_texts(missing)))
            while len(self._prompts) > self.PROMPT_MEMORY:
                self._prompts.pop(next(iter(self._prompts)))
        return torch.stack([self._prompts[p] for p in prompts])
