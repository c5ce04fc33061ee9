"""Metric functions on hand-made cases and on the Winoground known answer."""

from __future__ import annotations

import numpy as np
import pytest

from comclip.eval.benchmarks.kinds import correct as kind_correct
from comclip.eval.benchmarks.metrics import bootstrap_ci, pairwise_correct, retrieval_hits, summarise, winoground_correct

from .conftest import shared_data


def test_winoground_known_answer():
    """Cosines of the shared OpenCLIP ViT-B/32 embeddings: text 34.75, image 11.00, group 7.50."""
    data = np.load(shared_data("winoground", "winoground_real_vitb32.npz"))
    img, cap = data["img"].astype(np.float64), data["cap"].astype(np.float64)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    cap /= np.linalg.norm(cap, axis=1, keepdims=True)
    n = img.shape[0] // 2
    scores = np.empty((n, 2, 2))
    for c in range(2):
        for i in range(2):
            scores[:, c, i] = (cap[c::2] * img[i::2]).sum(axis=1)  # rows 2k + c and 2k + i
    result = {name: 100.0 * ok.mean() for name, ok in winoground_correct(scores).items()}
    assert n == 400
    assert result["text"] == pytest.approx(34.75)
    assert result["image"] == pytest.approx(11.00)
    assert result["group"] == pytest.approx(7.50)


def test_winoground_hand_cases_and_ties():
    perfect = [[1.0, 0.0], [0.0, 1.0]]
    text_only = [[0.9, 0.95], [0.1, 0.99]]  # each image prefers its caption; caption 0 prefers image 1
    tie = [[0.5, 0.0], [0.5, 1.0]]  # image 0 ties between captions: not a text success
    swapped = [[0.0, 1.0], [1.0, 0.0]]
    correct = winoground_correct([perfect, text_only, tie, swapped])
    assert correct["text"].tolist() == [True, True, False, False]
    assert correct["image"].tolist() == [True, False, True, False]
    assert correct["group"].tolist() == [True, False, False, False]
    # a run's rule: one example's [image, caption] matrix, the transpose of [caption, image]
    assert (
        kind_correct("winoground", np.asarray(text_only).T)["text"] and not kind_correct("winoground", np.asarray(tie).T)["text"]
    )
    with pytest.raises(ValueError, match="shape"):
        winoground_correct(np.zeros((3, 2)))


def test_pairwise_accuracy_strict():
    assert pairwise_correct([0.5, 0.5, 0.6], [0.4, 0.5, 0.7]).tolist() == [True, False, False]
    assert pairwise_correct([0.9, 0.2], [[0.1, 0.8], [0.1, 0.3]]).tolist() == [True, False]  # beats all negatives or fails
    # the runs' caption-choice and image-choice rules are this one: [image, caption] matrices
    assert kind_correct("caption_choice", np.array([[0.5, 0.5, 0.1]])) == {"accuracy": False}  # a tie fails
    assert kind_correct("caption_choice", np.array([[0.6, 0.5, 0.1]])) == {"accuracy": True}
    assert kind_correct("image_choice", np.array([[0.6], [0.7]])) == {"accuracy": False}


def test_recall_at_k_small_matrix():
    # 3 images, 4 texts; texts 0,1 belong to image 0, text 2 to image 1, text 3 to image 2.
    sim = np.array(
        [
            [0.9, 0.1, 0.8, 0.0],
            [0.2, 0.7, 0.5, 0.1],
            [0.3, 0.6, 0.4, 0.2],
        ]
    )
    owners = [0, 0, 1, 2]

    def recall(k: int, direction: str) -> float:
        return 100.0 * float(retrieval_hits(sim, owners, k)[direction].mean())

    # t2i ranks of the right image: text0 -> 0, text1 -> 2, text2 -> 1, text3 -> 0
    assert recall(1, "t2i") == pytest.approx(50.0)
    assert recall(2, "t2i") == pytest.approx(75.0)
    # i2t: image0 (text0) ranks 0; image1 (text2) ranks 1, after 0.7; image2 (text3) ranks 3
    assert recall(1, "i2t") == pytest.approx(100.0 / 3)
    assert recall(2, "i2t") == pytest.approx(200.0 / 3)
    assert not retrieval_hits(np.array([[0.5, 0.5], [0.5, 0.5]]), [0, 1], 1)["t2i"].any()  # a tie is not a hit


def test_bootstrap_interval_fixed_seed():
    correct = np.array([1] * 30 + [0] * 70)
    lo, hi = bootstrap_ci(correct, n_resamples=2000, seed=0)
    assert lo < 30.0 < hi
    assert 20.0 < lo < 30.0 and 30.0 < hi < 40.0
    assert bootstrap_ci(correct, n_resamples=2000, seed=0) == (lo, hi)  # reproducible
    assert bootstrap_ci(np.ones(10)) == (100.0, 100.0)
    summary = summarise(correct)
    assert summary["value"] == pytest.approx(30.0) and len(summary["ci95"]) == 2


def _wilson_reference(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * (centre - half), 100 * (centre + half)


@pytest.mark.parametrize("k, n", [(0, 20), (20, 20), (7, 20), (1, 3), (50, 100)])
def test_wilson_interval_against_the_formula_and_never_a_point(k, n):
    from comclip.eval.benchmarks.metrics import wilson_ci

    lo, hi = wilson_ci(k, n)
    assert (lo, hi) == pytest.approx(_wilson_reference(k, n), abs=1e-9)
    assert lo < hi and lo <= 100 * k / n <= hi
    summary = summarise([1.0] * k + [0.0] * (n - k))
    assert summary["interval"] == "wilson" and summary["ci95"] == pytest.approx([lo, hi])


def test_summarise_without_resamples_gives_no_interval_and_shares_get_the_bootstrap():
    assert summarise([1, 0, 1], n_resamples=0)["ci95"] is None
    shares = summarise([0.5, 1.0, 0.0, 0.5], n_resamples=500, seed=1)
    assert shares["interval"] == "bootstrap" and shares["ci95"] == list(bootstrap_ci([0.5, 1.0, 0.0, 0.5], 500, 1))


def test_paired_comparison_mcnemar_and_difference():
    from scipy.stats import binomtest

    from comclip.eval.benchmarks.metrics import paired_comparison

    clip = [1, 0, 0, 1, 0, 1, 0, 0, 1, 0]
    method = [1, 1, 1, 0, 1, 1, 1, 0, 1, 1]
    result = paired_comparison(clip, method, n_resamples=2000, seed=0)
    assert (result["improved"], result["worsened"], result["n"]) == (5, 1, 10)
    assert result["difference"] == pytest.approx(40.0)
    assert result["p_mcnemar"] == pytest.approx(binomtest(5, 6, 0.5).pvalue)
    lo, hi = result["ci95"]
    assert lo <= 40.0 <= hi
    assert paired_comparison([1, 0], [1, 0])["p_mcnemar"] == 1.0  # no discordant pair
