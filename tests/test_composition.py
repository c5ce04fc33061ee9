"""The ComCLIP formulas and sub-images, against direct NumPy computations and known pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from comclip.composition import comclip_score, compose_embedding, make_subimage, region_mask, subimage_weights, weigh
from comclip.composition.scoring import SCORE_MODES, Evidence
from comclip.errors import InputError
from comclip.grounding import Box


def _unit(rng, *shape):
    x = rng.normal(size=shape)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _reference(v_global, caption, subs, phrases, weighting, temperature):
    s = (subs * phrases).sum(axis=1)
    if weighting == "sum":
        w = s / s.sum()
    else:
        e = np.exp((s - s.max()) / temperature)
        w = e / e.sum()
    v = v_global + (w[:, None] * subs).sum(axis=0)
    v = v / np.linalg.norm(v)
    return float(v @ caption), s, w


@pytest.mark.parametrize("weighting,temperature", [("sum", 0.01), ("softmax", 0.01), ("softmax", 1 / 14.28), ("softmax", 0.5)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_golden_composition_matches_numpy(weighting, temperature, seed):
    rng = np.random.default_rng(seed)
    d, k = 16, 4
    v_global, caption = _unit(rng, d), _unit(rng, d)
    subs = _unit(rng, k, d)
    # Phrases near their sub-images so the cosines are positive, as with a trained model.
    phrases = subs + 0.3 * _unit(rng, k, d)
    phrases /= np.linalg.norm(phrases, axis=1, keepdims=True)
    expected, s_ref, w_ref = _reference(v_global, caption, subs, phrases, weighting, temperature)
    score, s, w, flags = comclip_score(
        *(torch.tensor(a, dtype=torch.float32) for a in (v_global, caption, subs, phrases)),
        weighting=weighting,
        temperature=temperature,
    )
    assert flags == ()
    assert score == pytest.approx(expected, abs=1e-6)
    np.testing.assert_allclose(s.numpy(), s_ref, atol=1e-6)
    np.testing.assert_allclose(w.numpy(), w_ref, atol=1e-6)
    assert w.sum().item() == pytest.approx(1.0, abs=1e-9)


def _sum_reference(s):
    """The documented rule in NumPy: negative cosines count as 0; no positive total: uniform."""
    s = np.asarray(s, dtype=np.float64)
    positive = np.maximum(s, 0.0)
    return np.full_like(s, 1.0 / s.size) if positive.sum() <= 1e-6 else positive / positive.sum()


def test_sum_weighting_is_the_authors_ratio_where_cosines_are_positive():
    w = subimage_weights(torch.tensor([0.2, 0.3, 0.5]), "sum")
    assert w.tolist() == pytest.approx([0.2, 0.3, 0.5])
    assert weigh(torch.tensor([0.2, 0.3, 0.5]), "sum").flags == ()


@pytest.mark.parametrize(
    "s, flags",
    [
        ([0.30, -0.29], ("weights_clamped",)),  # the authors' formula gives w = [30, -29]
        ([0.1, -0.3], ("weights_clamped",)),  # ...and here a negative total
        ([-0.1, -0.2, -0.05], ("uniform_weights",)),
        ([1e-9, -1e-9], ("uniform_weights",)),  # near zero: the ratio would be noise
        ([0.0, 0.0], ("uniform_weights",)),
    ],
)
def test_sum_weighting_is_well_defined_for_negative_and_tiny_cosines(s, flags):
    weights, taken = weigh(torch.tensor(s, dtype=torch.float64), "sum")
    np.testing.assert_allclose(weights.numpy(), _sum_reference(s), atol=1e-12)
    assert taken == flags and weights.sum().item() == pytest.approx(1.0) and weights.abs().max() <= 1.0


def test_raw_sum_keeps_the_authors_formula_when_asked():
    weights, taken = weigh(torch.tensor([0.30, -0.29], dtype=torch.float64), "sum-raw")
    np.testing.assert_allclose(weights.numpy(), [30.0, -29.0], rtol=1e-9)
    assert taken == ()


def test_softmax_weighting_and_temperature():
    s = torch.tensor([0.30, 0.25])
    sharp = subimage_weights(s, "softmax", temperature=0.01)
    flat = subimage_weights(s, "softmax", temperature=10.0)
    assert sharp[0] > 0.99 and abs(flat[0] - 0.5) < 0.01
    with pytest.raises(ValueError):
        subimage_weights(s, "softmax", temperature=0)
    with pytest.raises(InputError, match="unknown weighting"):
        subimage_weights(s, "max")


def test_compose_without_parts_is_the_global_embedding():
    v = torch.tensor([3.0, 4.0])
    assert compose_embedding(v, torch.zeros(0, 2), torch.zeros(0)).tolist() == pytest.approx([0.6, 0.8])


@pytest.fixture
def noise_image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(1, 256, (20, 30, 3), dtype=np.uint8))


def test_black_subimage_keeps_inside_and_blacks_outside(noise_image):
    original = np.asarray(noise_image)
    sub = np.asarray(make_subimage(noise_image, [Box(2, 3, 10, 12)], "black"))
    assert sub.shape == original.shape  # full image size kept
    assert np.array_equal(sub[3:12, 2:10], original[3:12, 2:10])
    outside = np.ones((20, 30), dtype=bool)
    outside[3:12, 2:10] = False
    assert (sub[outside] == 0).all()


def test_union_of_boxes(noise_image):
    original = np.asarray(noise_image)
    sub = np.asarray(make_subimage(noise_image, [Box(0, 0, 5, 5), Box(20, 10, 30, 20)], "black"))
    assert np.array_equal(sub[0:5, 0:5], original[0:5, 0:5])
    assert np.array_equal(sub[10:20, 20:30], original[10:20, 20:30])
    assert (sub[5:10, 5:20] == 0).all()
    mask = region_mask([Box(0, 0, 5, 5), Box(3, 3, 8, 8)], 30, 20)
    assert mask.sum() == 25 + 25 - 4


def test_box_partly_outside_is_clipped(noise_image):
    original = np.asarray(noise_image)
    sub = np.asarray(make_subimage(noise_image, [Box(-10, -5, 4, 6)], "black"))
    assert np.array_equal(sub[0:6, 0:4], original[0:6, 0:4])
    assert (sub[6:, :] == 0).all() and (sub[:, 4:] == 0).all()
    crop = make_subimage(noise_image, [Box(25, 15, 99, 99)], "crop")
    assert crop.size == (5, 5)


def test_zero_area_boxes_are_rejected(noise_image):
    with pytest.raises(InputError, match="zero area"):
        Box.from_sequence([5, 5, 5, 9])
    with pytest.raises(InputError, match="zero area"):
        make_subimage(noise_image, [Box(40, 40, 50, 50)], "black")  # entirely outside the image
    with pytest.raises(InputError, match="at least one box"):
        make_subimage(noise_image, [], "black")


def test_other_fills(noise_image):
    original = np.asarray(noise_image)
    box = Box(5, 5, 15, 15)
    mean = np.asarray(make_subimage(noise_image, [box], "mean"))
    expected_mean = original.reshape(-1, 3).mean(axis=0).round()
    assert np.array_equal(mean[0, 0], expected_mean.astype(np.uint8))
    assert np.array_equal(mean[5:15, 5:15], original[5:15, 5:15])
    blur = np.asarray(make_subimage(noise_image, [box], "blur"))
    assert np.array_equal(blur[5:15, 5:15], original[5:15, 5:15])
    assert blur[0:5].std() < original[0:5].std() / 2  # outside is smoothed
    crop = make_subimage(noise_image, [box, Box(20, 2, 25, 4)], "crop")
    assert crop.size == (20, 13)  # bounding box of both boxes
    with pytest.raises(InputError, match="unknown fill"):
        make_subimage(noise_image, [box], "pink")


@pytest.mark.parametrize("fill", ["black", "blur", "mean", "crop"])
def test_a_subimage_key_names_exactly_what_the_subimage_holds(fill):
    """Keys are derived without pixels; equal keys must mean equal pixels, and a region that
    covers the whole image is the image itself (it shares the parent's key)."""
    from comclip.imaging.subimages import subimage_key

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    whole, part, same_pixels = [Box(0, 0, 40, 30)], [Box(5.2, 3, 20, 17.5)], [Box(5.9, 3.0, 19.1, 17.01)]
    assert subimage_key("parent", whole, fill, 40, 30) == "parent"
    assert np.array_equal(np.asarray(make_subimage(image, whole, fill)), np.asarray(image))
    assert subimage_key("parent", part, fill, 40, 30) == subimage_key("parent", same_pixels, fill, 40, 30)
    assert np.array_equal(np.asarray(make_subimage(image, part, fill)), np.asarray(make_subimage(image, same_pixels, fill)))
    assert subimage_key("parent", part, fill, 40, 30) != subimage_key("other", part, fill, 40, 30)
    assert len({subimage_key("parent", part, f, 40, 30) for f in ("black", "blur", "mean", "crop")}) == 4


def test_score_modes_by_hand():
    e = Evidence(composed=0.30, clip=0.28, entity_similarities=[0.2, 0.4], relation_similarities=[0.1])
    assert SCORE_MODES["comclip"](e, 2.0) == 0.30
    assert SCORE_MODES["evidence"](e, 2.0) == pytest.approx(0.30 + 2.0 * 0.3)
    assert SCORE_MODES["evidence"](e, 1.0, relations=True) == pytest.approx(0.30 + (0.2 + 0.4 + 0.1) / 3)
    assert SCORE_MODES["evidence-min"](e, 0.5) == pytest.approx(0.30 + 0.5 * 0.2)
    assert SCORE_MODES["evidence-min"](e, 1.0, relations=True) == pytest.approx(0.40)
    empty = Evidence(0.3, 0.3, [], [])
    assert all(mode(empty, 1.0) == 0.3 for mode in SCORE_MODES.values())


def test_pipeline_evidence_adds_the_entity_cosines(tiny_backbone, rgb_image_path):
    from comclip.pipeline import ComCLIP

    text = "a red ball next to a blue cube"
    faithful = ComCLIP(tiny_backbone).explain(rgb_image_path, text)
    evidence = ComCLIP(tiny_backbone, score_mode="evidence", evidence_weight=0.7).explain(rgb_image_path, text)
    entities = [p.similarity for p in evidence.parts if p.kind == "entity"]
    assert evidence.composed == pytest.approx(faithful.score)
    assert evidence.score == pytest.approx(faithful.score + 0.7 * sum(entities) / len(entities))
    with pytest.raises(InputError, match="unknown score mode"):
        ComCLIP(tiny_backbone, score_mode="magic")


@pytest.mark.parametrize("weighting", ["sum", "sum-raw", "softmax"])
def test_batched_scores_equal_one_pair_at_a_time(weighting):
    from comclip.composition import comclip_scores

    rng = np.random.default_rng(7)
    pairs, k, d = 9, 3, 16
    v_global, caption = _unit(rng, pairs, d), _unit(rng, pairs, d)
    subs, phrases = _unit(rng, pairs, k, d), _unit(rng, pairs, k, d)
    subs[0] = -phrases[0]  # every cosine negative: the sum weighting's uniform fallback
    tensors = [torch.tensor(a, dtype=torch.float32) for a in (v_global, caption, subs, phrases)]
    batched = comclip_scores(*tensors, weighting, 0.05)
    for n, got in enumerate(batched):
        one = comclip_score(*(t[n] for t in tensors), weighting, 0.05)
        assert got.score == pytest.approx(one.score, abs=1e-12) and got.flags == one.flags
        np.testing.assert_allclose(got.weights.numpy(), one.weights.numpy(), atol=1e-12)
        np.testing.assert_allclose(got.similarities.numpy(), one.similarities.numpy(), atol=1e-12)
    assert weighting != "sum" or batched[0].flags == ("uniform_weights",)
