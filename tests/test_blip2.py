"""BLIP-2's contrastive head as a multi-vector backbone: loading by every name form, embeddings
against the retrieval model's own forward pass, the per-query-token composition against a
NumPy reference, the cache, and the command line end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from comclip.backbones import create_backbone, register_model
from comclip.backbones.cached import CachedEncoder
from comclip.cache.embeddings import SQLiteCache
from comclip.composition import comclip_score
from comclip.composition.compose import WEIGHTINGS
from comclip.similarity import cosines, paired_cosines
from comclip.testing import make_tiny_blip2

from .conftest import run_cli, run_cli_here

IMAGES = [Image.effect_mandelbrot((60, 40), (-2, -1.5, 1, 1.5), 40).convert("RGB"), Image.new("RGB", (30, 50), (20, 160, 40))]
TEXTS = ["a red circle left of a blue square", "two dogs", "a green field"]


@pytest.fixture(scope="module")
def blip2_dir(tmp_path_factory):
    return make_tiny_blip2(tmp_path_factory.mktemp("blip2"), seed=2)


def test_every_name_form_gives_the_blip2_backend(blip2_dir):
    register_model("test/tiny-blip2", "blip2", str(blip2_dir), "a tiny random BLIP-2")
    for name in (str(blip2_dir), "test/tiny-blip2"):
        backbone = create_backbone(name)
        assert type(backbone).__name__ == "Blip2Backbone" and backbone.image_tokens == 4
        assert backbone.describe()["image_tokens"] == 4


def test_scores_equal_the_retrieval_models_contrastive_forward(blip2_dir):
    backbone = create_backbone(str(blip2_dir), pixels="pil")
    inputs = backbone.processor(images=IMAGES, text=TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = backbone.model(**inputs, use_image_text_matching_head=False).logits_per_image
    assert torch.allclose(backbone.similarity(IMAGES, TEXTS), expected, atol=1e-5)
    embeddings = backbone.encode_images(IMAGES)
    assert embeddings.shape == (2, 4, 16) and torch.allclose(embeddings.norm(dim=-1), torch.ones(2, 4), atol=1e-5)
    torch_path = create_backbone(str(blip2_dir)).similarity(IMAGES, TEXTS)
    assert torch.allclose(torch_path, expected, atol=0.01)


def test_the_qformer_stays_in_float32_under_amp_bf16(blip2_dir):
    """transformers keeps BLIP-2's Q-Former and query tokens in float32 (``_keep_in_fp32_modules``);
    under ``amp_bf16`` autocast it still computes in float32, while the vision tower runs in
    bfloat16: seen by what each module's forward pass returns."""
    backbone = create_backbone(str(blip2_dir), precision="amp_bf16")
    assert set(type(backbone.model)._keep_in_fp32_modules) >= {"qformer", "query_tokens"}
    seen: dict[str, set] = {"qformer": set(), "vision": set()}
    qformer_linears = [m for m in backbone.model.qformer.modules() if isinstance(m, torch.nn.Linear)]
    vision_linears = [m for m in backbone.model.vision_model.modules() if isinstance(m, torch.nn.Linear)]
    for where, modules in (("qformer", qformer_linears), ("vision", vision_linears)):
        for module in modules:
            module.register_forward_hook(lambda _m, _i, out, where=where: seen[where].add(out.dtype))
    backbone.encode_images(IMAGES)
    backbone.encode_texts(TEXTS)
    assert seen["qformer"] == {torch.float32} and seen["vision"] == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in backbone.model.qformer.parameters())
    reference = create_backbone(str(blip2_dir)).similarity(IMAGES, TEXTS)
    assert torch.allclose(backbone.similarity(IMAGES, TEXTS), reference, atol=0.05)


def unit(array: np.ndarray) -> np.ndarray:
    return array / np.linalg.norm(array, axis=-1, keepdims=True)


@pytest.mark.parametrize("weighting", list(WEIGHTINGS))
def test_multi_vector_composition_matches_a_numpy_reference(weighting):
    rng = np.random.default_rng(7)
    queries, dim, parts = 5, 8, 3
    global_q, subs = unit(rng.normal(size=(queries, dim))), unit(rng.normal(size=(parts, queries, dim)))
    phrases, caption = unit(rng.normal(size=(parts, dim))), unit(rng.normal(size=dim))
    composition = comclip_score(*(torch.from_numpy(a) for a in (global_q, caption, subs, phrases)), weighting, 0.05)

    s = np.array([max(subs[i, q] @ phrases[i] for q in range(queries)) for i in range(parts)])
    w = WEIGHTINGS[weighting](torch.from_numpy(s), 0.05).weights.numpy()  # the weightings have their own tests
    v = unit(np.stack([global_q[q] + sum(w[i] * subs[i, q] for i in range(parts)) for q in range(queries)]))
    assert np.allclose(composition.similarities.numpy(), s)
    assert composition.score == pytest.approx(max(v[q] @ caption for q in range(queries)))


def test_single_vector_similarity_is_the_plain_product():
    images, texts = torch.randn(3, 6), torch.randn(4, 6)
    assert torch.equal(cosines(images, texts), images @ texts.T)
    assert torch.equal(paired_cosines(images, texts[:3]), (images * texts[:3]).sum(-1))


def test_multi_vector_embeddings_come_back_from_the_cache_in_shape(blip2_dir, tmp_path):
    cold = CachedEncoder(create_backbone(str(blip2_dir)), SQLiteCache(tmp_path / "c.sqlite"))
    first = cold.encode_images(IMAGES)
    raw = create_backbone(str(blip2_dir))
    raw._encode_pixels = None  # a warm read encodes nothing
    assert torch.equal(CachedEncoder(raw, SQLiteCache(tmp_path / "c.sqlite")).encode_images(IMAGES), first)


@pytest.mark.parametrize(("subimage", "made_from"), [("auto", "tokens"), ("fill", "fill")])
def test_comclip_plus_on_blip2_through_a_cache_and_warm_encodes_none(blip2_dir, tmp_path, subimage, made_from):
    """comclip-plus's ``auto`` sub-images are BLIP-2's tokens. Either way, rows the run itself
    cached meet fresh ones in one read (multi-vector rows of two shapes: that failed), and a
    warm run scores the same encoding nothing."""
    from comclip.config import PipelineConfig
    from comclip.methods import method_configs
    from comclip.pipeline import ComCLIP

    config = method_configs(["comclip-plus"], PipelineConfig())["comclip-plus"].replace(subimage=subimage)
    backbone = create_backbone(str(blip2_dir))
    cold = ComCLIP(CachedEncoder(backbone, SQLiteCache(tmp_path / "c.sqlite")), config)
    assert cold.config.subimage == made_from
    scores = cold.score(IMAGES, TEXTS[:2])
    backbone._token_rows = backbone._encode_pixels = None  # a warm run encodes nothing
    warm = ComCLIP(CachedEncoder(backbone, SQLiteCache(tmp_path / "c.sqlite")), config).score(IMAGES, TEXTS[:2])
    assert scores.shape == (2, 2) and torch.equal(warm, scores)


def test_cli_scores_explains_and_evaluates_with_blip2(blip2_dir, tmp_path):
    image = tmp_path / "scene.png"
    IMAGES[0].save(image)
    score = run_cli_here(
        ["score", "--model", str(blip2_dir), "--method", "clip,comclip", "--details", "--json", str(image), *TEXTS[:2]]
    )
    assert score.returncode == 0, score.stderr
    results = json.loads(score.stdout)["results"]
    direct = create_backbone(str(blip2_dir)).similarity([image], TEXTS[:2])[0]
    assert [r["clip"] for r in results] == pytest.approx(direct.tolist(), abs=1e-5)
    assert all(p["similarity"] <= 1 for r in results for p in r["details"]["parts"])
    explain = run_cli_here(["explain", "--model", str(blip2_dir), str(image), TEXTS[0], "--out", str(tmp_path / "fig.png")])
    assert explain.returncode == 0, explain.stderr
    run = run_cli_here(
        [
            "eval",
            "sandbox",
            "--model",
            str(blip2_dir),
            "--task",
            "binding",
            "--n",
            "4",
            "--seed",
            "3",
            "--out",
            str(tmp_path / "run"),
            "--cache",
            str(tmp_path / "cache"),
        ]
    )
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert [(r["method"], r["n_scored"]) for r in report["runs"]] == [("clip", 4), ("comclip", 4)]
    assert report["backbone"]["image_tokens"] == 4


def test_retrieval_with_blip2_ranks_by_the_best_query_token(blip2_dir, tmp_path):
    rows = []
    for n, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        Image.new("RGB", (40, 40), colour).save(tmp_path / f"im{n}.png")
        rows.append({"image": f"im{n}.png", "captions": [f"colour number {n}"]})
    (tmp_path / "captions.json").write_text(json.dumps(rows))
    out = tmp_path / "retrieval"
    run = run_cli_here(
        [
            "eval",
            "retrieval",
            "--data",
            str(tmp_path / "captions.json"),
            "--model",
            str(blip2_dir),
            "--rerank-top",
            "2",
            "--out",
            str(out),
        ]
    )
    assert run.returncode == 0, run.stderr
    report = json.loads((out / "report.json").read_text())
    assert [r["n_scored"] for r in report["runs"]] == [6, 6]


def test_the_hub_names_load_from_the_hub_cache_offline(blip2_dir, tmp_path):
    """``Salesforce/blip2-itm-vit-g`` (registered) and ``hf-hub:`` + that id, read from a Hub
    cache laid out as huggingface_hub writes it, with the network off."""
    import shutil

    commit = "0" * 40
    repo = tmp_path / "hub" / "models--Salesforce--blip2-itm-vit-g"
    shutil.copytree(blip2_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    image = tmp_path / "scene.png"
    IMAGES[1].save(image)
    expected = create_backbone(str(blip2_dir)).similarity([image], ["two dogs"])[0, 0].item()
    for name in ("Salesforce/blip2-itm-vit-g", "hf-hub:Salesforce/blip2-itm-vit-g"):
        run = run_cli(["score", "--model", name, "--json", str(image), "two dogs"], env={"HF_HUB_CACHE": str(tmp_path / "hub")})
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["results"][0]["clip"] == pytest.approx(expected, abs=1e-5)
