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

from typing import Sequence

import numpy as np

from ..errors import ComclipError
from ..loading import ImageLoader
from ..text import validate_captions
from .datasets.retrieval import RetrievalDataset
from .runner import Progress, ResultLog

KS = (1, 5, 10)
T2I, I2T = "retrieval_t2i", "retrieval_i2t"


def strict_rank(scores: np.ndarray, target: int | Sequence[int]) -> int:
    """0-based rank of the best target: how many other items score at least as high (ties count
    against the target, as in :func:`comclip.eval.metrics.retrieval_hits`)."""
    targets = np.atleast_1d(target)
    return int(min((scores >= scores[t]).sum() - 1 for t in targets))


def _hits(rank: int, direction: str, ks=KS) -> dict[str, bool]:
    return {f"r@{k}_{direction}": rank < k for k in ks}


def _load_gallery(dataset: RetrievalDataset, workers: int = 0):
    """Loaded images and valid captions, and the reason each failed item failed."""
    images, image_errors = {}, {}
    with ImageLoader(workers) as loader:
        for n, decoded in enumerate(loader.load(dataset.images)):
            if isinstance(decoded, Exception):
                image_errors[n] = str(decoded)
            else:
                images[n] = decoded
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
    return images, image_errors, captions, caption_errors


def run_retrieval(dataset: RetrievalDataset, backbone, out_dir, *, reranker=None, rerank_top: int = 10,
                  resume: bool = False, limit: int | None = None, progress: bool | None = None, workers: int = 0) -> dict:
    """Score all queries with ``clip`` (and ``comclip`` re-ranking when ``reranker`` is given);
    ``workers`` processes decode the gallery's files."""
    if limit:
        dataset = RetrievalDataset(dataset.name, dataset.split, dataset.images[:limit],
                                   [c for c, i in zip(dataset.captions, dataset.caption_image) if i < limit],
                                   [i for i in dataset.caption_image if i < limit], dataset.source, dataset.licence)
    images, image_errors, captions, caption_errors = _load_gallery(dataset, workers)
    image_ids, caption_ids = sorted(images), sorted(captions)
    owner = np.array([image_ids.index(dataset.caption_image[t]) for t in caption_ids], dtype=int)
    similarity = np.zeros((len(image_ids), len(caption_ids)))
    if image_ids and caption_ids:
        image_emb = backbone.encode_images([images[n].image for n in image_ids])
        text_emb = backbone.encode_texts([captions[t] for t in caption_ids])
        similarity = (image_emb @ text_emb.T).double().numpy()

    methods = ["clip"] + (["comclip"] if reranker is not None else [])
    with ResultLog(out_dir, resume) as results:
        for method in methods:
            for n, error in image_errors.items():
                if not results.has(method, f"i2t/{n}"):
                    results.add({"id": f"i2t/{n}", "method": method, "kind": I2T, "subset": "", "tags": [], "status": "failed", "error": error})
            for t, error in caption_errors.items():
                if not results.has(method, f"t2i/{t}"):
                    results.add({"id": f"t2i/{t}", "method": method, "kind": T2I, "subset": "", "tags": [], "status": "failed", "error": error})
            queries = [("t2i", col) for col in range(len(caption_ids))] + [("i2t", row) for row in range(len(image_ids))]
            todo = [(d, q) for d, q in queries if not results.has(method, _query_id(d, q, image_ids, caption_ids))]
            with Progress(method, len(todo), progress) as bar:
                for direction, q in todo:
                    query_id = _query_id(direction, q, image_ids, caption_ids)
                    record = {"id": query_id, "method": method, "kind": T2I if direction == "t2i" else I2T, "subset": "", "tags": []}
                    try:
                        ranks = _rank_query(direction, q, similarity, owner, method, reranker, rerank_top,
                                            [images[n] for n in image_ids], [captions[t] for t in caption_ids])
                    except ComclipError as exc:
                        results.add({**record, "status": "failed", "error": str(exc)})
                    else:
                        results.add({**record, "status": "ok", **ranks, "correct": _hits(ranks["rank"], direction)})
                    bar.step()
        return dict(results.done)


def _query_id(direction: str, q: int, image_ids, caption_ids) -> str:
    return f"t2i/{caption_ids[q]}" if direction == "t2i" else f"i2t/{image_ids[q]}"


def _rank_query(direction, q, similarity, owner, method, reranker, top, gallery_images, gallery_captions) -> dict:
    if direction == "t2i":
        scores, targets = similarity[:, q], [owner[q]]
    else:
        scores, targets = similarity[q, :], list(np.flatnonzero(owner == q))
    clip_rank = strict_rank(scores, targets) if targets else len(scores)
    if method == "clip":
        return {"rank": clip_rank}
    candidates = list(np.argsort(-scores, kind="stable")[:top])
    if not any(t in candidates for t in targets):
        return {"rank": clip_rank, "clip_rank": clip_rank}
    if direction == "t2i":
        rescored = reranker.score([gallery_images[c] for c in candidates], [gallery_captions[q]]).numpy()[:, 0]
    else:
        rescored = reranker.score([gallery_images[q]], [gallery_captions[c] for c in candidates]).numpy()[0]
    local = [candidates.index(t) for t in targets if t in candidates]
    return {"rank": strict_rank(rescored, local), "clip_rank": clip_rank}
