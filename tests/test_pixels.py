"""The tensor pixel path against its PIL reference: preprocessing against the processors
themselves, each fill against its PIL form, and the embeddings of sub-images within the
issue's bound (cosine 0.01) on a model of CLIP's input size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from comclip.backbones import create_backbone
from comclip.backbones.cached import CachedEncoder
from comclip.boxes import Box
from comclip.imaging.pixels import gaussian_blur, preprocess, spec_from_hf_processor, to_tensor
from comclip.imaging.subimages import FILLS, TENSOR_FILLS, Canvas, SubimageMaker, make_subimage, render

#: One 8-bit level in CLIP's normalised units is about 0.015. The two paths' filters differ in
#: their arithmetic: nearly every input lies within two levels, a few at sharp edges further.
TWO_LEVELS, FEW, WORST = 0.031, 0.001, 0.15


def assert_close_inputs(ours: torch.Tensor, reference: torch.Tensor) -> None:
    difference = (ours - reference).abs()
    assert ours.shape == reference.shape
    assert difference.mean() < 0.005
    assert (difference > TWO_LEVELS).float().mean() < FEW
    assert difference.max() < WORST


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth random image with some edges: gradients, blobs and a few sharp rectangles."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    channels = [np.sin(x * rng.uniform(2, 9) + rng.uniform(0, 6)) * np.cos(y * rng.uniform(2, 9)) for _ in range(3)]
    pixels = (np.stack(channels, axis=-1) * 100 + 128).clip(0, 255).astype(np.uint8)
    for _ in range(6):
        x1, y1 = rng.integers(0, width - 8), rng.integers(0, height - 8)
        pixels[y1 : y1 + rng.integers(4, height // 2), x1 : x1 + rng.integers(4, width // 2)] = rng.integers(0, 256, 3)
    return Image.fromarray(pixels, mode="RGB")


def clip_processor(size: int = 224):
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


@pytest.mark.parametrize("width, height", [(640, 426), (300, 500), (224, 224), (100, 60), (1000, 230)])
def test_preprocessing_matches_the_clip_processor(width, height):
    processor = clip_processor()
    image = photo_like(width, height)
    reference = processor(images=[image], return_tensors="pt")["pixel_values"]
    assert_close_inputs(preprocess([to_tensor(image)], spec_from_hf_processor(processor)), reference)


def test_preprocessing_matches_a_squashing_processor():
    from transformers import SiglipImageProcessor

    processor = SiglipImageProcessor(size={"height": 224, "width": 224})
    spec = spec_from_hf_processor(processor)
    assert (spec.resize_mode, spec.crop) == ("squash", None)
    image = photo_like(500, 300, seed=3)
    reference = processor(images=[image], return_tensors="pt")["pixel_values"]
    assert_close_inputs(preprocess([to_tensor(image)], spec), reference)


def test_a_processor_it_cannot_describe_keeps_the_pil_path(tiny_model_dir, tmp_path):
    import shutil

    folder = tmp_path / "nearest"
    shutil.copytree(tiny_model_dir, folder)
    config_file = next(f for f in (folder / "preprocessor_config.json", folder / "processor_config.json") if f.exists())
    assert '"resample": 3' in config_file.read_text()
    config_file.write_text(config_file.read_text().replace('"resample": 3', '"resample": 0'))
    backbone = create_backbone(str(folder))
    assert backbone.pixel_spec is None and backbone.pixels == "pil" and backbone.pixel_device is None
    assert create_backbone(str(tiny_model_dir)).pixels == "torch"


def test_images_of_several_sizes_are_preprocessed_as_one_batch_in_order():
    spec = spec_from_hf_processor(clip_processor(64))
    images = [to_tensor(photo_like(w, h, seed=w)) for w, h in ((80, 60), (50, 90), (80, 60))]
    together = preprocess(images, spec)
    alone = torch.cat([preprocess([im], spec) for im in images])
    assert torch.allclose(together, alone, atol=1e-6)


@pytest.mark.parametrize("radius", [2.0, 7.3, 40.0])
def test_the_blur_is_pils_gaussian_blur(radius):
    image = photo_like(200, 150, seed=1)
    reference = to_tensor(image.filter(ImageFilter.GaussianBlur(radius))).int()
    difference = (gaussian_blur(to_tensor(image), radius).int() - reference).abs()
    assert difference.max() <= 2 and difference.float().mean() < 0.5


BOXES = [[Box(10, 5, 70.4, 60)], [Box(0, 0, 30, 40), Box(50.5, 20, 120, 90)], [Box(-5, 60, 30, 200)]]


@pytest.mark.parametrize("fill", list(TENSOR_FILLS))
@pytest.mark.parametrize("boxes", BOXES)
def test_each_tensor_fill_makes_the_pil_fills_sub_image(fill, boxes):
    image = photo_like(120, 100, seed=2)
    reference = to_tensor(make_subimage(image, boxes, fill)).int()
    ours = render(Canvas(image, "cpu"), boxes, fill).int()
    assert ours.shape == reference.shape
    tolerance = 2 if fill == "blur" else 0  # the blur's rounding; the others are exact
    assert (ours - reference).abs().max() <= tolerance


def test_a_fill_registered_only_for_pil_works_on_the_tensor_path(monkeypatch):
    def inverted(image, boxes):
        return Image.eval(image, lambda v: 255 - v)

    monkeypatch.setitem(FILLS._items, "inverted", inverted)
    image = photo_like(40, 30)
    made = SubimageMaker([image], "cpu").sub(0, [Box(0, 0, 10, 10)], "inverted")
    assert torch.equal(made, to_tensor(Image.eval(image, lambda v: 255 - v)))


@pytest.fixture(scope="module")
def clip_sized_model(tmp_path_factory):
    """A random CLIP with CLIP's input size (224) and patch (32), small otherwise."""
    from comclip.testing import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("clip224"), seed=1, image_size=224, patch_size=32, width=64)


def test_sub_image_embeddings_of_both_paths_agree_within_the_bound(clip_sized_model):
    """The issue's bound: the cosine of each sub-image's embedding between the tensor and the
    PIL path differs from 1 by at most 0.01, for every fill and the whole image."""
    image = photo_like(640, 426, seed=5)
    regions = [[Box(20, 30, 300, 400)], [Box(400, 10, 630, 200), Box(100, 250, 260, 420)], [Box(0, 0, 640, 426)]]
    embeddings = {}
    for pixels in ("torch", "pil"):
        backbone = create_backbone(str(clip_sized_model), pixels=pixels)
        maker = SubimageMaker([image], backbone.pixel_device)
        views = [maker.whole(0)] + [maker.sub(0, boxes, fill) for boxes in regions for fill in FILLS]
        embeddings[pixels] = backbone.encode_views(views)
    cosines = (embeddings["torch"] * embeddings["pil"]).sum(dim=1)
    assert cosines.min() >= 0.99, cosines


def test_the_pil_path_is_the_processors_own_and_keeps_its_cache_keys(clip_sized_model):
    backbone = create_backbone(str(clip_sized_model), pixels="pil")
    image = photo_like(320, 240, seed=6)
    inputs = backbone.image_processor(images=[image], return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        direct = torch.nn.functional.normalize(backbone.model.get_image_features(pixel_values=inputs).pooler_output, dim=-1)
    assert torch.allclose(backbone.encode_images([image]), direct, atol=1e-6)
    assert CachedEncoder(backbone).cache_key("img", "k") == f"{backbone.fingerprint}|img|k"
    backbone.pixels = "torch"
    assert CachedEncoder(backbone).cache_key("img", "k") == f"{backbone.fingerprint}+torch-pixels|img|k"
