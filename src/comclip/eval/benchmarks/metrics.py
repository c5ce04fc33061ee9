"""Metrics over precomputed scores, in percent, with strict comparisons: a tie is a failure.

Each metric has a per-example form (a boolean per example or query) from which the value is
the mean, so that :func:`bootstrap_ci` can resample examples for a 95% interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

#: Bootstrap resamples where a caller gives no number (the default of ``--bootstrap``, see
#: :class:`~comclip.eval.runs.options.EvalOptions`).
RESAMPLES = 1000


def _as_winoground_array(scores) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 3 or scores.shape[1:] != (2, 2):
        raise ValueError(f"winoground scores must have shape (N, 2, 2) [example, caption, image], got {scores.shape}")
    return scores


def winoground_correct(scores) -> dict[str, np.ndarray]:
    """Per-example text, image and group success; ``scores[k, c, i]`` is caption c vs image i.

    text: each image prefers its own caption; image: each caption prefers its own image;
    group: both (Thrush et al., CVPR 2022).
    """
    s = _as_winoground_array(scores)
    text = (s[:, 0, 0] > s[:, 1, 0]) & (s[:, 1, 1] > s[:, 0, 1])
    image = (s[:, 0, 0] > s[:, 0, 1]) & (s[:, 1, 1] > s[:, 1, 0])
    return {"text": text, "image": image, "group": text & image}


def two_positives_correct(scores, text_scores=None) -> dict[str, bool]:
    """SugarCrepe++ (Dumpala et al., NeurIPS 2024), one item: ``scores`` are the image's
    cosines with [P1, P2, N]. ``itt``: both positives above the negative; ``tot`` (text only,
    from ``text_scores[i, j]`` between the three captions): the positives closer to each other
    than either is to the negative."""
    p1, p2, negative = (float(v) for v in scores[:3])
    out = {"itt": p1 > negative and p2 > negative}
    if text_scores is not None:
        t = text_scores
        out["tot"] = bool(t[0, 1] > t[0, 2] and t[0, 1] > t[1, 2])
    return out


def pairwise_correct(positive, negatives) -> np.ndarray:
    """Per-example success: the positive scores strictly above every negative.

    ``positive`` has shape ``[N]``; ``negatives`` ``[N]`` or ``[N, K]``.
    """
    positive = np.asarray(positive, dtype=np.float64)
    negatives = np.asarray(negatives, dtype=np.float64)
    if negatives.ndim == 1:
        negatives = negatives[:, None]
    if negatives.shape[0] != positive.shape[0]:
        raise ValueError(f"{positive.shape[0]} positives but {negatives.shape[0]} rows of negatives")
    return positive > negatives.max(axis=1)


def retrieval_hits(similarity, text_image: Sequence[int], k: int) -> dict[str, np.ndarray]:
    """Per-query Recall@k hits for ``similarity[image, text]`` where text t belongs to image ``text_image[t]``.

    A query is a hit when a correct item ranks in the top k; ties are broken against the
    correct item (it must be strictly above all but fewer than k others).
    """
    sim = np.asarray(similarity, dtype=np.float64)
    owner = np.asarray(text_image)
    n_images, n_texts = sim.shape
    if owner.shape != (n_texts,):
        raise ValueError(f"text_image must give an image for each of the {n_texts} texts")
    # text -> image: rank of the correct image among all images for each text.
    correct_t2i = sim[owner, np.arange(n_texts)]
    rank_t2i = (sim >= correct_t2i[None, :]).sum(axis=0) - 1  # others scoring at least as high
    t2i = rank_t2i < k
    # image -> text: best-ranked correct caption of each image.
    i2t = np.zeros(n_images, dtype=bool)
    for image in range(n_images):
        own = np.flatnonzero(owner == image)
        if own.size == 0:
            continue
        row = sim[image]
        ranks = [(row >= row[t]).sum() - 1 for t in own]
        i2t[image] = min(ranks) < k
    has_caption = np.isin(np.arange(n_images), owner)
    return {"t2i": t2i, "i2t": i2t[has_caption]}


def bootstrap_ci(correct, n_resamples: int = RESAMPLES, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval (in percent) of the mean of per-example successes, by
    ``scipy.stats.bootstrap``; one example is its own interval (scipy needs two)."""
    values = np.asarray(correct, dtype=np.float64)
    if values.size == 0:
        return (float("nan"), float("nan"))
    if values.size == 1 or (values == values[0]).all():  # no spread to resample
        return (100.0 * float(values[0]), 100.0 * float(values[0]))
    result = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=level,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return (100.0 * float(interval.low), 100.0 * float(interval.high))


def wilson_ci(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (in percent) of a proportion: unlike the bootstrap or the normal
    approximation it does not collapse to a point at 0% or 100%."""
    if n == 0:
        return (float("nan"), float("nan"))
    interval = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return (100.0 * float(interval.low), 100.0 * float(interval.high))


def summarise(correct, n_resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """``{"value": percent, "ci95": [lo, hi], "interval": method}`` for per-example successes.

    0/1 successes get the Wilson interval; shares (pairwise accuracy) a percentile bootstrap
    of ``n_resamples``. ``n_resamples=0`` asks for no intervals (``ci95`` None).
    """
    values = np.asarray(correct, dtype=np.float64)
    value = 100.0 * float(values.mean()) if values.size else float("nan")
    if n_resamples == 0:
        return {"value": value, "ci95": None, "interval": None}
    if np.isin(values, (0.0, 1.0)).all():
        return {"value": value, "ci95": list(wilson_ci(int(values.sum()), values.size)), "interval": "wilson"}
    return {"value": value, "ci95": list(bootstrap_ci(values, n_resamples, seed)), "interval": "bootstrap"}


def paired_comparison(baseline, method, n_resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """How ``method`` differs from ``baseline`` on the same examples (0/1 successes, paired):
    the difference in percentage points with a paired percentile-bootstrap 95% interval, the
    discordant pairs, and the exact McNemar p-value (a two-sided binomial test on them)."""
    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(method, dtype=np.float64)
    improved, worsened = int(((b == 1) & (a == 0)).sum()), int(((b == 0) & (a == 1)).sum())
    discordant = improved + worsened
    out: dict[str, Any] = {
        "n": int(a.size),
        "difference": 100.0 * float((b - a).mean()) if a.size else float("nan"),
        "ci95": list(bootstrap_ci(b - a, n_resamples, seed)) if n_resamples and a.size else None,
        "improved": improved,
        "worsened": worsened,
        "p_mcnemar": float(stats.binomtest(improved, discordant, 0.5).pvalue) if discordant else 1.0,
    }
    if out["ci95"] is not None:  # bootstrap_ci gives percent of a mean in [-1, 1]: points, as the difference
        out["ci95"] = [float(v) for v in out["ci95"]]
    return out
