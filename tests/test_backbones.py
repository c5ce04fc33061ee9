"""The backbone contract, the model registry and its errors, on a real (tiny) CLIP."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from comclip.backbones import CaptionTruncatedWarning, create_backbone, list_models, resolve_device, resolve_model
from comclip.backbones.cached import CachedEncoder
from comclip.errors import ComclipError, InputError, ModelNotFoundError


def _images(n):
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 255, (24 + i, 40, 3), dtype=np.uint8)) for i in range(n)]


TEXTS = ["a dog chasing a cat", "a cat chasing a dog", "two red apples", "a man sitting on a bench", "it is"]


def test_shapes_and_unit_norm(tiny_backbone):
    img = tiny_backbone.encode_images(_images(3))
    txt = tiny_backbone.encode_texts(TEXTS)
    assert img.shape == (3, 32) and txt.shape == (5, 32)
    assert img.dtype == torch.float32 and txt.dtype == torch.float32
    assert torch.allclose(img.norm(dim=-1), torch.ones(3), atol=1e-6)
    assert torch.allclose(txt.norm(dim=-1), torch.ones(5), atol=1e-6)
    sims = tiny_backbone.similarity(_images(3), TEXTS)
    assert sims.shape == (3, 5)
    assert torch.allclose(sims, img @ txt.T, atol=1e-6)


def test_properties(tiny_backbone):
    assert tiny_backbone.image_size == 32
    assert tiny_backbone.context_length == 77
    assert tiny_backbone.logit_scale == pytest.approx(np.exp(np.log(1 / 0.07)), rel=1e-4)
    assert tiny_backbone.device == torch.device("cpu")
    assert tiny_backbone.describe()["backend"] == "HFBackbone"


@pytest.mark.parametrize("other_batch", [1, 64])
def test_batching_matches_one_at_a_time(tiny_model_dir, other_batch):
    one = create_backbone(str(tiny_model_dir), device="cpu", batch_size=1)
    many = create_backbone(str(tiny_model_dir), device="cpu", batch_size=other_batch)
    images = _images(7)
    assert torch.allclose(one.encode_images(images), many.encode_images(images), atol=1e-5)
    assert torch.allclose(one.encode_texts(TEXTS), many.encode_texts(TEXTS), atol=1e-5)


def test_encodings_are_deterministic_and_distinguish_inputs(tiny_backbone):
    a = tiny_backbone.encode_texts(["a dog chasing a cat"])
    b = tiny_backbone.encode_texts(["a dog chasing a cat"])
    c = tiny_backbone.encode_texts(["a cat chasing a dog"])
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_long_caption_is_truncated_with_warning(tiny_backbone):
    long = "a very small dog " * 40
    with pytest.warns(CaptionTruncatedWarning, match="context of 77"):
        emb = tiny_backbone.encode_texts([long])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cut = tiny_backbone.encode_texts([" ".join(long.split()[:60])])  # still > 75 BPE tokens? no: check equality below
    assert emb.shape == (1, 32)
    # Truncation keeps the first 76 tokens + end token, so a caption sharing those tokens gives the same embedding.
    longer = long + " and a big cat " * 10
    with pytest.warns(CaptionTruncatedWarning):
        emb2 = tiny_backbone.encode_texts([longer])
    assert torch.allclose(emb, emb2, atol=1e-6)
    assert cut.shape == (1, 32)


@pytest.mark.parametrize("bad", ["", "   ", "\n\t"])
def test_empty_caption_is_an_error(tiny_backbone, bad):
    with pytest.raises(InputError, match="empty or whitespace"):
        tiny_backbone.encode_texts(["fine", bad])


def test_tokenizer_uses_real_clip_vocabulary(tiny_backbone):
    ids = tiny_backbone.tokenizer("a dog chasing a cat")["input_ids"]
    # Token ids of openai/clip-vit-base-patch32's tokenizer for this caption.
    assert ids == [49406, 320, 1929, 13376, 320, 2368, 49407]


def test_same_seed_same_weights(tmp_path):
    from safetensors.numpy import load_file

    from comclip.testing import make_tiny_clip

    a = load_file(make_tiny_clip(tmp_path / "a", seed=3) / "model.safetensors")
    b = load_file(make_tiny_clip(tmp_path / "b", seed=3) / "model.safetensors")
    c = load_file(make_tiny_clip(tmp_path / "c", seed=4) / "model.safetensors")
    key = "text_projection.weight"
    assert np.array_equal(a[key], b[key])
    assert not np.array_equal(a[key], c[key])


def test_registry_lists_default_and_open_clip():
    names = list_models()
    assert "openai/clip-vit-base-patch32" in names
    assert any(n.startswith("open_clip:") for n in names)
    assert resolve_model("openai/clip-vit-base-patch32") == ("hf", "openai/clip-vit-base-patch32")
    assert resolve_model("open_clip:ViT-B-32/openai") == ("open_clip", "ViT-B-32/openai")
    assert resolve_model("open_clip:ViT-B-16/my/ckpt.pt") == ("open_clip", "ViT-B-16/my/ckpt.pt")
    assert resolve_model("hf-hub:someone/some-clip") == ("hf", "someone/some-clip")


def test_local_directory_resolves(tiny_model_dir):
    assert resolve_model(str(tiny_model_dir)) == ("hf", str(tiny_model_dir))


def test_unknown_name_suggests_close_names_and_explains_directories():
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("openai/clip-vit-base-patch23")
    message = str(info.value)
    assert "openai/clip-vit-base-patch32" in message
    assert "local directory" in message and "comclip models" in message


def test_missing_path_and_directory_without_config(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "no-such-model"))
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_hub_name_offline_without_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-home" / "hub"))
    with pytest.raises(ModelNotFoundError) as info:
        create_backbone("hf-hub:openai/clip-vit-base-patch32", device="cpu")
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message
    assert "local directory" in message


def test_open_clip_without_extra_says_how_to_install():
    pytest.importorskip("torch")
    try:
        import open_clip  # noqa: F401
    except Exception:
        with pytest.raises(ComclipError, match=r"comclip\[openclip\]"):
            create_backbone("open_clip:ViT-B-32/openai", device="cpu")
    else:  # pragma: no cover - only where open_clip is installed
        pytest.skip("open_clip is installed here; the missing-extra message cannot be observed")


def test_bad_device_and_batch_size(tiny_model_dir):
    with pytest.raises(InputError, match="device"):
        resolve_device("gpu7")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(InputError, match="batch_size must be positive"):
        create_backbone(str(tiny_model_dir), device="cpu", batch_size=0)
    with pytest.raises(InputError, match="unknown precision 'half'"):
        create_backbone(str(tiny_model_dir), device="cpu", precision="half")
    with pytest.raises(InputError, match="amp_fp16 needs a CUDA device"):
        create_backbone(str(tiny_model_dir), device="cpu", precision="amp_fp16")


def test_bfloat16_autocast_is_close_to_fp32_and_cached_apart(tiny_model_dir):
    from comclip.cache.embeddings import MemoryCache

    images = [Image.new("RGB", (48, 40), (40 * k, 120, 200 - 40 * k)) for k in range(4)]
    texts = ["a red circle", "two dogs on a mat", "a small blue square"]
    full = create_backbone(str(tiny_model_dir), device="cpu")
    half = create_backbone(str(tiny_model_dir), device="cpu", precision="amp_bf16")
    assert half.describe()["precision"] == "amp_bf16"
    reference, fast = full.similarity(images, texts), half.similarity(images, texts)
    assert fast.dtype == torch.float32
    assert torch.allclose(fast, reference, atol=0.05) and not torch.equal(fast, reference)
    shared = MemoryCache()
    CachedEncoder(full, shared).encode_texts(texts)
    assert torch.equal(
        CachedEncoder(half, shared).encode_texts(texts), half._batched(texts, half._encode_text_batch)
    )  # not fp32's rows


def test_shipped_sandbox_models_resolve_to_package_files():
    from pathlib import Path

    from comclip.backbones.factory import packaged_path
    from comclip.errors import ModelNotFoundError

    for name in ("comclip/sandbox", "comclip/sandbox-bow"):
        backend, source = resolve_model(name)
        assert backend == "hf" and (Path(source) / "model.safetensors").stat().st_size < 10 * 2**20
        assert (Path(source) / "comclip.json").is_file()
    with pytest.raises(ModelNotFoundError, match="missing from this installation"):
        packaged_path("package:comclip.sandbox/no-such-model")


def test_inside_truncation_said_the_encoder_neither_counts_nor_warns(tiny_backbone, monkeypatch):
    """An evaluation counts over-long captions once for the run; while it scores, the encoder
    does not tokenize each caption a second time to count it, nor warn of it."""
    from comclip.backbones.base import truncation_said

    counted = []
    count = tiny_backbone._token_counts
    monkeypatch.setattr(tiny_backbone, "_token_counts", lambda texts: counted.extend(texts) or count(texts))
    long = "a very small dog " * 40
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with truncation_said():
            tiny_backbone.encode_texts([long + "inside"])
    assert counted == []
    with pytest.warns(CaptionTruncatedWarning):
        tiny_backbone.encode_texts([long + "outside"])
    assert counted == [long + "outside"]


def test_like_length_batches_are_the_cheapest_cuts():
    """Texts sorted longest first are cut where padded tokens plus a call per batch are fewest
    (checked against every way of cutting), never past the batch size."""
    import itertools
    import random

    from comclip.backbones.text_batches import like_length_batches

    def cost(batches, lengths, call):
        return sum(call + (b - a) * lengths[a] for a, b in batches)

    rng = random.Random(0)
    for _ in range(60):
        lengths = sorted((rng.choice([3, 4, 5, 9, 20, 27]) for _ in range(rng.randint(1, 8))), reverse=True)
        size, call = rng.randint(1, 5), rng.choice([0, 5, 64])
        found = like_length_batches(lengths, size, call)
        assert found[0][0] == 0 and found[-1][1] == len(lengths) and all(b - a <= size for a, b in found)
        assert all(x[1] == y[0] for x, y in zip(found, found[1:]))
        cheapest = min(
            cost(list(zip((0, *cuts), (*cuts, len(lengths)))), lengths, call)
            for k in range(len(lengths))
            for cuts in itertools.combinations(range(1, len(lengths)), k)
            if all(b - a <= size for a, b in zip((0, *cuts), (*cuts, len(lengths))))
        )
        assert cost(found, lengths, call) == cheapest
