"""The typed pipeline configuration: explicit options over a model's comclip.json over the
library's defaults, for every option alike; registries as the one place a choice is added."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from PIL import Image

from comclip import ComCLIP
from comclip.backbones import create_backbone
from comclip.config import PipelineConfig, field_names
from comclip.errors import InputError
from comclip.subimages import FILLS

#: Two valid values per option: the first differs from the library default.
CHOICES = {
    "parser": ("llm", "given"), "grounder": ("regions", "owlv2"), "weighting": ("softmax", "sum"),
    "temperature": (0.5, 0.02), "fill": ("mean", "blur"), "score_mode": ("evidence", "evidence-min"),
    "evidence_weight": (0.5, 2.0), "evidence_relations": (True, False), "ground_by": ("phrase", "head"),
    "union_margin": (0.1, 0.2), "use_relations": (False, True), "entity_prompt": ("a {}", "the {}"),
    "grounder_prompt": ("a {}", "an image of {}"), "proposals": ("segments", "grid+segments"),
    "region": ("mask", "crop"), "grounder_fill": ("black", "blur"), "regions": ("r.json", "s.json"),
    "precision": ("amp_bf16", "fp32"), "pixels": ("pil", "torch"),
    "relations": ("geometry", "off"), "relation_weight": (2.0, 0.5), "assignment": ("joint", "argmax"), "attribute_weight": (0.5, 1.0),
}


def test_every_field_has_choices_in_this_test():
    assert set(CHOICES) == field_names()


@pytest.mark.parametrize("name", sorted(CHOICES))
def test_explicit_beats_model_defaults_beats_library_defaults(name):
    model_value, explicit_value = CHOICES[name]
    library = getattr(PipelineConfig(), name)
    assert model_value != library
    assert getattr(PipelineConfig.layered({name: model_value}), name) == model_value
    assert getattr(PipelineConfig.layered({name: model_value}, **{name: explicit_value}), name) == explicit_value
    assert getattr(PipelineConfig.layered({}), name) == library


def test_nested_grounder_defaults_of_comclip_json_are_fields():
    defaults = {"grounder": {"prompt": "a {}", "proposals": "segments", "region": "mask", "fill": "blur"},
                "entity_prompt": "a {}", "_note": "ignored"}
    config = PipelineConfig.layered(defaults, grounder_fill="black")
    assert (config.grounder_prompt, config.proposals, config.region, config.entity_prompt) == ("a {}", "segments", "mask", "a {}")
    assert config.grounder_fill == "black"  # an explicit fill wins over the model's (it did not, before)
    assert config.grounder_options() == {"prompt": "a {}", "proposals": "segments", "region": "mask", "fill": "black"}


@pytest.mark.parametrize("values, message", [
    ({"temperature": math.nan}, "finite"), ({"temperature": 0.0}, "positive"), ({"evidence_weight": math.inf}, "finite"),
    ({"union_margin": -0.1}, "0 or more"), ({"weighting": "max"}, "unknown weighting"), ({"fill": "pink"}, "unknown fill"),
    ({"region": "everywhere"}, "unknown region"), ({"entity_prompt": "no slot"}, "needs a {}"),
    ({"precision": "half"}, "unknown precision"), ({"pixels": "gpu"}, "unknown pixels"),
    ({"relations": "depth"}, "unknown relations"), ({"relation_weight": math.nan}, "finite"),
])
def test_bad_values_are_refused_naming_the_option(values, message):
    with pytest.raises(InputError, match=message):
        PipelineConfig(**values)


def test_unknown_model_default_is_refused():
    with pytest.raises(InputError, match="unknown option 'colour'"):
        PipelineConfig.layered({"colour": "red"})
    with pytest.raises(InputError, match="unknown grounder option"):
        PipelineConfig.layered({"grounder": {"size": 3}})


def test_round_trip_through_a_dict():
    config = PipelineConfig(weighting="softmax", temperature=0.05, union_margin=0.02)
    assert PipelineConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.fixture(scope="module")
def model_with_defaults(tiny_model_dir, tmp_path_factory):
    """The tiny CLIP with a comclip.json, as the shipped sandbox models carry one."""
    folder = tmp_path_factory.mktemp("with-defaults") / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "comclip.json").write_text(json.dumps({"grounder": {"prompt": "a {}", "region": "mask"}, "fill": "blur"}))
    return folder


def test_pipeline_takes_model_defaults_unless_told_otherwise(model_with_defaults):
    backbone = create_backbone(str(model_with_defaults))
    plain = ComCLIP(backbone)
    assert (plain.grounder.prompt, plain.grounder.region, plain.config.fill) == ("a {}", "mask", "blur")
    told = ComCLIP(backbone, fill="black", grounder_options={"region": "crop", "prompt": "the {}"})
    assert (told.grounder.prompt, told.grounder.region, told.config.fill) == ("the {}", "crop", "black")


def test_cli_records_the_layered_config(cli, model_with_defaults, rgb_image_path):
    code, out, err = cli("explain", rgb_image_path, "a red square", "--model", model_with_defaults, "--json")
    assert code == 0, err
    config = json.loads(out)["config"]
    assert (config["fill"], config["grounder"]["region"], config["grounder"]["prompt"]) == ("blur", "mask", "a {}")
    code, out, err = cli("explain", rgb_image_path, "a red square", "--model", model_with_defaults, "--json",
                         "--fill", "black", "--region", "crop")
    assert code == 0, err
    config = json.loads(out)["config"]
    assert (config["fill"], config["grounder"]["region"]) == ("black", "crop")


def test_a_result_carries_the_config_that_made_it(tiny_backbone, rgb_image_path):
    result = ComCLIP(tiny_backbone, fill="mean").explain(rgb_image_path, "a red square")
    assert result.config.fill == "mean" and result.config == ComCLIP(tiny_backbone, fill="mean").config


def test_a_fill_registered_once_is_a_choice_everywhere(monkeypatch, tiny_backbone, rgb_image_path):
    """A new fill is one registered function: the config, the pipeline and the CLI take it."""
    from comclip.cli import build_parser

    def grey(image, boxes):
        kept = FILLS["black"](image, boxes)
        pixels = np.asarray(kept).copy()
        pixels[np.asarray(FILLS["black"](Image.new("RGB", image.size, (255, 255, 255)), boxes)) == 0] = 128
        return Image.fromarray(pixels)

    monkeypatch.setitem(FILLS._items, "grey", grey)
    assert PipelineConfig(fill="grey").fill == "grey"
    result = ComCLIP(tiny_backbone, fill="grey").explain(rgb_image_path, "a red square")
    black = ComCLIP(tiny_backbone, fill="black").explain(rgb_image_path, "a red square")
    assert result.parts and result.parts[0].similarity != black.parts[0].similarity
    args = build_parser().parse_args(["score", str(rgb_image_path), "x", "--fill", "grey"])
    assert args.fill == "grey"


def test_from_pretrained_builds_the_backbone_at_the_configured_precision(tiny_model_dir):
    model = ComCLIP.from_pretrained(str(tiny_model_dir), precision="amp_bf16", weighting="softmax")
    assert model.backbone.precision == model.config.precision == "amp_bf16" and model.config.weighting == "softmax"
    configured = ComCLIP.from_pretrained(str(tiny_model_dir), config=PipelineConfig(precision="amp_bf16", fill="mean"))
    assert configured.backbone.precision == "amp_bf16" and configured.config.fill == "mean"
