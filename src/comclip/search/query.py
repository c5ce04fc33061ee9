"""The query side of a search: a FAISS shortlist by CLIP's cosine, re-ranked by each method
with the pipeline itself, over images whose stored side the index serves (see
:mod:`comclip.search.stored_images`)."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

import numpy as np

from comclip.collector import collector_paused
from comclip.config import PipelineConfig
from comclip.grounding.clip_grounder import CLIPGrounder
from comclip.grounding.pool import GrounderPool
from comclip.pipeline import ComCLIP
from comclip.search.results import Hit, SearchResult
from comclip.search.stored_images import IndexCache
from comclip.text import validate_captions

#: Candidate sets a query's grounders keep in memory: past this many shortlisted images,
#: adopted candidates would be evicted before they are ranked.
GROUNDER_MEMORY = 4096


def settle(*indexes: Any) -> None:
    """Prepare a process that has opened ``indexes`` and its model and now serves searches
    (``comclip search``, the app): each index's arrays are opened now (see
    :meth:`~comclip.search.index.Index.open_arrays`), not by the first queries, and every
    object alive is moved to the cycle collector's permanent generation (``gc.freeze``), so
    what the process keeps for its life (an index's records, the model, the parser) is never
    walked again by the collections later work sets off. Process-wide, so the library leaves
    it to the program; objects frozen are never freed."""
    for index in indexes:
        index.open_arrays()
    gc.collect()
    gc.freeze()


class Searcher:
    """Scores queries against an open :class:`~comclip.search.index.Index` (``index``) with its backbone.

    ``configs``: ``{method: PipelineConfig, or None for plain CLIP}``, each covered by what the
    index stores; ``cache``: the index's query-time cache (see :class:`IndexCache`), kept
    between searches."""

    def __init__(self, index: Any, configs: dict[str, PipelineConfig | None], cache: IndexCache) -> None:
        self.index = index
        backbone = index.backbone
        self.cache = cache
        pool = GrounderPool(backbone)
        self.pipelines: dict[str, ComCLIP | None] = {}
        for name, config in configs.items():
            if config is None:
                self.pipelines[name] = None
                continue
            grounder = pool.get(config.grounder, {**config.grounder_options(), "cache_images": GROUNDER_MEMORY})
            # Ranking stored candidates takes microseconds: keeping each (image, query) ranking
            # in the cache would cost more than it saves, and hardly any pair repeats.
            grounder.cacheable = False
            self.pipelines[name] = ComCLIP(backbone, config, grounder=grounder)

    @collector_paused()
    def search(self, queries: Sequence[str], top: int, candidates: int) -> list[SearchResult]:
        """For each query, each method's ``top`` hits among the ``candidates`` images whose
        global embeddings are nearest the query's (the FAISS shortlist)."""
        queries = validate_captions(list(queries))
        backbone = self.index.backbone
        saved, backbone.cache = backbone.cache, self.cache  # the index answers while this search runs
        # Re-ranking makes thousands of short-lived objects (a detection per candidate and
        # query): a third to three quarters of a query's time went to the cycle collector they
        # set off (see comclip.collector). It runs after the search instead.
        try:
            pipeline = next((p for p in self.pipelines.values() if p is not None), None)
            vectors = pipeline.encode_captions(queries) if pipeline is not None else backbone.encode_texts(queries)
            shortlists = self.index.shortlist(vectors.numpy(), candidates)
            results = []
            for query, vector, rows in zip(queries, vectors, shortlists):
                clip = self.index.global_vectors(rows) @ vector.numpy().astype(np.float32)
                results += [self._ranked(query, name, rows, clip, top) for name in self.pipelines]
            return results
        finally:
            backbone.cache = saved

    def _ranked(self, query: str, method: str, rows: list[int], clip: np.ndarray, top: int) -> SearchResult:
        pipeline = self.pipelines[method]
        computed, decoded = self.cache.computed, self.index.decoded
        details: list = [None] * len(rows)
        scores = clip.astype(np.float64)
        if pipeline is not None and rows:
            images = [self.index.image(r) for r in rows]
            if isinstance(pipeline.grounder, CLIPGrounder):
                key = self.index.grounder_key(pipeline.grounder)
                for image, row in zip(images, rows):
                    boxes, embeddings = self.index.candidates(row, key)
                    pipeline.grounder.adopt(image.image, image.digest, boxes, embeddings)
            details = [d[0] for d in pipeline.score_details(images, [query])]
            scores = np.asarray([d.score for d in details], dtype=np.float64)
        order = sorted(range(len(rows)), key=lambda n: (-scores[n], rows[n]))[:top]
        hits = [
            Hit(rank + 1, self.index.path(rows[n]), float(scores[n]), float(clip[n]), rows[n], details[n])
            for rank, n in enumerate(order)
        ]
        return SearchResult(query, method, hits, len(rows), self.cache.computed - computed, self.index.decoded - decoded)
