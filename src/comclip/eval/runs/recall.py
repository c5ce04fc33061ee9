"""Retrieval evaluation: Recall@K in both directions, with CLIP and with ComCLIP re-ranking.

Scoring every caption against every image with ComCLIP costs a grounding and several
sub-image encodings per pair, so ComCLIP is used as the paper uses it on Flickr30K: CLIP
ranks the whole gallery, and ComCLIP re-scores CLIP's top K candidates of each query
(``rerank_top``). A query's correct item outside CLIP's top K keeps its CLIP rank.

Every query is one record in ``per_example.jsonl`` (``t2i/<caption>``, ``i2t/<image>``), with
its rank and its hits, written as it goes so a killed run resumes. An image that cannot be
loaded, or a caption that is invalid, fails its own query (and its captions' queries) with
the reason and leaves the gallery; the report counts them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache

import numpy as np
import torch

from comclip.errors import ComclipError, InputError
from comclip.eval.benchmarks.datasets.retrieval import RetrievalDataset
from comclip.eval.benchmarks.kinds import I2T, T2I, correct
from comclip.eval.runs.options import EVAL
from comclip.eval.runs.process_group import World, gathered
from comclip.eval.runs.runner import check_limit, run_task, traced_batch
from comclip.eval.runs.store import Key, ResultLog
from comclip.imaging.files import LoadedImage, load_image
from comclip.imaging.prefetch import ImageLoader
from comclip.similarity import cosines
from comclip.text import validate_captions


def strict_rank(scores: np.ndarray, target: int | Sequence[int]) -> int:
    """0-based rank of the best target: how many other items score at least as high (ties count
    against the target, as in :func:`comclip.eval.benchmarks.metrics.retrieval_hits`)."""
    targets = np.atleast_1d(target)
    return int(min((scores >= scores[t]).sum() - 1 for t in targets))


class Gallery:
    """The gallery's image files, never all in memory at once: encoded in streamed chunks (the
    next chunk decoding in ``workers`` processes meanwhile), then decoded again on demand for
    re-ranking, with the ``keep`` most recently used images kept decoded. A 5,000-photo test
    split would otherwise hold about 5 GB of pixels."""

    def __init__(self, paths: Sequence[str], workers: int = EVAL.workers, keep: int = 256):
        self.paths = list(paths)
        self.workers = workers
        self.errors: dict[int, str] = {}
        self._get = lru_cache(maxsize=keep)(self._decode)

    def encode(self, backbone, chunk: int = 256, world: World = World()) -> tuple[list[int], torch.Tensor | None]:
        """The indices of the images that decode, and their embeddings; the rest go to ``errors``.
        With several processes each encodes every N-th image and all get the whole gallery."""
        mine = world.shard(range(len(self.paths)))
        ok, embeddings = [], []
        parts = [mine[start : start + chunk] for start in range(0, len(mine), chunk)]
        with ImageLoader(self.workers) as loader:
            for part, decoded in zip(parts, loader.prefetch([[self.paths[n] for n in p] for p in parts])):
                good = [(n, item) for n, item in zip(part, decoded) if not isinstance(item, Exception)]
                self.errors.update({n: str(item) for n, item in zip(part, decoded) if isinstance(item, Exception)})
                if good:
                    ok += [n for n, _ in good]
                    embeddings.append(backbone.encode_images([item for _, item in good]))
        rows = dict(zip(ok, torch.cat(embeddings))) if embeddings else {}
        if world.size > 1:
            rows = gathered(world, rows)
            self.errors = dict(sorted(gathered(world, self.errors).items()))  # in gallery order, as one process has them
        ok = sorted(rows)
        return ok, (torch.stack([rows[n] for n in ok]) if ok else None)

    def __getitem__(self, n: int) -> LoadedImage:
        return self._get(n)

    def _decode(self, n: int) -> LoadedImage:
        return load_image(self.paths[n])


def _valid_captions(dataset: RetrievalDataset, image_errors: dict[int, str]) -> tuple[dict, dict]:
    """Valid captions, and the reason each other caption failed."""
    captions, caption_errors = {}, {}
    for t, text in enumerate(dataset.captions):
        owner = dataset.caption_image[t]
        if owner in image_errors:
            caption_errors[t] = f"its image failed: {image_errors[owner]}"
            continue
        try:
            captions[t] = validate_captions([text])[0]
        except ComclipError as exc:
            caption_errors[t] = str(exc)
    return captions, caption_errors


class RetrievalTask:
    """Every query ranked by ``clip`` (and re-ranked, recorded as ``reranker_name``, when a
    ``reranker`` is given).

    ``workers`` processes decode the gallery's files. Re-ranking scores ``chunk`` queries at a
    time through the reranker's ``score_groups`` where it has one, so their encodings share
    batches; a failure in a chunk is traced to its query by scoring that chunk one by one.
    The gallery is encoded in :meth:`plan`, after the results folder is checked. With several
    processes the gallery and the captions are encoded in shares and gathered, and each
    process ranks its share of the queries.
    """

    unit = "query"

    def __init__(
        self,
        dataset: RetrievalDataset,
        backbone,
        *,
        reranker=None,
        reranker_name: str = "comclip",
        rerank_top: int = EVAL.rerank_top,
        limit: int | None = EVAL.limit,
        workers: int = EVAL.workers,
        chunk: int = 32,
    ):
        check_limit(limit)
        self.dataset = dataset.first(limit) if limit else dataset
        self.backbone, self.reranker, self.rerank_top = backbone, reranker, rerank_top
        self.workers, self.chunk = workers, chunk
        self.methods = ["clip"] + ([reranker_name] if reranker is not None else [])
        self.notes = {reranker_name: {"rerank_top": rerank_top}} if reranker is not None else {}
        self._work: list[tuple[str, list[tuple[str, str]], list[tuple[str, int]]]] = []

    def plan(self, results: ResultLog, world: World) -> int:
        gallery = Gallery(self.dataset.images, self.workers)
        self.image_ids, image_emb = gallery.encode(self.backbone, world=world)
        captions, caption_errors = _valid_captions(self.dataset, gallery.errors)
        self.caption_ids = sorted(captions)
        row_of = {n: row for row, n in enumerate(self.image_ids)}
        owner = np.array([row_of[self.dataset.caption_image[t]] for t in self.caption_ids], dtype=int)
        similarity = np.zeros((len(self.image_ids), len(self.caption_ids)))
        if image_emb is not None and self.caption_ids:
            text_emb = _encode_captions(self.backbone, [captions[t] for t in self.caption_ids], world)
            similarity = cosines(image_emb, text_emb).double().numpy()
        self.context = _Context(
            similarity,
            owner,
            self.reranker,
            self.rerank_top,
            _Indexed(gallery, self.image_ids),
            [captions[t] for t in self.caption_ids],
        )
        self.failures = [
            *((f"i2t/{n}", e) for n, e in gallery.errors.items()),
            *((f"t2i/{t}", e) for t, e in caption_errors.items()),
        ]
        queries = world.shard(_queries(self.image_ids, self.caption_ids))
        failed = world.shard(self.failures)
        self._work = [
            (
                method,
                [f for f in failed if not results.has(method, f[0])],
                [q for q in queries if not results.has(method, self._id(*q))],
            )
            for method in self.methods
        ]
        return sum(len(f) + len(q) for _, f, q in self._work)

    def records(self) -> Iterator[tuple[list[dict], int]]:
        for method, failed, todo in self._work:
            if failed:
                yield (
                    [{**_query_record(query_id, method), "status": "failed", "error": error} for query_id, error in failed],
                    len(failed),
                )
            for start in range(0, len(todo), self.chunk):
                part = todo[start : start + self.chunk]
                yield (
                    [self._record(method, query, outcome) for query, outcome in zip(part, self.context.rank(method, part))],
                    len(part),
                )

    def order(self) -> list[Key]:
        queries = [self._id(*q) for q in _queries(self.image_ids, self.caption_ids)]
        return [(method, query_id) for method in self.methods for query_id in [f for f, _ in self.failures] + queries]

    def _id(self, direction: str, q: int) -> str:
        return f"t2i/{self.caption_ids[q]}" if direction == "t2i" else f"i2t/{self.image_ids[q]}"

    def _record(self, method: str, query: tuple[str, int], outcome) -> dict:
        record = _query_record(self._id(*query), method)
        if isinstance(outcome, ComclipError):
            return {**record, "status": "failed", "error": str(outcome)}
        return {**record, "status": "ok", **outcome, "correct": correct(record["kind"], np.asarray(outcome["rank"]))}


def retrieval_task(
    dataset: RetrievalDataset,
    backbone,
    pipelines: dict,
    *,
    limit: int | None = EVAL.limit,
    workers: int = EVAL.workers,
    rerank_top: int = EVAL.rerank_top,
) -> RetrievalTask:
    """CLIP ranks the gallery (method ``clip``); one composed method re-ranks CLIP's top ``rerank_top``."""
    composed = [name for name, pipeline in pipelines.items() if pipeline is not None]
    plain = [name for name, pipeline in pipelines.items() if pipeline is None]
    if len(composed) > 1 or plain not in ([], ["clip"]):
        raise InputError("retrieval evaluates clip (CLIP ranking) and one composed method (re-ranking), nothing else")
    if rerank_top < 1:
        raise InputError(f"--rerank-top must be at least 1, got {rerank_top}")
    reranker = composed[0] if composed else None
    return RetrievalTask(
        dataset,
        backbone,
        reranker=pipelines[reranker] if reranker else None,
        reranker_name=reranker or "comclip",
        rerank_top=rerank_top,
        limit=limit,
        workers=workers,
    )


def run_retrieval(
    dataset: RetrievalDataset,
    backbone,
    out_dir,
    *,
    reranker=None,
    reranker_name: str = "comclip",
    rerank_top: int = EVAL.rerank_top,
    resume: bool = False,
    limit: int | None = EVAL.limit,
    progress: bool | None = None,
    workers: int = EVAL.workers,
    chunk: int = 32,
    manifest: dict | None = None,
    world: World = World(),
) -> dict:
    """Rank every query into ``out_dir`` (:class:`RetrievalTask` through :func:`~comclip.eval.runs.runner.run_task`);
    returns every record, the main process only."""
    task = RetrievalTask(
        dataset,
        backbone,
        reranker=reranker,
        reranker_name=reranker_name,
        rerank_top=rerank_top,
        limit=limit,
        workers=workers,
        chunk=chunk,
    )
    return run_task(task, out_dir, resume=resume, manifest=manifest, progress=progress, world=world)


def _queries(image_ids, caption_ids) -> list[tuple[str, int]]:
    """Every query: each caption against the images, then each image against the captions."""
    return [("t2i", col) for col in range(len(caption_ids))] + [("i2t", row) for row in range(len(image_ids))]


def _encode_captions(backbone, texts: list[str], world: World) -> torch.Tensor:
    """The captions' embeddings; with several processes each encodes every N-th and all get all."""
    if world.size == 1:
        return backbone.encode_texts(texts)
    mine = world.shard(range(len(texts)))
    rows = dict(zip(mine, backbone.encode_texts([texts[n] for n in mine]))) if mine else {}
    rows = gathered(world, rows)
    return torch.stack([rows[n] for n in range(len(texts))])


class _Indexed:
    """Gallery images by their row in the similarity matrix."""

    def __init__(self, gallery: Gallery, image_ids: list[int]):
        self.gallery, self.image_ids = gallery, image_ids

    def __getitem__(self, row: int) -> LoadedImage:
        return self.gallery[self.image_ids[row]]


def _query_record(query_id: str, method: str) -> dict:
    """The fields every record of a query has; ``query_id`` is ``t2i/<caption>`` or ``i2t/<image>``."""
    return {"id": query_id, "method": method, "kind": T2I if query_id.startswith("t2i/") else I2T, "subset": "", "tags": []}


class _Context:
    """What ranking a query needs: CLIP's similarities, the reranker and the gallery."""

    def __init__(self, similarity, owner, reranker, top: int, images, captions: list[str]):
        self.similarity, self.owner, self.reranker, self.top = similarity, owner, reranker, top
        self.images, self.captions = images, captions

    def rank(self, method: str, queries: list[tuple[str, int]]) -> list[dict | ComclipError]:
        """Each query's ranks, or the error that failed it."""
        ranked = [self._clip_rank(direction, q) for direction, q in queries]
        if method == "clip":
            return [{"rank": clip_rank} for clip_rank, _, _ in ranked]
        outcomes: list = [{"rank": clip_rank, "clip_rank": clip_rank} for clip_rank, _, _ in ranked]
        plans = {n: plan for n, (_, scores, targets) in enumerate(ranked) if (plan := self._candidates(scores, targets))}
        todo = list(plans)
        groups = [self._group(*queries[n], plans[n][0]) for n in todo]
        for n, matrix in zip(todo, traced_batch(self._rescore, groups)):
            if isinstance(matrix, ComclipError):
                outcomes[n] = matrix
            else:
                rescored = matrix[:, 0] if queries[n][0] == "t2i" else matrix[0]
                outcomes[n] = {"rank": strict_rank(rescored, plans[n][1]), "clip_rank": ranked[n][0]}
        return outcomes

    def _clip_rank(self, direction: str, q: int) -> tuple[int, np.ndarray, list[int]]:
        """CLIP's rank of the query's best target, with the query's scores and its targets."""
        if direction == "t2i":
            scores, targets = self.similarity[:, q], [self.owner[q]]
        else:
            scores, targets = self.similarity[q, :], list(np.flatnonzero(self.owner == q))
        return (strict_rank(scores, targets) if targets else len(scores)), scores, targets

    def _candidates(self, scores: np.ndarray, targets: list[int]) -> tuple[list[int], list[int]] | None:
        """CLIP's top K and the targets' places among them; None when no target is among them
        (nothing to re-score)."""
        candidates = list(np.argsort(-scores, kind="stable")[: self.top])
        local = [candidates.index(t) for t in targets if t in candidates]
        return (candidates, local) if local else None

    def _group(self, direction: str, q: int, candidates: list[int]) -> tuple[list, list[str]]:
        """The (images, texts) a query's re-scoring takes; gallery images are decoded here."""
        if direction == "t2i":
            return [self.images[c] for c in candidates], [self.captions[q]]
        return [self.images[q]], [self.captions[c] for c in candidates]

    def _rescore(self, groups: list) -> list[np.ndarray]:
        many = getattr(self.reranker, "score_groups", None)
        if many is not None:
            return [np.asarray(group.matrix) for group in many(groups)]
        return [np.asarray(self.reranker.score(images, texts)) for images, texts in groups]
