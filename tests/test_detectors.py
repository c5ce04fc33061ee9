"""The OWLv2 grounder loads a real (tiny, random) transformers OWLv2 model and returns ranked boxes."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from comclip.errors import ModelNotFoundError
from comclip.grounding import create_grounder

from .conftest import assert_ranked_boxes_inside


@pytest.fixture(scope="module")
def tiny_owlv2_dir(tmp_path_factory):
    from transformers import CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    from comclip._hf_utils import quiet_transformers
    from comclip.testing import clip_bpe_files

    path = tmp_path_factory.mktemp("owlv2")
    vocab, merges = clip_bpe_files(path)
    tokenizer = CLIPTokenizer(str(vocab), str(merges))
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = Owlv2Config(
        text_config=dict(vocab_size=len(tokenizer), max_position_embeddings=16, **small),
        vision_config=dict(image_size=64, patch_size=16, **small),
        projection_dim=32,
    )
    with quiet_transformers():
        torch.manual_seed(0)
        model = Owlv2ForObjectDetection(config)
        with torch.no_grad():  # random heads predict zero-width boxes; make them predict real ones
            model.box_head.dense2.weight.zero_()
            model.box_head.dense2.bias.copy_(torch.tensor([0.0, 0.0, 1.0, 1.0]))
        model.save_pretrained(path)
        Owlv2Processor(
            image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}), tokenizer=tokenizer
        ).save_pretrained(path)
    return path


def test_owlv2_grounder_ranks_boxes_inside_the_image(tiny_owlv2_dir):
    grounder = create_grounder("owlv2", None, model=str(tiny_owlv2_dir), threshold=0.0, device="cpu")
    image = Image.new("RGB", (80, 60), (10, 200, 10))
    ranked = grounder.ground(image, ["circle", "square"])
    assert len(ranked) == 2
    assert all(ranked), "every query gets detections at threshold 0"
    assert_ranked_boxes_inside(ranked, 80, 60)
    assert grounder.describe()["name"] == "owlv2"


def test_detector_that_cannot_be_loaded(tmp_path):
    with pytest.raises(ModelNotFoundError, match="cannot load detector"):
        create_grounder("grounding-dino", None, model=str(tmp_path / "nothing"))
