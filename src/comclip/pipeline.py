"""ComCLIP end to end: parse, ground, build sub-images, compose, score.

Work is shared wherever it can be: every image is encoded once, every caption and phrase
once, each image is grounded once for all the entity names of all captions, and each
distinct sub-image is encoded once, all in batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .backbones import DEFAULT_MODEL, Backbone, create_backbone
from .composition import FILLS, SCORE_MODES, WEIGHTINGS, Evidence, comclip_score, make_subimage
from .errors import InputError
from .grounding import Box, Detection, Grounder, create_grounder
from .images import ImageInput, LoadedImage, load_image
from .parsing import Parser, SceneGraph, create_parser
from .text import validate_captions

NOT_GROUNDED = "not_grounded"


@dataclass
class Part:
    """One sub-image's contribution: an entity (scored against its phrase) or a relation
    (the union of its subject's and object's regions, scored against the predicate)."""

    kind: str
    phrase: str
    boxes: list[Box]
    similarity: float
    weight: float
    flags: list[str] = field(default_factory=list)
    entities: tuple[int, ...] = ()

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "phrase": self.phrase,
            "boxes": [b.as_list() for b in self.boxes],
            "similarity": self.similarity,
            "weight": self.weight,
            "flags": list(self.flags),
            "entities": list(self.entities),
        }


@dataclass
class ComCLIPResult:
    """A ComCLIP score with everything that produced it."""

    image: str
    text: str
    clip: float
    score: float
    parts: list[Part]
    graph: SceneGraph
    fallback: str | None = None
    composed: float | None = None  # the faithful ComCLIP score, where a score mode adds to it

    def to_dict(self) -> dict:
        return {
            "image": self.image,
            "text": self.text,
            "clip": self.clip,
            "comclip": self.score,
            "composed": self.composed,
            "fallback": self.fallback,
            "graph": self.graph.to_dict(),
            "parts": [p.to_dict() for p in self.parts],
        }


class ComCLIP:
    """Training-free compositional matching over a CLIP-like backbone.

    >>> m = ComCLIP.from_pretrained("openai/clip-vit-base-patch32", parser="spacy", grounder="clip", weighting="sum")
    >>> m.score(["dog.jpg"], ["a dog chasing a cat", "a cat chasing a dog"])  # images x texts
    """

    def __init__(
        self,
        backbone: Backbone,
        parser: Parser | str = "spacy",
        grounder: Grounder | str = "clip",
        weighting: str = "sum",
        temperature: float | None = None,
        fill: str = "black",
        use_relations: bool = True,
        grounder_options: dict | None = None,
        parser_options: dict | None = None,
        score_mode: str = "comclip",
        evidence_weight: float = 1.0,
        evidence_relations: bool = False,
        ground_by: str = "head",
        union_margin: float | None = None,
    ):
        if ground_by not in ("head", "phrase"):
            raise InputError(f"ground_by must be 'head' or 'phrase', got {ground_by!r}")
        if score_mode not in SCORE_MODES:
            raise InputError(f"unknown score mode {score_mode!r}; choose one of {', '.join(SCORE_MODES)}")
        if weighting not in WEIGHTINGS:
            raise InputError(f"unknown weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
        if fill not in FILLS:
            raise InputError(f"unknown fill {fill!r}; choose one of {', '.join(FILLS)}")
        if temperature is not None and temperature <= 0:
            raise InputError(f"temperature must be positive, got {temperature}")
        self.backbone = backbone
        self.parser = create_parser(parser, **(parser_options or {}))
        self.grounder = create_grounder(grounder, backbone, **(grounder_options or {}))
        self.weighting = weighting
        self.temperature = temperature if temperature is not None else 1.0 / backbone.logit_scale
        self.fill = fill
        self.use_relations = use_relations
        self.score_mode = score_mode
        self.ground_by = ground_by
        self.union_margin = union_margin
        #: How an entity's phrase is worded for its sub-image: as parsed ("{}") unless the
        #: model was trained on another form (the sandbox model's captions say "a red circle").
        self.entity_prompt = backbone.defaults.get("entity_prompt", "{}")
        self.evidence_weight = float(evidence_weight)
        self.evidence_relations = bool(evidence_relations)

    @classmethod
    def from_pretrained(cls, model: str = DEFAULT_MODEL, *, device=None, batch_size: int = 32, precision: str = "fp32",
                        **options) -> "ComCLIP":
        """Load a backbone by name (see ``comclip models``) and wrap it."""
        return cls(create_backbone(model, device=device, batch_size=batch_size, precision=precision), **options)

    @classmethod
    def from_backbone(cls, backbone: Backbone, **options) -> "ComCLIP":
        return cls(backbone, **options)

    def config(self) -> dict:
        """Everything that determines the scores, for reports."""
        return {
            "model": self.backbone.name,
            "parser": self.parser.describe(),
            "grounder": self.grounder.describe(),
            "weighting": self.weighting,
            "temperature": self.temperature,
            "fill": self.fill,
            "use_relations": self.use_relations,
            "score_mode": self.score_mode,
            "ground_by": self.ground_by,
            "union_margin": self.union_margin,
            "entity_prompt": self.entity_prompt,
            **({"evidence_weight": self.evidence_weight, "evidence_relations": self.evidence_relations}
               if self.score_mode != "comclip" else {}),
        }

    # --- public API ----------------------------------------------------------------------
    def score(self, images: Sequence[ImageInput], texts: Sequence[str]) -> torch.Tensor:
        """ComCLIP scores, an ``[images, texts]`` matrix (as t2v_metrics' scorers return)."""
        details = self.score_details(images, texts)
        return torch.tensor([[r.score for r in row] for row in details], dtype=torch.float64)

    def explain(self, image: ImageInput, text: str) -> ComCLIPResult:
        """The score of one pair with its parts: phrases, boxes, s_i, w_i and flags."""
        return self.score_details([image], [text])[0][0]

    def score_details(self, images: Sequence[ImageInput], texts: Sequence[str]) -> list[list[ComCLIPResult]]:
        """Every image against every text, with parts, computed in shared batches."""
        loaded = self._load(images)
        texts = validate_captions(texts)
        pairs = [(i, j) for i in range(len(loaded)) for j in range(len(texts))]
        scored = self._score_pairs(loaded, texts, pairs)
        return [[scored[(i, j)] for j in range(len(texts))] for i in range(len(loaded))]

    def score_groups(self, groups: Sequence[tuple[Sequence[ImageInput], Sequence[str]]]) -> list[torch.Tensor]:
        """One ``[images, texts]`` score matrix per group (a benchmark example), with all the
        groups' images, captions, regions, sub-images and phrases encoded in shared batches."""
        images, texts, pairs, spans = [], [], [], []
        for group_images, group_texts in groups:
            i0, j0 = len(images), len(texts)
            images += self._load(group_images)
            texts += validate_captions(group_texts)
            pairs += [(i, j) for i in range(i0, len(images)) for j in range(j0, len(texts))]
            spans.append((i0, len(images), j0, len(texts)))
        scored = self._score_pairs(images, texts, pairs)
        return [torch.tensor([[scored[(i, j)].score for j in range(j0, j1)] for i in range(i0, i1)], dtype=torch.float64)
                for i0, i1, j0, j1 in spans]

    @staticmethod
    def _load(images: Sequence[ImageInput]) -> list[LoadedImage]:
        loaded = [im if isinstance(im, LoadedImage) else load_image(im) for im in images]
        if not loaded:
            raise InputError("no images given")
        return loaded

    def _score_pairs(self, loaded: list[LoadedImage], texts: list[str], pairs: list[tuple[int, int]]) -> dict:
        """ComCLIP results for the given (image, text) index pairs; shared work done once."""
        with self.backbone.scratch_cache():
            return self._score_pairs_cached(loaded, texts, pairs)

    def _score_pairs_cached(self, loaded: list[LoadedImage], texts: list[str], pairs: list[tuple[int, int]]) -> dict:
        distinct_texts = list(dict.fromkeys(texts))
        graph_of = dict(zip(distinct_texts, self.parser.parse_many(distinct_texts)))
        graphs = [graph_of[t] for t in texts]
        # Ground, once per image, every distinct entity name of the captions it is paired with.
        # (Prepared first: a grounder reading patch tokens computes the global embeddings in
        # the same forward pass and leaves them in the backbone's cache, a scratch one if need be.)
        queries: dict[int, list[str]] = {}
        for i, j in pairs:
            queries.setdefault(i, []).extend(self._query(e) for e in graphs[j].entities)
        self.grounder.prepare([loaded[i].image for i, q in queries.items() if q])
        image_embeddings = self.backbone.encode_images([im.image for im in loaded])
        caption_embeddings = self.backbone.encode_texts(texts)
        groundings: dict[int, dict[str, Detection | None]] = {}
        for i, names in queries.items():
            names = list(dict.fromkeys(names))
            ranked = self.grounder.ground(loaded[i].image, names, source=loaded[i].source) if names else []
            groundings[i] = {name: self._pick(dets) for name, dets in zip(names, ranked)}

        # Lay out every part of every pair, then encode distinct sub-images and phrases once.
        layouts = {(i, j): self._layout(graphs[j], groundings[i], loaded[i]) for i, j in pairs}
        sub_keys = list(dict.fromkeys((i, tuple(p.boxes)) for (i, _), parts in layouts.items() for p in parts))
        phrases = list(dict.fromkeys(p.phrase for parts in layouts.values() for p in parts))
        sub_index = {key: n for n, key in enumerate(sub_keys)}
        phrase_index = {text: n for n, text in enumerate(phrases)}
        sub_embeddings = (
            self.backbone.encode_images([make_subimage(loaded[i].image, list(boxes), self.fill) for i, boxes in sub_keys])
            if sub_keys else None
        )
        phrase_embeddings = self.backbone.encode_texts(phrases) if phrases else None

        results = {}
        for (i, j), parts in layouts.items():
            im, text, graph = loaded[i], texts[j], graphs[j]
            clip_score = float(image_embeddings[i] @ caption_embeddings[j])
            if not parts:
                results[(i, j)] = ComCLIPResult(im.source, text, clip_score, clip_score, [], graph,
                                                fallback="no entities parsed: plain CLIP score")
                continue
            subs = sub_embeddings[[sub_index[(i, tuple(p.boxes))] for p in parts]]
            phrase_vecs = phrase_embeddings[[phrase_index[p.phrase] for p in parts]]
            composed, s, w = comclip_score(image_embeddings[i], caption_embeddings[j], subs, phrase_vecs,
                                           self.weighting, self.temperature)
            for part, s_i, w_i in zip(parts, s.tolist(), w.tolist()):
                part.similarity, part.weight = s_i, w_i
            evidence = Evidence(composed, clip_score, [p.similarity for p in parts if p.kind == "entity"],
                                [p.similarity for p in parts if p.kind == "relation"])
            score = SCORE_MODES[self.score_mode](evidence, self.evidence_weight, self.evidence_relations)
            results[(i, j)] = ComCLIPResult(im.source, text, clip_score, score, parts, graph, composed=composed)
        return results

    # --- internals -----------------------------------------------------------------------
    def _pick(self, detections: list[Detection]) -> Detection | None:
        """The top detection, or with ``union_margin`` the union of every detection scoring
        within that margin of the top (an entity seen in several places, or split boxes)."""
        if not detections:
            return None
        if self.union_margin is None:
            return detections[0]
        top = detections[0].score
        close = [d for d in detections if d.score >= top - self.union_margin]
        boxes = tuple(dict.fromkeys(b for d in close for b in d.boxes))
        return Detection(boxes=boxes, score=top, label=detections[0].label)

    def _query(self, entity) -> str:
        """What the grounder is asked to find for an entity: its head noun or its whole phrase."""
        return entity.head if self.ground_by == "head" else entity.phrase

    def _layout(self, graph: SceneGraph, grounding: dict, image: LoadedImage) -> list[Part]:
        """Parts (with boxes, not yet scored) of one caption on one image."""
        whole = Box(0.0, 0.0, float(image.image.width), float(image.image.height))
        regions: dict[int, tuple[list[Box], list[str]]] = {}
        parts = []
        for entity in graph.entities:
            detection = grounding.get(self._query(entity))
            boxes, flags = (list(detection.boxes), []) if detection is not None else ([whole], [NOT_GROUNDED])
            boxes = [b.clipped(image.image.width, image.image.height) for b in boxes]
            regions[entity.id] = (boxes, flags)
            phrase = self.entity_prompt.format(entity.phrase)
            parts.append(Part("entity", phrase, boxes, math.nan, math.nan, list(flags), (entity.id,)))
        if self.use_relations:
            for relation in graph.relations:
                subject_boxes, subject_flags = regions[relation.subject]
                object_boxes, object_flags = regions[relation.object]
                boxes = list(dict.fromkeys(subject_boxes + object_boxes))
                flags = sorted(set(subject_flags) | set(object_flags))
                parts.append(Part("relation", relation.predicate, boxes, math.nan, math.nan, flags,
                                  (relation.subject, relation.object)))
        return parts
