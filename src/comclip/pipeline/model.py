"""ComCLIP end to end: parse, ground, build sub-images, compose, score.

Work is shared wherever it can be: every image is encoded once, every caption and phrase
once, each image is grounded once for all the entity names of all captions, and each
distinct sub-image is encoded once, all in batches.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

from comclip.backbones import DEFAULT_MODEL, Backbone, create_backbone
from comclip.backbones.runtime import RUNTIME
from comclip.boxes import Box
from comclip.collector import collector_paused
from comclip.composition import SCORE_MODES, Composition, Evidence, comclip_scores
from comclip.composition.geometry import RELATION_UNVERIFIED, geometry_bonus
from comclip.config import PipelineConfig, resolve_config, runnable_by
from comclip.grounding import GROUND_BY, Detection, Grounder, create_grounder
from comclip.grounding.assignment import assign, with_attributes
from comclip.imaging.files import ImageInput, LoadedImage, load_images
from comclip.imaging.subimages import SubimageMaker, encode_subimages
from comclip.parsing import Parser, SceneGraph, create_parser
from comclip.parsing.base import Entity
from comclip.pipeline.memory import Stored
from comclip.pipeline.pixel_relations import overlapping_entities, pixel_checks
from comclip.pipeline.regrounding import completed_rankings
from comclip.results import NO_ENTITIES, NOT_GROUNDED, ComCLIPResult, GroupScores, Part, check_relations, part_flags
from comclip.similarity import paired_cosines
from comclip.text import validate_captions


class ComCLIP:
    """Training-free compositional matching over a CLIP-like backbone.

    >>> m = ComCLIP.from_pretrained("openai/clip-vit-base-patch32", parser="spacy", grounder="clip", weighting="sum")
    >>> m.score(["dog.jpg"], ["a dog chasing a cat", "a cat chasing a dog"])  # images x texts

    Options are :class:`~comclip.config.PipelineConfig` fields, given as a ``config`` and/or
    keywords; keywords win over ``config``, and without a ``config`` they are layered over
    the model's defaults (``comclip.json``) and the library's. ``parser`` and ``grounder``
    may also be instances (a parser holding a dataset's graphs, a grounder shared by several
    pipelines so that each image's candidates are encoded once).
    """

    def __init__(
        self,
        backbone: Backbone,
        config: PipelineConfig | None = None,
        *,
        parser: Parser | str | None = None,
        grounder: Grounder | str | None = None,
        grounder_options: dict | None = None,
        parser_options: dict | None = None,
        **options: Any,
    ) -> None:
        self.config, extra = resolve_config(backbone.defaults, config, parser, grounder, grounder_options or {}, options)
        self.config = runnable_by(self.config, backbone)
        self.backbone = backbone
        self.parser = parser if isinstance(parser, Parser) else create_parser(self.config.parser, **(parser_options or {}))
        self.grounder = (
            grounder
            if isinstance(grounder, Grounder)
            else create_grounder(self.config.grounder, backbone, **self.config.grounder_options(), **extra)
        )
        self.temperature = self.config.temperature if self.config.temperature is not None else 1.0 / backbone.logit_scale
        self._ground_by = GROUND_BY[self.config.ground_by]  # looked up once: it is asked per entity and image

    @classmethod
    def from_pretrained(
        cls,
        model: str = DEFAULT_MODEL,
        *,
        device: str | None = None,
        batch_size: int = RUNTIME.batch_size,
        precision: str = RUNTIME.precision,
        pixels: str = RUNTIME.pixels,
        config: PipelineConfig | None = None,
        **options: Any,
    ) -> ComCLIP:
        """Load a backbone by name (see ``comclip models``) at ``precision`` and with its pixel
        path (the backbone's state, see :func:`~comclip.backbones.create_backbone`), and wrap it."""
        backbone = create_backbone(model, device=device, batch_size=batch_size, precision=precision, pixels=pixels)
        return cls(backbone, config, **options)

    @classmethod
    def from_backbone(cls, backbone: Backbone, config: PipelineConfig | None = None, **options: Any) -> ComCLIP:
        return cls(backbone, config, **options)

    def describe(self) -> dict:
        """Everything that determines the scores, for reports: the configuration, with the
        parser and grounder as they describe themselves and the temperature resolved."""
        return {
            "model": self.backbone.name,
            **self.config.to_dict(),
            "precision": self.backbone.precision,
            "pixels": self.backbone.pixels,
            "parser": self.parser.describe(),
            "grounder": self.grounder.describe(),
            "temperature": self.temperature,
        }

    # --- public API ----------------------------------------------------------------------
    def score(self, images: Sequence[ImageInput | LoadedImage] | ImageInput, texts: Sequence[str]) -> torch.Tensor:
        """ComCLIP scores, an ``[images, texts]`` matrix (as t2v_metrics' scorers return)."""
        details = self.score_details(images, texts)
        return torch.tensor([[r.score for r in row] for row in details], dtype=torch.float64)

    def explain(self, image: ImageInput | LoadedImage, text: str) -> ComCLIPResult:
        """The score of one pair with its parts: phrases, boxes, s_i, w_i and flags."""
        return self.score_details([image], [text])[0][0]

    def score_details(
        self, images: Sequence[ImageInput | LoadedImage] | ImageInput, texts: Sequence[str]
    ) -> list[list[ComCLIPResult]]:
        """Every image against every text, with parts, computed in shared batches."""
        loaded = load_images(images)
        texts = validate_captions(texts)
        pairs = [(i, j) for i in range(len(loaded)) for j in range(len(texts))]
        scored = self._score_pairs(loaded, texts, pairs)
        return [[scored[(i, j)] for j in range(len(texts))] for i in range(len(loaded))]

    def score_groups(self, groups: Sequence[tuple[Sequence[ImageInput | LoadedImage], Sequence[str]]]) -> list[GroupScores]:
        """Each group's (a benchmark example's) :class:`GroupScores`, with all the groups'
        images, captions, regions, sub-images and phrases encoded in shared batches."""
        images: list[LoadedImage] = []
        texts: list[str] = []
        pairs: list[tuple[int, int]] = []
        spans: list[tuple[int, int, int, int]] = []
        for group_images, group_texts in groups:
            i0, j0 = len(images), len(texts)
            images += load_images(group_images)
            texts += validate_captions(group_texts)
            pairs += [(i, j) for i in range(i0, len(images)) for j in range(j0, len(texts))]
            spans.append((i0, len(images), j0, len(texts)))
        scored = self._score_pairs(images, texts, pairs)
        out: list[GroupScores] = []
        for i0, i1, j0, j1 in spans:
            grid = [[scored[(i, j)] for j in range(j0, j1)] for i in range(i0, i1)]
            matrix = torch.tensor([[r.score for r in row] for row in grid], dtype=torch.float64)
            flags = dict(sorted(Counter(f for row in grid for r in row for f in r.flags).items()))
            out.append(GroupScores(matrix, flags, grid))
        return out

    # --- the stages ----------------------------------------------------------------------
    @collector_paused()
    def _score_pairs(self, loaded: list[LoadedImage], texts: list[str], pairs: list[tuple[int, int]]) -> dict:
        """ComCLIP results for the given (image, text) index pairs; shared work done once.

        The same image object given several times (a gallery image in several queries) is
        grounded and encoded once: every index is mapped to its first occurrence."""
        first: dict[int, int] = {}
        owner = [first.setdefault(id(im.image), i) for i, im in enumerate(loaded)]
        stored = Stored(self.backbone, self.grounder, self.parser)
        distinct_texts = list(dict.fromkeys(texts))
        graph_of = stored.parse(self.parser, distinct_texts)
        queries: dict[int, list[str]] = {}
        for i, j in pairs:
            queries.setdefault(owner[i], []).extend(q for e in graph_of[texts[j]].entities for q in self._queries(e))
        caption_of = self._encode_captions(distinct_texts, [graph_of[t] for t in distinct_texts])
        maker = SubimageMaker([im.image for im in loaded], self.backbone.pixel_device)
        rankings, image_embeddings = self._ground_and_encode(loaded, queries, stored, maker)
        ranked = {(i, j): [self._ranking(e, rankings[owner[i]]) for e in graph_of[texts[j]].entities] for i, j in pairs}
        layouts = {(i, j): self._layout(graph_of[texts[j]], ranked[(i, j)], loaded[owner[i]]) for i, j in pairs}
        graphs = {pair: graph_of[texts[pair[1]]] for pair in layouts}
        if self.config.relation_check == "pixels":  # depth's entities grounded again, their candidates completed
            for (i, j), again in completed_rankings(self.backbone, loaded, owner, layouts, graphs, ranked).items():
                layouts[(i, j)] = self._layout(graph_of[texts[j]], again, loaded[owner[i]])
        encoded = self._encode_parts(loaded, owner, layouts, maker)
        composed = self._compose(layouts, owner, image_embeddings, [caption_of[text] for text in texts], encoded)
        pixels = None  # relations that boxes cannot show, read from sub-images (--relations pixels)
        if self.config.relation_check == "pixels":
            pixels = pixel_checks(self.backbone, loaded, owner, layouts, graphs, encoded["phrase"])
        return {
            (i, j): self._result(
                loaded[i],
                texts[j],
                graph_of[texts[j]],
                parts,
                image_embeddings[owner[i]],
                caption_of[texts[j]],
                composed.get((i, j)),
                None if pixels is None else pixels.get((i, j), {}),
            )
            for (i, j), parts in layouts.items()
        }

    def _compose(self, layouts: dict, owner: list[int], image_embeddings: dict, captions: list, encoded: dict) -> dict:
        """Each pair's :class:`~comclip.composition.compose.Composition` (``captions``: the
        embedding of each text, by index), the pairs with as many parts scored together (pairs
        without parts have none)."""
        groups: dict[int, list] = {}
        for pair, parts in layouts.items():
            if parts:
                groups.setdefault(len(parts), []).append(pair)
        composed: dict[tuple[int, int], Composition] = {}
        for group in groups.values():
            subs = [torch.stack([encoded["sub"][(owner[i], tuple(p.boxes))] for p in layouts[(i, j)]]) for i, j in group]
            phrases = [torch.stack([encoded["phrase"][p.phrase] for p in layouts[pair]]) for pair in group]
            scores = comclip_scores(
                torch.stack([image_embeddings[owner[i]] for i, _ in group]),
                torch.stack([captions[j] for _, j in group]),
                torch.stack(subs),
                torch.stack(phrases),
                self.config.weighting,
                self.temperature,
            )
            composed.update(zip(group, scores))
        return composed

    def encode_captions(self, texts: Sequence[str]) -> torch.Tensor:
        """The captions' embeddings (``[M, D]``, as ``backbone.encode_texts``); with a cache,
        the texts scoring them will encode (part phrases, grounder prompts) go in the same
        model call and are read back from the cache then: one pass over the text tower's
        weights instead of three, which on a CPU is most of a text's cost."""
        texts = validate_captions(list(texts))
        distinct = list(dict.fromkeys(texts))
        graphs = Stored(self.backbone, self.grounder, self.parser).parse(self.parser, distinct)
        encoded = self._encode_captions(distinct, [graphs[t] for t in distinct])
        return torch.stack([encoded[t] for t in texts])

    def _encode_captions(self, texts: list[str], graphs: list[SceneGraph]) -> dict:
        """``{text: embedding}`` of the captions, and (with a cache) of their part phrases and
        grounder prompts, in one call (see :meth:`encode_captions`)."""
        later: list[str] = []
        if getattr(self.backbone, "cache", None) is not None:
            phrases = [phrase for graph in graphs for phrase in self._phrases(graph)]
            queries = list(dict.fromkeys(q for graph in graphs for e in graph.entities for q in self._queries(e)))
            later = phrases + self.grounder.texts(queries)
        batch = list(dict.fromkeys(texts + later))
        return dict(zip(batch, self.backbone.encode_texts(batch)))

    def _phrases(self, graph: SceneGraph) -> list[str]:
        """The phrases a caption's parts are scored against: each entity's, then each relation's predicate."""
        entities = [self.config.entity_prompt.format(entity.phrase) for entity in graph.entities]
        return entities + ([r.predicate for r in graph.relations] if self.config.relation_subimages else [])

    def _ground_and_encode(
        self, loaded: list[LoadedImage], queries: dict[int, list[str]], stored: Stored, maker: SubimageMaker
    ) -> tuple[dict, dict]:
        """Each image's ranked detections per distinct entity name, and the global embeddings of
        the distinct images, by index. Rankings stored in the cache are read back; the grounder
        prepares only the images it still has to ground, and where that computed their global
        embeddings (patch tokens) they are taken from it; only the rest are encoded."""
        rankings = {i: stored.rankings(loaded[i].digest, list(dict.fromkeys(names))) for i, names in queries.items()}
        todo = {i: [n for n in dict.fromkeys(names) if n not in rankings[i]] for i, names in queries.items()}
        todo = {i: names for i, names in todo.items() if names}
        prepared = self.grounder.prepare([loaded[i].image for i in todo], [loaded[i].digest for i in todo]) if todo else []
        embeddings = {i: e for i, e in zip(todo, prepared) if e is not None}
        for i, fresh in zip(todo, stored.ground_many(self.grounder, [loaded[i] for i in todo], list(todo.values()))):
            rankings[i].update(fresh)
        for i in rankings:
            if self.grounder.original_pixels and loaded[i].scale != 1.0:  # boxes from a file, for the full-size image
                rankings[i] = {
                    name: [Detection(tuple(b.scaled(loaded[i].scale) for b in d.boxes), d.score, d.label) for d in ranked]
                    for name, ranked in rankings[i].items()
                }
        missing = [i for i in queries if i not in embeddings]
        if missing:
            embeddings.update(
                zip(missing, self.backbone.encode_keyed([loaded[i].digest for i in missing], lambda n: maker.whole(missing[n])))
            )
        return rankings, embeddings

    def _encode_parts(self, loaded: list[LoadedImage], owner: list[int], layouts: dict, maker: SubimageMaker) -> dict:
        """Every distinct sub-image (image, boxes) and phrase of all pairs, encoded once each; a
        sub-image is made only where its embedding is not in the cache (keys need no pixels)."""
        sub_keys = list(dict.fromkeys((owner[i], tuple(p.boxes)) for (i, _), parts in layouts.items() for p in parts))
        phrases = list(dict.fromkeys(p.phrase for parts in layouts.values() for p in parts))
        digests, fill = [im.digest for im in loaded], self.config.subimage_source
        return {
            "sub": dict(zip(sub_keys, encode_subimages(self.backbone, maker, digests, sub_keys, fill))) if sub_keys else {},
            "phrase": dict(zip(phrases, self.backbone.encode_texts(phrases))) if phrases else {},
        }

    def _result(
        self,
        image: LoadedImage,
        text: str,
        graph: SceneGraph,
        parts: list[Part],
        image_embedding: torch.Tensor,
        caption_embedding: torch.Tensor,
        composition: Composition | None,
        pixels: dict | None = None,
    ) -> ComCLIPResult:
        """One pair's score from its composition (see :meth:`_compose`), by the configured
        score mode.

        A caption without entities is scored as its own single entity grounded to the whole
        image: its one part is the global image against the caption itself (s = w = the CLIP
        cosine's part), so every score mode puts it on the same scale as a parsed caption
        (``evidence`` adds lambda x its CLIP cosine) instead of falling back to plain CLIP."""
        clip_score = float(paired_cosines(image_embedding[None], caption_embedding[None])[0])
        if not parts or composition is None:
            return self._unparsed(image, text, graph, clip_score)
        composed, s, w, weight_flags = composition
        for part, s_i, w_i in zip(parts, s.tolist(), w.tolist()):
            part.similarity, part.weight = s_i, w_i
        evidence = Evidence(
            composed,
            clip_score,
            [p.similarity for p in parts if p.kind == "entity"],
            [p.similarity for p in parts if p.kind == "relation"],
        )
        spatial = check_relations(graph, parts, *image.image.size, pixels) if self.config.relation_check != "off" else ()
        verified = [c[3] for c in spatial if c[3] is not None]
        score = self._mode(evidence) + geometry_bonus(verified, self.config.relation_weight)
        unverified = (RELATION_UNVERIFIED,) if len(verified) < len(spatial) else ()
        return ComCLIPResult(
            image.source,
            text,
            clip_score,
            score,
            parts,
            graph,
            composed=composed,
            config=self.config,
            flags=part_flags(parts) + weight_flags + unverified,
            spatial=spatial,
            scale=image.scale,
        )

    def _unparsed(self, image: LoadedImage, text: str, graph: SceneGraph, clip_score: float) -> ComCLIPResult:
        """A caption without entities: its own single entity on the whole image."""
        evidence = Evidence(clip_score, clip_score, [clip_score], [])
        return ComCLIPResult(
            image.source,
            text,
            clip_score,
            self._mode(evidence),
            [],
            graph,
            composed=clip_score,
            fallback="no entities parsed: the caption is its own entity on the whole image",
            config=self.config,
            flags=(NO_ENTITIES,),
        )

    def _mode(self, evidence: Evidence) -> float:
        return SCORE_MODES[self.config.score_mode](evidence, self.config.evidence_weight, self.config.evidence_relations)

    # --- internals -----------------------------------------------------------------------
    def _queries(self, entity: Entity) -> list[str]:
        """Every query an entity is grounded by: its own, and its phrase where attributes break ties."""
        return [self._query(entity)] + ([entity.phrase] if self._tie_query(entity) else [])

    def _tie_query(self, entity: Entity) -> bool:
        return bool(self.config.attribute_weight and entity.attributes and entity.phrase != self._query(entity))

    def _ranking(self, entity: Entity, rankings: dict) -> list[Detection]:
        """The entity's ranked detections; with ``attribute_weight``, re-ranked by adding that
        weight times its phrase's score on the same region (attributes break near-ties)."""
        ranked = rankings.get(self._query(entity), [])
        if not self._tie_query(entity):
            return ranked
        return with_attributes(ranked, rankings.get(entity.phrase, []), self.config.attribute_weight)

    def _query(self, entity: Entity) -> str:
        """What the grounder is asked to find for an entity: its head noun or its whole phrase."""
        return self._ground_by(entity)

    def _layout(self, graph: SceneGraph, ranked: list[list[Detection]], image: LoadedImage) -> list[Part]:
        """Parts (with boxes, not yet scored) of one caption on one image: its entities grounded
        together from their rankings (``ranked``: :meth:`_ranking` of each; see
        :mod:`comclip.grounding.assignment`), then its relations."""
        whole = Box(0.0, 0.0, float(image.image.width), float(image.image.height))
        grounded = assign(
            ranked,
            [(self._query(e), tuple(sorted(e.attributes))) for e in graph.entities],
            joint=self.config.assignment == "joint",
            union_margin=self.config.union_margin,
            touching=overlapping_entities(graph) if self.config.relation_check == "pixels" else (),
        )
        regions: dict[int, tuple[list[Box], list[str]]] = {}
        parts = []
        for entity, found, phrase in zip(graph.entities, grounded, self._phrases(graph)):  # the entities' phrases come first
            detection = found.detection
            boxes, flags = (list(detection.boxes), []) if detection is not None else ([whole], [NOT_GROUNDED])
            boxes = [b.clipped(image.image.width, image.image.height) for b in boxes]
            regions[entity.id] = (boxes, flags)
            parts.append(Part("entity", phrase, boxes, math.nan, math.nan, list(flags), (entity.id,), found.margin))
        if self.config.relation_subimages:
            for relation in graph.relations:
                subject_boxes, subject_flags = regions[relation.subject]
                object_boxes, object_flags = regions[relation.object]
                boxes = list(dict.fromkeys(subject_boxes + object_boxes))
                flags = sorted(set(subject_flags) | set(object_flags))
                parts.append(
                    Part("relation", relation.predicate, boxes, math.nan, math.nan, flags, (relation.subject, relation.object))
                )
        return parts
