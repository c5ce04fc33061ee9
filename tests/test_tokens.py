"""Sub-images from patch tokens (``--subimage tokens``): the kept patches, the merged token's
key bias against the tokens it stands for, agreement with the fill on a trained model, keys
never shared with the fill, and the pipeline, the index and the command line using them."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from comclip.backbones import create_backbone
from comclip.backbones.vit.tokens import BATCHINGS, encode_regions, region_mask, touched_patches
from comclip.boxes import Box
from comclip.config import PipelineConfig, TokensUnsupportedWarning
from comclip.errors import InputError
from comclip.imaging.subimages import SubimageMaker, make_subimage, subimage_key
from comclip.pipeline import ComCLIP
from comclip.sandbox.pairs import minimal_pairs
from comclip.search import Index
from comclip.search.benchmark import render_gallery

from .conftest import load_json_lines


@pytest.fixture(scope="module")
def bow():
    return create_backbone("comclip/sandbox-bow", device="cpu")


@pytest.fixture(scope="module")
def scenes():
    """Ten sandbox scenes and their objects' true boxes."""
    pairs = minimal_pairs("binding", seed=7, n=10)
    return [p.scenes[0].render() for p in pairs], [[o.box for o in p.scenes[0].objects] for p in pairs]


@pytest.fixture(scope="module")
def siglip(tmp_path_factory):
    from comclip.testing import make_tiny_siglip

    return create_backbone(str(make_tiny_siglip(tmp_path_factory.mktemp("siglip"), seed=3)), device="cpu")


@pytest.fixture(scope="module")
def blip2(tmp_path_factory):
    from comclip.testing import make_tiny_blip2

    return create_backbone(str(make_tiny_blip2(tmp_path_factory.mktemp("blip2"), seed=2)), device="cpu")


def test_touched_patches_follow_the_centre_crop():
    """A 64x32 image seen at 16 px with 8 px patches: the view is the middle 32x32 square at
    half scale, so x 16..48 of the image is the view's 0..16, two patch columns."""
    from comclip.backbones.vit.tokens import centre_crop_geometry

    geometry = centre_crop_geometry((64, 32), 16, 8)
    assert geometry == (16.0, 0.0, 0.5, 0.5, 8, 2)
    touched = touched_patches(region_mask([Box(16, 0, 31, 15)], geometry), 8)
    assert touched.tolist() == [True, False, False, False]
    assert touched_patches(region_mask([Box(0, 0, 15, 31)], geometry), 8).tolist() == [False] * 4  # cut off by the crop
    both = touched_patches(region_mask([Box(16, 0, 20, 4), Box(44, 20, 48, 32)], geometry), 8)
    assert both.tolist() == [True, False, False, True]


def test_a_squashed_view_scales_each_side_by_itself(siglip):
    """SigLIP squashes the whole image to its view: a 64x32 image at 32 px is halved across and
    kept down, so the right half of the image is the view's two right patch columns."""
    geometry = siglip.view_geometry((64, 32))
    assert geometry == (0.0, 0.0, 0.5, 1.0, 8, 4)
    touched = touched_patches(region_mask([Box(32, 0, 64, 32)], geometry), 8)
    assert touched.reshape(4, 4)[:, 2:].all() and not touched.reshape(4, 4)[:, :2].any()


def test_siglip_pooling_weighs_a_merged_token_as_the_tokens_it_stands_for(siglip):
    """Without a class token the embedding is SigLIP's attention pooling: the key bias reaches
    its probe too, so k copies of a token equal one copy with log k."""
    torch.manual_seed(0)
    a, b = torch.randn(1, 32), torch.randn(1, 32)
    with torch.inference_mode():
        copies = siglip.encode_token_sequences(torch.cat([a, b, b, b, b])[None], torch.zeros(1, 5))
        merged = siglip.encode_token_sequences(torch.cat([a, b])[None], torch.tensor([[0.0, math.log(4)]]))
        plain = siglip.encode_token_sequences(torch.cat([a, b])[None], torch.zeros(1, 2))
    assert torch.allclose(copies, merged, atol=1e-5) and not torch.allclose(copies, plain, atol=1e-3)


def test_a_merged_token_weighs_as_the_tokens_it_stands_for(bow):
    """Keys that are k copies of one token give the same attention as one copy with log k added
    to its logits: the class token's output is the same, through the real model's layers."""
    torch.manual_seed(0)
    cls, a, b = (torch.randn(1, 128) for _ in range(3))
    with torch.inference_mode():
        copies = bow.encode_token_sequences(torch.cat([cls, a, b, b, b, b])[None], torch.zeros(1, 6))
        merged = bow.encode_token_sequences(torch.cat([cls, a, b])[None], torch.tensor([[0.0, 0.0, math.log(4)]]))
    assert torch.allclose(copies, merged, atol=1e-4)
    assert not torch.allclose(copies, bow.encode_token_sequences(torch.cat([cls, a, b])[None], torch.zeros(1, 3)), atol=1e-3)


def test_the_last_layer_read_at_the_class_token_is_the_full_encoders_row(bow):
    """The pooled embedding reads only the class token of the last layer, so only its row is
    computed there: the same as the whole encoder's row 0, with pads and merged tokens in the batch."""
    torch.manual_seed(1)
    tokens = torch.randn(6, 9, 128)
    bias = torch.zeros(6, 9)
    bias[:3, 6:] = float("-inf")  # padded sequences
    bias[::2, 4] = math.log(5.0)  # a merged token
    vision = bow.model.vision_model
    with torch.inference_mode():
        full = vision.encoder(inputs_embeds=vision.pre_layrnorm(tokens), attention_mask=bias[:, None, None, :])
        reference = bow.model.visual_projection(vision.post_layernorm(full.last_hidden_state[:, 0]))
        ours = bow.encode_token_sequences(tokens, bias)
    assert torch.allclose(ours, reference, atol=1e-5)
    assert not torch.allclose(ours[:3], bow.encode_token_sequences(tokens[:3], torch.zeros(3, 9)), atol=1e-3)


def test_blip2_weighs_a_merged_token_as_the_tokens_it_stands_for_in_tower_and_qformer(blip2, scenes):
    """BLIP-2's vision tower and its Q-Former's cross-attention both read the key bias: k
    copies of a token give every query token's embedding of one copy with log k; regions of
    different sizes padded into one batch give each region's rows alone."""
    torch.manual_seed(0)
    cls, a, b = (torch.randn(1, 32) for _ in range(3))
    with torch.inference_mode():
        copies = blip2.encode_token_sequences(torch.cat([cls, a, b, b, b, b])[None], torch.zeros(1, 6))
        merged = blip2.encode_token_sequences(torch.cat([cls, a, b])[None], torch.tensor([[0.0, 0.0, math.log(4)]]))
        plain = blip2.encode_token_sequences(torch.cat([cls, a, b])[None], torch.zeros(1, 3))
    assert copies.shape == (1, blip2.image_tokens, 16)
    assert torch.allclose(copies, merged, atol=1e-5) and not torch.allclose(copies, plain, atol=1e-3)
    images, boxes = scenes
    maker = SubimageMaker(images[:3], None)
    regions = [maker.region(n, b, "tokens-black") for n in range(3) for b in ([boxes[n][0]], boxes[n])]
    with torch.inference_mode():
        together = encode_regions(blip2, regions, "pad")
        alone = torch.cat([encode_regions(blip2, [region]) for region in regions])
    assert torch.allclose(together, alone, atol=1e-5)


def test_whole_image_is_the_image_and_regions_agree_with_the_fill(bow, scenes):
    """A region over the whole view is the global embedding; on a trained model a region's
    embedding from tokens is close to its filled sub-image's (mean and black fills)."""
    images, boxes = scenes
    maker = SubimageMaker(images, None)
    whole = bow._token_rows([maker.region(n, [Box(0, 0, *im.size)], "tokens-black") for n, im in enumerate(images)])
    assert torch.allclose(whole, bow.encode_views(images), atol=1e-5)
    regions = [(n, [box]) for n, image_boxes in enumerate(boxes) for box in image_boxes]
    for fill, floor in (("mean", 0.98), ("black", 0.9)):
        tokens = bow._token_rows([maker.region(n, b, f"tokens-{fill}") for n, b in regions])
        filled = bow.encode_views([make_subimage(images[n], b, fill) for n, b in regions])
        agreement = (tokens * filled).sum(-1)
        assert agreement.mean() > floor, (fill, agreement)


def test_every_batching_gives_the_same_rows(bow, scenes):
    images, boxes = scenes
    maker = SubimageMaker(images, None)
    regions = [maker.region(n, b, "tokens-mean") for n, image_boxes in enumerate(boxes) for b in ([image_boxes[0]], image_boxes)]
    with torch.inference_mode():
        rows = {name: encode_regions(bow, regions, name) for name in BATCHINGS}
    assert set(rows) == {"group", "pad", "like"}
    assert all(torch.allclose(rows["group"], rows[name], atol=1e-4) for name in ("pad", "like"))


def test_like_length_batches_fill_a_token_budget():
    """Short regions share a batch beyond ``batch_size`` up to the tokens of a full batch of
    whole images; no batch pads past that budget or mixes lengths below LIKE_LENGTH."""
    from comclip.backbones.vit.tokens import LIKE_LENGTH, _like_length

    lengths = [65] * 3 + [20] * 200 + [17] * 40 + [9] * 50
    batches = _like_length(lengths, 32, 32 * 65)
    assert sorted(n for batch in batches for n in batch) == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[n] for n in batch)
        assert len(batch) * longest <= 32 * 65 and min(lengths[n] for n in batch) >= LIKE_LENGTH * longest
    assert max(len(batch) for batch in batches) > 32


def test_a_later_call_reads_the_parents_patches_from_memory(bow, monkeypatch):
    """The token memory keeps each parent's view and patches for the next call (an index
    encodes candidates, sub-images and unions in calls of their own), found by the parent
    image whichever maker's canvas the region carries; rows are the same, the parents are
    not made again, and a parent that is gone is forgotten."""
    import gc

    from comclip.backbones.vit.tokens import TokenMemory

    pairs = minimal_pairs("binding", seed=8, n=10)
    images, boxes = [p.scenes[0].render() for p in pairs], [[o.box for o in p.scenes[0].objects] for p in pairs]
    made = []
    real = bow.pixel_values
    parents = {id(image) for image in images}
    monkeypatch.setattr(bow, "pixel_values", lambda some: made.append(sum(id(x) in parents for x in some)) or real(some))
    memory = TokenMemory()
    first = [SubimageMaker(images, None).region(n, [b[0]], "tokens-mean") for n, b in enumerate(boxes)]
    again = [SubimageMaker(images, None).region(n, b, "tokens-background") for n, b in enumerate(boxes)]
    with torch.inference_mode():
        alone = encode_regions(bow, again)
        made.clear()
        encode_regions(bow, first, memory=memory)
        parents_made = sum(made)
        made.clear()
        remembered = encode_regions(bow, again, memory=memory)
    assert sum(made) == 0 and parents_made == len(images)
    assert torch.allclose(remembered, alone, atol=1e-5)
    small = TokenMemory()
    small.BYTES, small.COLOURS = 1, 1  # keeps one parent and one colour: a call still has all of its own
    with torch.inference_mode():
        assert torch.allclose(encode_regions(bow, again, memory=small), alone, atol=1e-5)
    assert len(small.parents) == 1 and len(small.fills) == 1
    kept = len(memory.parents)
    del first, again, images
    gc.collect()
    assert kept == 10 and len(memory.parents) == 0


def test_a_whole_image_reuses_the_view_its_regions_made(bow, monkeypatch):
    """An image whose token regions were encoded is not prepared again for its global pass
    (an index encodes candidates first), and its embedding is the one it has alone."""
    pairs = minimal_pairs("binding", seed=9, n=6)
    images = [p.scenes[0].render() for p in pairs]
    alone = bow.encode_images(images)
    regions = [SubimageMaker(images, None).region(n, [p.scenes[0].objects[0].box], "tokens-mean") for n, p in enumerate(pairs)]
    bow.encode_views(regions)
    made = []
    real = bow.pixel_values
    monkeypatch.setattr(bow, "pixel_values", lambda some: made.append(len(some)) or real(some))
    again = bow.encode_images([*images, pairs[0].scenes[1].render()])  # the last one has no regions
    assert made == [1] and torch.equal(again[:-1], alone)
    kept = bow.pixels
    try:
        bow.pixels = "pil" if kept == "torch" else "torch"  # views made the other way are not taken
        made.clear()
        bow.encode_images(images)
        assert made == [len(images)]
    finally:
        bow.pixels = kept


def test_fill_colours_from_one_palette_are_each_colours_own(bow, siglip):
    """Fill colours are made from one view-sized image holding them pixel by pixel: each the
    same as a whole image of that colour; an encoder that resamples such an image (here one
    that enlarges it, as a processor resizing to more than its crop does) makes them one by one."""
    import random

    from comclip.backbones.vit.views import ParentViews

    rng = random.Random(0)
    colours = [tuple(rng.randrange(256) for _ in range(3)) for _ in range(300)]
    region = SubimageMaker([Image.new("RGB", (40, 30), (9, 9, 9))], None).region(0, [Box(2, 2, 20, 20)], "tokens-mean")
    for model in (bow, siglip):
        views = ParentViews(model, [region])
        side = views.pixels.shape[-1]
        assert torch.equal(views._palette(colours, side), views._one_colour(colours, side))

    class Resampling:
        batch_size = bow.batch_size

        def pixel_values(self, images):
            return bow.pixel_values(
                [image.resize((image.width * 2, image.height * 2), Image.Resampling.BICUBIC) for image in images]
            )

        def embed_patches(self, pixels):
            return bow.embed_patches(pixels)

    views = ParentViews(Resampling(), [region])
    assert views._palette(colours, 64) is None
    views.prepare_fills(colours[:40], 8)
    assert all(torch.equal(views.fill(c, 8)[0], views._one_colour([c], 64)[0]) for c in colours[:40])


def test_keys_and_config(tiny_backbone):
    """Tokens have keys of their own (never the fill's); they stand for fills of one colour."""
    key = subimage_key("abc", [Box(1, 1, 5, 5)], "tokens-mean", 10, 10)
    assert key != subimage_key("abc", [Box(1, 1, 5, 5)], "mean", 10, 10) and "|tokens-mean|" in key
    assert PipelineConfig(subimage="tokens", subimage_fill="background").subimage_source == "tokens-background"
    assert PipelineConfig(subimage_fill="blur").subimage_source == "blur"
    with pytest.raises(InputError, match="one colour"):
        PipelineConfig(subimage="tokens", subimage_fill="blur")
    assert tiny_backbone.supports_tokens


@pytest.fixture(scope="module")
def slip(tmp_path_factory):
    from comclip.backbones.slip import SLIPBackbone
    from comclip.testing.tiny_slip import make_tiny_slip

    return SLIPBackbone(
        str(make_tiny_slip(tmp_path_factory.mktemp("slip") / "slip_small_100ep.pt", "SLIP_VITS16", seed=4)), device="cpu"
    )


def test_a_backbone_without_tokens_keeps_the_fill_and_says_so(tmp_path, monkeypatch):
    """A SigLIP whose view is cropped (so its patches' place in the image is not the squash
    the tokens path reads) cannot give tokens: it says so in one line and keeps the fill."""
    import dataclasses

    from comclip.testing import make_tiny_siglip

    backbone = create_backbone(str(make_tiny_siglip(tmp_path / "siglip", seed=2)), device="cpu")
    monkeypatch.setattr(backbone, "_pixel_spec", dataclasses.replace(backbone.pixel_spec, crop=(28, 28)))
    assert not backbone.supports_tokens
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = ComCLIP(backbone, parser="given", grounder="oracle", subimage="tokens")
    assert model.config.subimage == "fill" and model.describe()["subimage"] == "fill"
    assert [str(w.message) for w in caught if w.category is TokensUnsupportedWarning][0].count("\n") == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", TokensUnsupportedWarning)  # auto asks nothing: it is not said
        assert ComCLIP(backbone, parser="given", grounder="oracle", subimage="auto").config.subimage == "fill"


def test_auto_is_tokens_where_the_backbone_can_and_the_fill_is_one_colour(bow):
    assert ComCLIP(bow, parser="given", grounder="oracle", subimage="auto").config.subimage_source == "tokens-black"
    assert ComCLIP(bow, parser="given", grounder="oracle", subimage="auto", subimage_fill="blur").config.subimage == "fill"


def test_pipeline_scores_with_tokens_through_a_cache(bow, scenes, tmp_path):
    """comclip-plus's sub-images from tokens score close to the fill (both ground with the
    filled candidates, so only the sub-images differ); a warm run gives the same scores
    without encoding a sub-image again."""
    from comclip.backbones.cached import CachedEncoder
    from comclip.cache.embeddings import SQLiteCache

    images, _ = scenes
    captions = ["a red circle", "a large purple triangle and a small orange diamond"]
    cached = CachedEncoder(bow, SQLiteCache(tmp_path / "cache.sqlite"))
    plus = {"assignment": "joint", "score_mode": "evidence", "subimage_fill": "mean"}
    grounder = ComCLIP(bow, **plus).grounder
    tokens = ComCLIP(cached, subimage="tokens", grounder=grounder, **plus).score(images[:4], captions)
    filled = ComCLIP(bow, grounder=grounder, **plus).score(images[:4], captions)
    assert torch.allclose(tokens, filled, atol=0.05) and not torch.equal(tokens, filled)
    calls = []
    original = bow._token_rows
    bow._token_rows = lambda regions: calls.append(len(regions)) or original(regions)
    try:
        assert torch.equal(ComCLIP(cached, subimage="tokens", grounder=grounder, **plus).score(images[:4], captions), tokens)
    finally:
        del bow._token_rows
    assert calls == []


def test_index_with_tokens_answers_as_the_pipeline(bow, tmp_path):
    """An index built with tokens stores them and re-ranks as comclip score with tokens does,
    a union it lacks computed from tokens too."""
    render_gallery(["order-swap"], seed=5, n=3, folder=tmp_path / "pictures")
    index = Index.build(
        [tmp_path / "pictures"], tmp_path / "index", bow, methods=["comclip-plus"], options={"subimage": "tokens"}, union_cap=0
    )
    assert index.manifest["identity"]["side"]["fills"] == ["tokens-background"]
    assert list((tmp_path / "index").rglob("sub.tokens-background.vec.npy"))
    query = "a red circle to the left of a blue square"
    [result] = index.search(query, top=4, candidates=6, method="comclip-plus")
    config = index.method_config("comclip-plus")
    assert config.subimage == "tokens" and result.computed > 0
    from comclip.imaging.files import load_image

    expected = [row[0].score for row in ComCLIP(bow, config).score_details([load_image(h.image) for h in result.hits], [query])]
    assert [h.score for h in result.hits] == pytest.approx(expected, abs=1e-4)


def test_cli_score_with_tokens(cli, tmp_path):
    image = tmp_path / "scene.png"
    minimal_pairs("binding", seed=2, n=1)[0].scenes[0].render().save(image)
    score = ["score", str(image), "a red circle", "--model", "comclip/sandbox"]
    scores = {}
    for mode in ("tokens", "fill"):
        code, out, _ = cli(*score, "--method", "comclip-plus", "--subimage", mode, "--json")
        assert code == 0
        [row] = load_json_lines(out)
        scores[mode] = row["results"][0]["comclip-plus"]
    assert scores["tokens"] == pytest.approx(scores["fill"], abs=0.05) and scores["tokens"] != scores["fill"]
    code, _, err = cli(*score, "--method", "comclip", "--subimage", "tokens", "--subimage-fill", "blur")
    assert code == 2 and err.strip().count("\n") == 0 and "one colour" in err


@pytest.mark.parametrize("name", ["bow", "slip", "siglip", "blip2"])
def test_an_image_the_size_of_the_view_is_the_fill_exactly_where_no_patch_is_wholly_outside(name, request):
    """Boxes touching every patch leave no merged token: the sequence is the filled view's
    (transformers CLIP and SigLIP, SLIP's ViT, BLIP-2's tower, whose layers comclip runs itself,
    and its Q-Former); the whole image is the image."""
    backbone = request.getfixturevalue(name)
    assert backbone.supports_tokens
    side, patch = backbone.image_size, backbone.view_geometry((1, 1)).patch
    image = Image.effect_noise((side, side), 60).convert("RGB")
    cells = range(side // patch)
    boxes = [Box(patch * c + 2, patch * r + 2, patch * c + patch - 2, patch * r + patch - 2) for r in cells for c in cells]
    maker = SubimageMaker([image], None)
    [tokens] = backbone._token_rows([maker.region(0, boxes, "tokens-black")])
    [filled] = backbone.encode_views([make_subimage(image, boxes, "black")])
    assert torch.allclose(tokens, filled, atol=1e-4)
    [whole] = backbone._token_rows([maker.region(0, [Box(0, 0, side, side)], "tokens-mean")])
    assert torch.allclose(whole, backbone.encode_views([image])[0], atol=1e-5)


@pytest.mark.parametrize("region", ["mask", "multiscale"])
def test_grounder_encodes_its_masked_candidates_from_tokens(bow, scenes, region):
    """With sub-images from tokens, the clip grounder's masked view of a candidate is its
    token encoding (zoomed views stay images), it says so in what it describes (its rankings
    are cached apart), and it finds each scene's objects as the filled views do."""
    from comclip.grounding import create_grounder
    from comclip.grounding.clip_grounder import ZOOMS
    from comclip.imaging.subimages import TokenRegion, border_colour

    images, truth = scenes
    options = {"proposals": "segments", "region": region, "fill": "background"}
    tokens, filled = (create_grounder("clip", bow, subimage=mode, **options) for mode in ("auto", "fill"))
    assert tokens.describe()["fill"] == "tokens-background" and filled.describe()["fill"] == "background"
    boxes, embeddings = tokens.candidates(images[0])
    colour = tuple(int(c) for c in border_colour(np.asarray(images[0])))
    masked = bow._token_rows([TokenRegion(images[0], (b.clipped(*images[0].size),), colour) for b in boxes])
    maker = SubimageMaker([images[0]], None)
    zoomed = (
        [bow.encode_views([maker.zoomed(0, b, "background", z) for z in ZOOMS]) for b in boxes] if region == "multiscale" else []
    )
    expected = torch.stack([torch.cat([masked[k : k + 1], *zoomed[k : k + 1]]).mean(dim=0) for k in range(len(boxes))])
    assert torch.allclose(embeddings, expected, atol=1e-5)
    hits = dict.fromkeys(("tokens", "filled"), 0)
    for image, objects in zip(images, truth):
        for name, grounder in (("tokens", tokens), ("filled", filled)):
            ranked = grounder.ground(image, ["diamond", "cross", "circle", "square", "triangle", "star"])
            tops = {d[0].boxes[0] for d in ranked if d}
            hits[name] += sum(any(box.iou(t) >= 0.5 for t in tops) for box in objects)
    assert hits["tokens"] >= hits["filled"] - 1 and hits["tokens"] >= 0.8 * sum(len(o) for o in truth)


def test_grounder_token_views_of_a_multi_vector_backbone(blip2, scenes):
    """BLIP-2's query-token embeddings (``[Q, D]`` a candidate) keep their shape through the
    masked views from tokens and the zoomed views' mean."""
    from comclip.grounding import create_grounder

    image = scenes[0][0]
    grounder = create_grounder("clip", blip2, region="multiscale", fill="background", subimage="auto", proposals="segments")
    boxes, embeddings = grounder.candidates(image)
    assert grounder.tokens and embeddings.shape[0] == len(boxes) > 0 and embeddings.dim() == 3
    assert len(grounder.ground(image, ["circle"])[0]) == len(boxes)
