"""SLIP checkpoints: read safely from SLIP's own file layout, mapped onto transformers' ViT and
CLIP text modules, and checked against a reference forward pass written from SLIP's
``models.py`` and timm's VisionTransformer (plain torch on the checkpoint's tensors)."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
from PIL import Image

from comclip.backbones import create_backbone
from comclip.errors import ModelNotFoundError
from comclip.testing import make_tiny_slip

from .conftest import run_cli

HEADS = {"SLIP_VITS16": (12, 8), "CLIP_VITB16": (12, 8), "SLIP_VITL16": (16, 8)}


@pytest.fixture(scope="module")
def slip_file(tmp_path_factory):
    return make_tiny_slip(tmp_path_factory.mktemp("slip") / "slip_small_100ep.pt", "SLIP_VITS16", seed=4)


def checkpoint_state(path) -> dict:
    with torch.serialization.safe_globals([argparse.Namespace]):
        return {k.removeprefix("module."): v for k, v in torch.load(path, weights_only=True)["state_dict"].items()}


def layer_norm(x, state, prefix, eps):
    return torch.nn.functional.layer_norm(x, x.shape[-1:], state[f"{prefix}.weight"], state[f"{prefix}.bias"], eps)


def linear(x, state, prefix):
    return x @ state[f"{prefix}.weight"].T + state[f"{prefix}.bias"]


def reference_image_embedding(state: dict, pixels: torch.Tensor, heads: int) -> torch.Tensor:
    """timm's VisionTransformer (class token, pre-norm blocks, exact GELU, eps 1e-6, the class
    token after the final norm), then ``@ image_projection``: SLIP's ``encode_image``."""
    patch = state["visual.patch_embed.proj.weight"]
    x = torch.nn.functional.conv2d(pixels, patch, state["visual.patch_embed.proj.bias"], stride=patch.shape[-1])
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([state["visual.cls_token"].expand(len(x), -1, -1), x], dim=1) + state["visual.pos_embed"]
    blocks = len({k.split(".")[2] for k in state if k.startswith("visual.blocks.")})
    for n in range(blocks):
        p = f"visual.blocks.{n}"
        h = layer_norm(x, state, f"{p}.norm1", 1e-6)
        q, k, v = linear(h, state, f"{p}.attn.qkv").reshape(len(x), x.shape[1], 3, heads, -1).permute(2, 0, 3, 1, 4)
        attention = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        x = x + linear((attention @ v).transpose(1, 2).reshape(x.shape), state, f"{p}.attn.proj")
        h = layer_norm(x, state, f"{p}.norm2", 1e-6)
        x = x + linear(torch.nn.functional.gelu(linear(h, state, f"{p}.mlp.fc1")), state, f"{p}.mlp.fc2")
    return layer_norm(x, state, "visual.norm", 1e-6)[:, 0] @ state["image_projection"]


def reference_text_embedding(state: dict, tokens: torch.Tensor, heads: int) -> torch.Tensor:
    """SLIP's ``encode_text``: token + position embeddings, residual blocks with
    ``nn.MultiheadAttention`` under a causal mask and QuickGELU, ``ln_final``, the state at the
    highest token id (end of text), ``@ text_projection``."""
    width = state["token_embedding.weight"].shape[1]
    x = state["token_embedding.weight"][tokens] + state["positional_embedding"]
    mask = torch.full((tokens.shape[1],) * 2, float("-inf")).triu_(1)
    blocks = len({k.split(".")[2] for k in state if k.startswith("transformer.resblocks.")})
    for n in range(blocks):
        p = f"transformer.resblocks.{n}"
        attention = torch.nn.MultiheadAttention(width, heads, batch_first=True)
        attention.load_state_dict(
            {
                "in_proj_weight": state[f"{p}.attn.in_proj_weight"],
                "in_proj_bias": state[f"{p}.attn.in_proj_bias"],
                "out_proj.weight": state[f"{p}.attn.out_proj.weight"],
                "out_proj.bias": state[f"{p}.attn.out_proj.bias"],
            }
        )
        h = layer_norm(x, state, f"{p}.ln_1", 1e-5)
        x = x + attention(h, h, h, need_weights=False, attn_mask=mask)[0]
        h = linear(layer_norm(x, state, f"{p}.ln_2", 1e-5), state, f"{p}.mlp.c_fc")
        x = x + linear(h * torch.sigmoid(1.702 * h), state, f"{p}.mlp.c_proj")
    x = layer_norm(x, state, "ln_final", 1e-5)
    return x[torch.arange(len(x)), tokens.argmax(dim=-1)] @ state["text_projection"]


def slip_tokens(backbone, texts) -> torch.Tensor:
    """SLIP's SimpleTokenizer output: start, BPE, end, zeros up to 77."""
    out = torch.zeros(len(texts), 77, dtype=torch.long)
    for row, text in zip(out, texts):
        ids = backbone.tokenizer(text)["input_ids"]
        row[: len(ids)] = torch.tensor(ids)
    return out


@pytest.mark.parametrize("model", sorted(HEADS))
def test_embeddings_equal_slips_own_forward_pass(model, tmp_path):
    path = make_tiny_slip(tmp_path / "m.pt", model, seed=1)
    state = checkpoint_state(path)
    vision_heads, text_heads = HEADS[model]
    for name in (f"slip:{path}", f"slip:{tmp_path}/./m.pt"):
        backbone = create_backbone(name, pixels="pil")
        images = [
            Image.effect_mandelbrot((50, 40), (-2, -1.5, 1, 1.5), 50).convert("RGB"),
            Image.new("RGB", (30, 60), (200, 40, 9)),
        ]
        pixels = backbone.image_processor(images=images, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            expected_images = torch.nn.functional.normalize(reference_image_embedding(state, pixels, vision_heads), dim=-1)
            texts = ["a dog chasing a cat", "a cat"]
            expected_texts = torch.nn.functional.normalize(
                reference_text_embedding(state, slip_tokens(backbone, texts), text_heads), dim=-1
            )
        assert torch.allclose(backbone.encode_images(images), expected_images, atol=1e-5)
        assert torch.allclose(backbone.encode_texts(texts), expected_texts, atol=1e-5)
        assert backbone.logit_scale == pytest.approx(math.exp(float(state["logit_scale"])))


def test_preprocessing_is_slips_evaluation_transform(slip_file):
    spec = create_backbone(f"slip:{slip_file}").pixel_spec
    assert (spec.interpolation, spec.resize_mode, spec.crop) == ("bilinear", "shortest", (32, 32))
    assert spec.mean == pytest.approx((0.485, 0.456, 0.406)) and spec.std == pytest.approx((0.229, 0.224, 0.225))


class RunsCode:
    def __reduce__(self):
        import os

        return os.system, ("touch ran-code",)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"state_dict": {}, "args": RunsCode()}, "refusing to load"),
        ({"weights": {}}, "needs 'state_dict' and 'args'"),
        ({"state_dict": {}, "args": argparse.Namespace(model="SIMCLR_VITB16")}, "no text tower"),
        ({"state_dict": {}, "args": argparse.Namespace(model="SLIP_VITH14")}, "unknown SLIP model"),
    ],
)
def test_bad_or_unsafe_files_are_refused_with_one_clear_line(tmp_path, monkeypatch, content, message):
    monkeypatch.chdir(tmp_path)
    torch.save(content, tmp_path / "bad.pt")
    with pytest.raises(ModelNotFoundError, match=message):
        create_backbone(f"slip:{tmp_path / 'bad.pt'}")
    assert not (tmp_path / "ran-code").exists()


def test_cli_scores_explains_and_evaluates_with_slip(slip_file, rgb_image_path, tmp_path):
    model = f"slip:{slip_file}"
    score = run_cli(
        [
            "score",
            "--model",
            model,
            "--method",
            "clip,comclip",
            "--json",
            str(rgb_image_path),
            "a red square beside a blue square",
            "a dog",
        ]
    )
    assert score.returncode == 0, score.stderr
    results = json.loads(score.stdout)["results"]
    assert len(results) == 2 and all(-1 <= r["clip"] <= 1 and math.isfinite(r["comclip"]) for r in results)
    explain = run_cli(
        [
            "explain",
            "--model",
            model,
            str(rgb_image_path),
            "a red square and a blue square",
            "--out",
            str(tmp_path / "fig.png"),
            "--json",
        ]
    )
    assert explain.returncode == 0, explain.stderr
    assert (tmp_path / "fig.png").stat().st_size > 0
    run = run_cli(
        [
            "eval",
            "sandbox",
            "--model",
            model,
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
    assert report["backbone"]["backend"] == "SLIPBackbone"
    assert [(r["method"], r["n_scored"], r["n_failed"]) for r in report["runs"]] == [("clip", 4, 0), ("comclip", 4, 0)]


def test_a_checkpoint_file_without_the_prefix_is_named_as_a_file(cli, slip_file, rgb_image_path):
    code, out, err = cli("score", "--model", str(slip_file), str(rgb_image_path), "a dog")
    assert code == 2 and "is a file, not a model directory" in err and "slip:" in err
    missing = run_cli(["score", "--model", "slip:/no/such/slip.pt", str(rgb_image_path), "a dog"])
    assert missing.returncode == 2 and "SLIP checkpoint not found: /no/such/slip.pt" in missing.stderr
