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

from .conftest import run_cli_here

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


class SimpleTokenizer:
    """SLIP's ``tokenizer.py`` (CLIP's SimpleTokenizer), as that repository writes it: the
    byte-to-unicode table, a vocabulary built from the merge file, ftfy + double HTML
    unescaping + whitespace cleaning, CLIP's split pattern, greedy lowest-rank BPE merges, and
    ``__call__`` cutting each token list to the context (the end token lost past it)."""

    def __init__(self):
        import regex

        from comclip.text.bpe import clip_merges

        printable = (
            list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
        )
        codes, n = printable[:], 0
        for b in range(256):
            if b not in printable:
                printable.append(b)
                codes.append(256 + n)
                n += 1
        self.byte_encoder = dict(zip(printable, map(chr, codes)))
        merges = [tuple(m.split()) for m in clip_merges()]
        vocab = list(self.byte_encoder.values())
        vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.pattern = regex.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE
        )

    def bpe(self, token: str) -> list[str]:
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(a, b) for a, b in zip(word, word[1:])}
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    def encode(self, text: str) -> list[int]:
        import html
        import re

        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        text = re.sub(r"\s+", " ", text).strip().lower()
        ids = []
        for token in self.pattern.findall(text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self.bpe(token))
        return ids

    def __call__(self, texts, context_length: int = 77) -> torch.Tensor:
        result = torch.zeros(len(texts), context_length, dtype=torch.long)
        for row, text in zip(result, texts):
            tokens = ([self.encoder["<|startoftext|>"]] + self.encode(text) + [self.encoder["<|endoftext|>"]])[:context_length]
            row[: len(tokens)] = torch.tensor(tokens)
        return result


def slip_transform(images, size: int = 224) -> torch.Tensor:
    """SLIP's evaluation transform as torchvision computes it on PIL images: Resize(size)
    (short side to size, long side int(size * long / short), PIL bilinear; unchanged where the
    short side is already size), CenterCrop(size) at int(round((h - size) / 2.0)), ToTensor
    (divide by 255), Normalize with ImageNet's mean and std."""
    import numpy as np

    out = []
    for image in images:
        w, h = image.size
        if min(w, h) != size:
            if w <= h:
                image = image.resize((size, int(size * h / w)), Image.BILINEAR)
            else:
                image = image.resize((int(size * w / h), size), Image.BILINEAR)
        top, left = int(round((image.height - size) / 2.0)), int(round((image.width - size) / 2.0))
        tensor = torch.from_numpy(np.array(image.crop((left, top, left + size, top + size)))).permute(2, 0, 1).float().div(255)
        mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
        out.append((tensor - mean[:, None, None]) / std[:, None, None])
    return torch.stack(out)


def slip_tokens(backbone, texts) -> torch.Tensor:
    """SLIP's SimpleTokenizer output for the backbone's context."""
    return SimpleTokenizer()(texts, backbone.context_length)


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
        pixels = slip_transform(images, backbone.image_size)
        with torch.no_grad():
            expected_images = torch.nn.functional.normalize(reference_image_embedding(state, pixels, vision_heads), dim=-1)
            texts = ["a dog chasing a cat", "a cat"]
            expected_texts = torch.nn.functional.normalize(
                reference_text_embedding(state, slip_tokens(backbone, texts), text_heads), dim=-1
            )
        assert torch.allclose(backbone.encode_images(images), expected_images, atol=1e-5)
        assert torch.allclose(backbone.encode_texts(texts), expected_texts, atol=1e-5)
        assert backbone.logit_scale == pytest.approx(math.exp(float(state["logit_scale"])))


CAPTIONS = [
    "tom &amp; jerry",  # HTML entities: unescaped twice by SLIP's cleaning
    "Tom &amp;amp; Jerry &lt;3",
    "A  dog\tchasing\n a CAT",
    "cafÃ© au lait",  # mojibake ftfy repairs
    "naïve 2 dogs, 10 cats; don't they're",
    "a very small red dog sitting next to a big blue square " * 9,  # past 77 tokens: cut, end token lost
]


def test_tokens_are_slips_own_tokenizers(slip_file):
    """Token ids from comclip against SLIP's ``tokenizer.py`` logic (written out above) on
    captions where cleaning, unescaping and truncation matter."""
    from comclip.backbones.slip import slip_tokens as comclip_tokens

    backbone = create_backbone(f"slip:{slip_file}")
    expected = SimpleTokenizer()(CAPTIONS, backbone.context_length)
    assert torch.equal(comclip_tokens(backbone.tokenizer, CAPTIONS, backbone.context_length), expected)
    reference = SimpleTokenizer()
    assert torch.equal(expected[:2], reference(["tom & jerry", "tom & jerry <3"], backbone.context_length))  # unescaped
    plain = backbone.tokenizer(CAPTIONS[0])["input_ids"]  # CLIP's tokenizer alone keeps "&amp;" as text
    assert plain != expected[0, : len(plain)].tolist()
    assert expected[-1, -1] != 49407 and 49407 not in expected[-1].tolist()  # cut, no end token
    assert backbone.too_long(CAPTIONS) == [False] * 5 + [True]


def test_pixels_are_slips_evaluation_transform(slip_file):
    """Pixels against torchvision's Resize / CenterCrop / ToTensor / Normalize (written out
    above), on sizes where the crop's rounding and the truncated long side matter."""
    backbone = create_backbone(f"slip:{slip_file}")
    size = backbone.image_size
    images = [
        Image.effect_mandelbrot((size + 75, size), (-2, -1.5, 1, 1.5), 60).convert("RGB"),  # offset 37.5: rounds to 38
        Image.effect_mandelbrot((47, 90), (-2, -1.5, 1, 1.5), 60).convert("RGB"),
        Image.effect_mandelbrot((301, 227), (-2, -1.5, 1, 1.5), 60).convert("RGB"),
    ]
    assert backbone.pixels == "pil" and backbone.pixel_spec is None
    assert torch.equal(backbone._processor_pixels(images), slip_transform(images, size))


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
    score = run_cli_here(
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
    explain = run_cli_here(
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
    run = run_cli_here(
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
    missing = run_cli_here(["score", "--model", "slip:/no/such/slip.pt", str(rgb_image_path), "a dog"])
    assert missing.returncode == 2 and "SLIP checkpoint not found: /no/such/slip.pt" in missing.stderr
