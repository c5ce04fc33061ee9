"""Example kinds: what a kind of example is judged by, in one place.

Each kind (:data:`KINDS`, a registry) holds its correctness rule (the per-example successes
of a score matrix), the metrics it reports, its headline metric and how many of its captions
are true (for the word-order split, :func:`word_order_class`). A new kind is one
:func:`register_kind` call; the runner, the reports and the ablation read everything here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from comclip.eval.benchmarks import metrics
from comclip.eval.benchmarks.datasets.base import (
    CAPTION_CHOICE,
    DIFFERENT_WORDS,
    IMAGE_CHOICE,
    PAIR_MATCH,
    SAME_WORDS,
    TWO_POSITIVES,
    WINOGROUND,
    bag_of_words,
)
from comclip.registry import Registry

#: Retrieval queries (one record per query; see :mod:`comclip.eval.runs.recall`).
T2I, I2T = "retrieval_t2i", "retrieval_i2t"
#: Recall@K cut-offs of retrieval.
KS = (1, 5, 10)

#: ``correct(scores, text_scores) -> {metric: 0/1 or share}``; ``scores`` is the example's
#: ``[images, texts]`` matrix (a retrieval query's: its 0-based rank), strict (ties fail).
Rule = Callable[[np.ndarray, np.ndarray | None], dict]


@dataclass(frozen=True)
class ExampleKind:
    """One kind of example: its rule, metrics, headline metric and true captions."""

    name: str
    correct: Rule
    metrics: tuple[str, ...]
    headline: str
    #: How many leading captions are true (the rest false), for the word-order split; None:
    #: the kind's captions are not compared with each other.
    true_captions: int | None = None
    #: Which entries of a ``[images, texts]`` matrix are true pairs (for :func:`tie_decided`);
    #: None where ties cannot be told (retrieval's ranks).
    truths: Callable[[tuple[int, ...]], np.ndarray] | None = None


KINDS: Registry[ExampleKind] = Registry("example kind")


def register_kind(kind: ExampleKind) -> ExampleKind:
    """Add a kind; its registration order is the order :func:`headline_metric` prefers."""
    KINDS.add(kind.name, kind)
    return kind


def _winoground(scores: np.ndarray, text_scores: np.ndarray | None = None) -> dict:
    result = metrics.winoground_correct(scores.T[None])  # [caption, image]
    out: dict = {name: bool(value[0]) for name, value in result.items()}
    # pairwise: each image prefers its own caption (the caption-choice accuracy, per image)
    out["pairwise"] = (float(scores[0, 0] > scores[0, 1]) + float(scores[1, 1] > scores[1, 0])) / 2
    return out


def _pair_match(scores: np.ndarray, text_scores: np.ndarray | None = None) -> dict:
    """Each caption prefers its own image (MMVP-VLM, COLA)."""
    return {"pair": bool(scores[0, 0] > scores[1, 0] and scores[1, 1] > scores[0, 1])}


def _two_positives(scores: np.ndarray, text_scores: np.ndarray | None = None) -> dict:
    return metrics.two_positives_correct(scores[0], text_scores)


def _caption_choice(scores: np.ndarray, text_scores: np.ndarray | None = None) -> dict:
    return {"accuracy": bool(metrics.pairwise_correct(scores[0, :1], scores[None, 0, 1:])[0])}


def _image_choice(scores: np.ndarray, text_scores: np.ndarray | None = None) -> dict:
    return {"accuracy": bool(metrics.pairwise_correct(scores[:1, 0], scores[None, 1:, 0])[0])}


def _retrieval(direction: str) -> Rule:
    def hits(rank: np.ndarray, text_scores: np.ndarray | None = None) -> dict:
        return {f"r@{k}_{direction}": bool(int(rank) < k) for k in KS}

    return hits


def _diagonal(shape: tuple[int, ...]) -> np.ndarray:
    return np.eye(shape[0], shape[1], dtype=bool)


def _first_pair(shape: tuple[int, ...]) -> np.ndarray:
    truths = np.zeros(shape, dtype=bool)
    truths[0, 0] = True
    return truths


def _two_first_captions(shape: tuple[int, ...]) -> np.ndarray:
    truths = np.zeros(shape, dtype=bool)
    truths[0, :2] = True
    return truths


for _kind in (
    ExampleKind(WINOGROUND, _winoground, ("text", "image", "group", "pairwise"), "group", 1, _diagonal),
    ExampleKind(PAIR_MATCH, _pair_match, ("pair",), "pair", 1, _diagonal),
    ExampleKind(TWO_POSITIVES, _two_positives, ("itt", "tot"), "itt", 2, _two_first_captions),
    ExampleKind(CAPTION_CHOICE, _caption_choice, ("accuracy",), "accuracy", 1, _first_pair),
    ExampleKind(IMAGE_CHOICE, _image_choice, ("accuracy",), "accuracy", None, _first_pair),
    ExampleKind(T2I, _retrieval("t2i"), tuple(f"r@{k}_t2i" for k in KS), "r@1_t2i"),
    ExampleKind(I2T, _retrieval("i2t"), tuple(f"r@{k}_i2t" for k in KS), "r@1_i2t"),
):
    register_kind(_kind)


def correct(kind: str, scores: np.ndarray, text_scores: np.ndarray | None = None) -> dict:
    """Per-example successes of a score matrix ``[images, texts]`` under ``kind``'s rule
    (strict: ties fail); each value is 0/1, or the share of an example's comparisons that
    succeed (``pairwise``). ``text_scores`` (``[texts, texts]`` cosines) feed SugarCrepe++'s
    text-only metric."""
    return KINDS[kind].correct(scores, text_scores)


#: How a tie between a true and a false option counts: ``strict`` (wrong, comclip's default)
#: or ``first`` (right, as an argmax that meets the true option first counts it: What'sUp's code).
TIE_RULES = ("strict", "first")


def tie_decided(kind: str, scores: np.ndarray, strict: dict, text_scores: np.ndarray | None = None) -> dict:
    """``{metric: value}`` of the metrics a tie decided: their value when every tie goes to the
    true option (each true entry raised by one unit in the last place, which turns exact ties
    into wins and changes no other order), where it differs from ``strict``. Ties among the
    text-only cosines (SugarCrepe++'s ``tot``) are not counted."""
    truths = KINDS[kind].truths
    if truths is None:
        return {}
    first = KINDS[kind].correct(np.where(truths(scores.shape), np.nextafter(scores, np.inf), scores), text_scores)
    return {metric: value for metric, value in first.items() if value != strict.get(metric)}


def under_tie_rule(record: dict, rule: str) -> dict:
    """``record`` as ``rule`` judges it: with ``first``, the values its ties decided replace the
    strict ones (records keep both, so either rule can be reported from the same run)."""
    if rule == "strict" or not record.get("tie_correct"):
        return record
    return {**record, "correct": {**record["correct"], **record["tie_correct"]}}


def headline_metric(names: Iterable[str]) -> str:
    """The metric a dataset is judged by: the first registered kind's headline among ``names``
    (group for the Winoground kind, then pair, itt, accuracy, R@1), else the first name."""
    names = list(names)
    for kind in KINDS.values():
        if kind.headline in names:
            return kind.headline
    return names[0]


def word_order_class(kind: str, texts: list[str]) -> str | None:
    """:data:`SAME_WORDS` when the example's false captions are its true captions' words in
    another order (a model that ignores word order is at chance there), else
    :data:`DIFFERENT_WORDS`; None for kinds whose captions are not compared."""
    n_true = KINDS[kind].true_captions if kind in KINDS else None
    if n_true is None or not texts[n_true:]:
        return None
    bags = [bag_of_words(t) for t in texts[:n_true]]
    same = all(any(bag_of_words(f) == bag for bag in bags) for f in texts[n_true:])
    return SAME_WORDS if same else DIFFERENT_WORDS
