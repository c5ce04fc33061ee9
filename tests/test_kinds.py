"""Example kinds (comclip.eval.benchmarks.kinds): each kind's correctness rule, strict on ties, checked
against the benchmarks' own comparisons; headline metrics; the word-order rule; a kind
registered once is scored and reported."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from comclip.eval.benchmarks.datasets import PAIR_MATCH, TWO_POSITIVES, WINOGROUND
from comclip.eval.benchmarks.datasets.base import DIFFERENT_WORDS, SAME_WORDS, bag_of_words
from comclip.eval.benchmarks.kinds import correct, word_order_class


def test_correctness_rules_are_strict():

    assert correct("caption_choice", np.array([[0.5, 0.4, 0.49]])) == {"accuracy": True}
    assert correct("caption_choice", np.array([[0.5, 0.5]])) == {"accuracy": False}
    assert correct("image_choice", np.array([[0.3], [0.2]])) == {"accuracy": True}
    # images x texts; Winoground wants caption c to prefer image c and vice versa
    assert correct("winoground", np.array([[0.9, 0.1], [0.2, 0.8]])) == {
        "text": True,
        "image": True,
        "group": True,
        "pairwise": 1.0,
    }
    mixed = correct("winoground", np.array([[0.9, 0.95], [0.2, 0.99]]))
    assert mixed["group"] is False and mixed["pairwise"] == 0.5  # image 1 right, image 0 wrong


def test_headline_metric_prefers_the_kinds_headlines_in_registration_order():
    from comclip.eval.benchmarks.kinds import headline_metric

    assert headline_metric(["text", "image", "group", "pairwise"]) == "group"
    assert headline_metric(["accuracy", "pair"]) == "pair"
    assert headline_metric(["r@10_t2i", "r@1_i2t", "r@1_t2i"]) == "r@1_t2i"
    assert headline_metric(["r@10_i2t", "r@1_i2t"]) == "r@1_i2t"  # all text queries failed: still R@1
    assert headline_metric(["something"]) == "something"


def test_retrieval_rule_is_a_rank_below_k():
    assert correct("retrieval_t2i", np.asarray(4)) == {"r@1_t2i": False, "r@5_t2i": True, "r@10_t2i": True}
    assert correct("retrieval_i2t", np.asarray(0))["r@1_i2t"] is True


def test_word_order_rule_reads_each_kinds_true_captions():
    from comclip.eval.benchmarks.datasets.base import DIFFERENT_WORDS, SAME_WORDS
    from comclip.eval.benchmarks.kinds import word_order_class

    assert word_order_class("winoground", ["a dog chasing a cat", "a cat chasing a dog"]) == SAME_WORDS
    assert word_order_class("two_positives", ["a dog on a mat", "on a mat a dog", "a mat on a dog"]) == SAME_WORDS
    assert word_order_class("caption_choice", ["a red cube", "a blue cube"]) == DIFFERENT_WORDS
    assert word_order_class("image_choice", ["a red cube"]) is None
    assert word_order_class("no such kind", ["a", "b"]) is None


def test_a_registered_kind_is_scored_and_reported_with_no_other_edit(monkeypatch, tmp_path):
    """A new kind is one registration: the runner records its rule's successes, the report its
    metrics (failed examples count against them) and its headline."""
    from comclip.eval.benchmarks import kinds
    from comclip.eval.benchmarks.datasets import Dataset, Example
    from comclip.eval.reports.report import summarise_run
    from comclip.eval.runs.runner import run

    def top_two(scores, text_scores=None):
        return {"top2": bool((scores[0, 0] > scores[0, 1:]).sum() >= len(scores[0]) - 2)}

    monkeypatch.setitem(kinds.KINDS._items, "top_two", kinds.ExampleKind("top_two", top_two, ("top2",), "top2", 1))

    image = Image.new("RGB", (8, 8))
    examples = [Example(f"e{n}", "top_two", [image], ["a", "b", "c"]) for n in range(3)]
    examples.append(Example("broken", "top_two", ["missing.png"], ["a", "b", "c"]))
    scores = {"a": 0.5, "b": 0.6, "c": 0.1}
    records = run(Dataset("toy", "test", examples), {"m": lambda images, texts: [[scores[t] for t in texts]]}, tmp_path)
    summary = summarise_run(list(records.values()))
    assert [r["correct"] for r in records.values() if r["status"] == "ok"] == [{"top2": True}] * 3
    assert summary["metrics"]["top2"]["value"] == 75.0 and summary["n_failed"] == 1
    assert kinds.headline_metric(summary["metrics"]) == "top2"
    assert records[("m", "e0")]["word_order"] == "different words"


@pytest.mark.parametrize(
    "kind, texts, expected",
    [
        ("caption_choice", ["a dog chasing a cat", "a cat chasing a dog"], SAME_WORDS),
        ("caption_choice", ["A light under a umbrella.", "an umbrella under a light"], SAME_WORDS),  # a / an, case, punctuation
        ("caption_choice", ["a dog chasing a cat", "a dog chasing a mouse"], DIFFERENT_WORDS),
        ("caption_choice", ["a dog chasing a cat", "a cat chasing a dog", "a dog"], DIFFERENT_WORDS),  # every foil counts
        (WINOGROUND, ["the plant is in the cup", "the cup is in the plant"], SAME_WORDS),
        (PAIR_MATCH, ["wooden table and metal chair", "metal table and wooden chair"], SAME_WORDS),
        (TWO_POSITIVES, ["a red cup", "a cup that is red", "a cup red"], SAME_WORDS),  # the negative permutes P1
        (TWO_POSITIVES, ["a red cup", "a cup that is red", "a blue cup"], DIFFERENT_WORDS),
        ("image_choice", ["a dog"], None),
    ],
)
def test_word_order_class(kind, texts, expected):
    assert word_order_class(kind, texts) == expected


def test_bag_of_words_is_a_multiset():
    assert bag_of_words("a dog and a dog") != bag_of_words("a dog")
    assert bag_of_words("Dogs, cats!") == bag_of_words("cats dogs")


def test_two_positives_against_the_benchmarks_own_comparisons():
    rng = np.random.default_rng(0)
    for _ in range(200):
        image = rng.normal(size=(1, 3))
        texts = rng.normal(size=(3, 3))
        texts = (texts + texts.T) / 2  # cosines are symmetric
        cos_p1, cos_p2, cos_neg = image[0]
        got = correct(TWO_POSITIVES, image, texts)
        assert got["itt"] == bool(cos_p1 > cos_neg and cos_p2 > cos_neg)
        assert got["tot"] == bool(texts[0, 1] > texts[0, 2] and texts[0, 1] > texts[1, 2])
    assert set(correct(TWO_POSITIVES, image)) == {"itt"}  # no text side: no text-only metric


def test_pair_match_is_colas_multi_object_accuracy():
    def cola(preds):  # rows images, columns captions, as COLA's ColaMultiObjAcc documents
        return preds[0, 0] > preds[1, 0] and preds[1, 1] > preds[0, 1]

    rng = np.random.default_rng(1)
    for _ in range(200):
        scores = rng.normal(size=(2, 2))
        assert correct(PAIR_MATCH, scores)["pair"] == bool(cola(scores))
    assert not correct(PAIR_MATCH, np.ones((2, 2)))["pair"]  # a tie fails


def test_a_tie_is_wrong_by_default_and_the_metrics_it_decided_are_recorded():
    """``tie_decided``: the metrics whose value changes when ties go to the true option, for
    each kind of example; nothing where no true option is tied."""
    import numpy as np

    from comclip.eval.benchmarks.datasets import CAPTION_CHOICE, IMAGE_CHOICE, WINOGROUND
    from comclip.eval.benchmarks.kinds import correct, tie_decided, under_tie_rule

    tied = np.array([[0.5, 0.5, 0.1]])
    strict = correct(CAPTION_CHOICE, tied)
    assert strict == {"accuracy": False} and tie_decided(CAPTION_CHOICE, tied, strict) == {"accuracy": True}
    clear = np.array([[0.6, 0.5, 0.1]])
    assert tie_decided(CAPTION_CHOICE, clear, correct(CAPTION_CHOICE, clear)) == {}
    among_false = np.array([[0.6, 0.5, 0.5]])  # a tie between two false options decides nothing
    assert tie_decided(CAPTION_CHOICE, among_false, correct(CAPTION_CHOICE, among_false)) == {}
    column = np.array([[0.3], [0.3]])
    assert tie_decided(IMAGE_CHOICE, column, correct(IMAGE_CHOICE, column)) == {"accuracy": True}
    group = np.array([[0.7, 0.7], [0.1, 0.9]])  # image 0 ties its two captions
    strict = correct(WINOGROUND, group)
    decided = tie_decided(WINOGROUND, group, strict)
    assert strict["text"] is False and decided == {"text": True, "group": True, "pairwise": 1.0}
    record = {"correct": strict, "tie_correct": decided}
    assert under_tie_rule(record, "strict") is record and under_tie_rule(record, "first")["correct"]["group"] is True
