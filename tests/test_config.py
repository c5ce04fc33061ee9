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
from comclip.imaging.subimages import FILLS

#: Two valid values per option: the first differs from the library default.
CHOICES = {
    "parser": ("llm", "given"),
    "grounder": ("regions", "owlv2"),
    "weighting": ("softmax", "sum"),
    "temperature": (0.5, 0.02),
    "subimage_fill": ("mean", "blur"),
    "subimage": ("tokens", "auto"),
    "score_mode": ("evidence", "evidence-min"),
    "evidence_weight": (0.5, 2.0),
    "evidence_relations": (True, False),
    "ground_by": ("phrase", "head"),
    "union_margin": (0.1, 0.2),
    "relation_subimages": (False, True),
    "entity_prompt": ("a {}", "the {}"),
    "grounder_prompt": ("a {}", "an image of {}"),
    "proposals": ("segments", "grid+segments"),
    "region": ("mask", "crop"),
    "grounder_fill": ("black", "blur"),
    "regions_file": ("r.json", "s.json"),
    "relation_check": ("geometry", "off"),
    "relation_weight": (2.0, 0.5),
    "assignment": ("joint", "argmax"),
    "attribute_weight": (0.5, 1.0),
}


def test_every_field_has_choices_in_this_test():
    assert set(CHOICES) == field_names()


@pytest.mark.parametrize("name", sorted(CHOICES))
def test_explicit_beats_model_defaults_beats_library_defaults(name):
    from comclip.config import options

    model_value, explicit_value = CHOICES[name]
    library = getattr(PipelineConfig(), name)
    assert model_value != library
    assert getattr(PipelineConfig.layered({}, **{name: explicit_value}), name) == explicit_value
    assert getattr(PipelineConfig.layered({}), name) == library
    if not options()[name].from_model:  # what could reach the network or run code: never from a model folder
        with pytest.raises(InputError, match="cannot be set by a model folder"):
            PipelineConfig.layered({name: model_value})
        return
    assert getattr(PipelineConfig.layered({name: model_value}), name) == model_value
    assert getattr(PipelineConfig.layered({name: model_value}, **{name: explicit_value}), name) == explicit_value


def test_nested_grounder_defaults_of_comclip_json_are_fields():
    defaults = {
        "grounder": {"prompt": "a {}", "proposals": "segments", "region": "mask", "fill": "blur"},
        "entity_prompt": "a {}",
        "_note": "ignored",
    }
    config = PipelineConfig.layered(defaults, grounder_fill="black")
    assert (config.grounder_prompt, config.proposals, config.region, config.entity_prompt) == ("a {}", "segments", "mask", "a {}")
    assert config.grounder_fill == "black"  # an explicit fill wins over the model's (it did not, before)
    assert config.grounder_options() == {
        "prompt": "a {}",
        "proposals": "segments",
        "region": "mask",
        "fill": "black",
        "subimage": "fill",
    }


@pytest.mark.parametrize(
    "values, message",
    [
        ({"temperature": math.nan}, "finite"),
        ({"temperature": 0.0}, "positive"),
        ({"evidence_weight": math.inf}, "finite"),
        ({"union_margin": -0.1}, "0 or more"),
        ({"weighting": "max"}, "unknown weighting"),
        ({"subimage_fill": "pink"}, "unknown fill"),
        ({"region": "everywhere"}, "unknown region"),
        ({"entity_prompt": "no slot"}, "needs exactly one {}"),
        ({"relation_subimages": "no"}, "true or false"),
        ({"grounder_prompt": 3}, "must be a string"),
        ({"relation_check": "depth"}, "unknown relation_check"),
        ({"relation_weight": math.nan}, "finite"),
        ({"subimage": "pixels"}, "subimage"),
        ({"subimage": "tokens", "subimage_fill": "crop"}, "one colour"),
    ],
)
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
    (folder / "comclip.json").write_text(json.dumps({"grounder": {"prompt": "a {}", "region": "mask"}, "subimage_fill": "blur"}))
    return folder


def test_pipeline_takes_model_defaults_unless_told_otherwise(model_with_defaults):
    backbone = create_backbone(str(model_with_defaults))
    plain = ComCLIP(backbone)
    assert (plain.grounder.prompt, plain.grounder.region, plain.config.subimage_fill) == ("a {}", "mask", "blur")
    told = ComCLIP(backbone, subimage_fill="black", grounder_options={"region": "crop", "prompt": "the {}"})
    assert (told.grounder.prompt, told.grounder.region, told.config.subimage_fill) == ("the {}", "crop", "black")


def test_cli_records_the_layered_config(cli, model_with_defaults, rgb_image_path):
    code, out, err = cli("explain", rgb_image_path, "a red square", "--model", model_with_defaults, "--json")
    assert code == 0, err
    config = json.loads(out)["config"]
    assert (config["subimage_fill"], config["grounder"]["region"], config["grounder"]["prompt"]) == ("blur", "mask", "a {}")
    code, out, err = cli(
        "explain",
        rgb_image_path,
        "a red square",
        "--model",
        model_with_defaults,
        "--json",
        "--subimage-fill",
        "black",
        "--region",
        "crop",
    )
    assert code == 0, err
    config = json.loads(out)["config"]
    assert (config["subimage_fill"], config["grounder"]["region"]) == ("black", "crop")


def test_a_result_carries_the_config_that_made_it(tiny_backbone, rgb_image_path):
    result = ComCLIP(tiny_backbone, subimage_fill="mean").explain(rgb_image_path, "a red square")
    assert result.config.subimage_fill == "mean" and result.config == ComCLIP(tiny_backbone, subimage_fill="mean").config


def test_a_fill_registered_once_is_a_choice_everywhere(monkeypatch, tiny_backbone, rgb_image_path):
    """A new fill is one registered function: the config, the pipeline and the CLI take it."""
    from comclip.cli import build_parser

    def grey(image, boxes):
        kept = FILLS["black"](image, boxes)
        pixels = np.asarray(kept).copy()
        pixels[np.asarray(FILLS["black"](Image.new("RGB", image.size, (255, 255, 255)), boxes)) == 0] = 128
        return Image.fromarray(pixels)

    monkeypatch.setitem(FILLS._items, "grey", grey)
    assert PipelineConfig(subimage_fill="grey").subimage_fill == "grey"
    result = ComCLIP(tiny_backbone, subimage_fill="grey").explain(rgb_image_path, "a red square")
    black = ComCLIP(tiny_backbone, subimage_fill="black").explain(rgb_image_path, "a red square")
    assert result.parts and result.parts[0].similarity != black.parts[0].similarity
    args = build_parser().parse_args(["score", str(rgb_image_path), "x", "--subimage-fill", "grey"])
    assert args.subimage_fill == "grey"


def test_from_pretrained_builds_the_backbone_at_the_precision_asked(tiny_model_dir):
    """Precision and pixel path are the backbone's state, owned by it alone (not config fields)."""
    model = ComCLIP.from_pretrained(str(tiny_model_dir), precision="amp_bf16", weighting="softmax")
    assert model.backbone.precision == "amp_bf16" and model.config.weighting == "softmax"
    assert model.describe()["precision"] == "amp_bf16" and not hasattr(model.config, "precision")
    with pytest.raises(InputError, match="belong to the backbone"):
        ComCLIP(model.backbone, precision="fp32")


def _help(command: str) -> str:
    import argparse

    from comclip.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[command].format_help()


def test_every_field_is_a_flag_an_app_row_and_described(tiny_backbone):
    """Options are declared once: every field is in ``score --help``, ``describe()`` and the app's table."""
    from comclip.app.session import Scored
    from comclip.app.tables import config_html
    from comclip.cli.options import pipeline_flags

    help_text = _help("score")
    described = ComCLIP(tiny_backbone).describe()
    page = config_html(Scored(None, [], [], []))
    for name in field_names():
        assert pipeline_flags(name)[0] in help_text, name
        assert name in described, name
        assert f'data-option="{name}"' in page, name


def test_a_field_declared_in_a_test_needs_no_other_edit(monkeypatch, tiny_backbone):
    """A new PipelineConfig field, declared with its Option, is validated, a flag (parsed into
    the config), read from a model's comclip.json, described and shown by the app."""
    import dataclasses

    import comclip.config as config_module
    from comclip.app.session import Scored
    from comclip.app.tables import config_html
    from comclip.cli import build_parser
    from comclip.cli.options import pipeline_config

    extended = dataclasses.make_dataclass(
        "PipelineConfig",
        [("glow", float, config_module.option("how much the sub-images glow", 0.0, kind="number", bound="at_least_zero"))],
        bases=(PipelineConfig,),
        frozen=True,
    )
    monkeypatch.setattr(config_module, "PipelineConfig", extended)
    args = build_parser().parse_args(["score", "x.png", "a dog", "--glow", "0.5"])
    assert pipeline_config(args).glow == 0.5
    assert extended.layered({"glow": 0.25}).glow == 0.25
    with pytest.raises(InputError, match="glow must be 0 or more"):
        extended(glow=-1.0)
    assert ComCLIP(tiny_backbone, extended()).describe()["glow"] == 0.0
    assert 'data-option="glow"' in config_html(Scored(None, [], [], []))


@pytest.mark.parametrize(
    "old, new, value",
    [
        ("fill", "subimage_fill", "mean"),
        ("relations", "relation_check", "geometry"),
        ("regions", "regions_file", "r.json"),
        ("use_relations", "relation_subimages", False),
    ],
)
def test_renamed_options_keep_their_former_names_with_a_deprecation_note(old, new, value, capsys):
    """One word per concept: a renamed field still reads under its former name as a keyword,
    a comclip.json key and an attribute (DeprecationWarning), and a renamed flag still parses."""
    from comclip.cli import build_parser
    from comclip.cli.options import pipeline_config

    with pytest.warns(DeprecationWarning, match=new):
        assert getattr(PipelineConfig(**{old: value}), new) == value
    from comclip.config import options

    if options()[new].from_model:  # a comclip.json key too (a regions file never is)
        with pytest.warns(DeprecationWarning):
            assert getattr(PipelineConfig.layered({old: value}), new) == value
    with pytest.warns(DeprecationWarning):
        assert getattr(PipelineConfig(**{new: value}), old) == value
    with pytest.raises(InputError, match="same option"):
        PipelineConfig(**{old: value, new: value})
    if old != "use_relations":  # a flag only since it was renamed
        args = build_parser().parse_args(["score", "x.png", "a dog", f"--{old}", str(value)])
        assert getattr(pipeline_config(args), new) == value
        assert f"--{old} is deprecated; use --{new.replace('_', '-')}" in capsys.readouterr().err


@pytest.mark.parametrize("template", ["{} {}", "{} {0}", "a {x}", "{!r}", "{:>5}", "{", "a } b {}"])
def test_a_template_takes_exactly_one_plain_entity_field(template, cli, tiny_model_dir, rgb_image_path):
    """``"{} {}"`` or ``"{} {0}"`` once failed mid-run (an IndexError) or repeated the entity:
    every template takes one ``{}``, from a flag, the API or a model's comclip.json."""
    with pytest.raises(InputError, match="entity_prompt"):
        PipelineConfig(entity_prompt=template)
    with pytest.raises(InputError, match="grounder_prompt"):
        PipelineConfig.layered({"grounder": {"prompt": template}})
    code, _, err = cli(
        "score", rgb_image_path, "a red square", "--model", tiny_model_dir, "--method", "comclip", "--entity-prompt", template
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "entity" in err and template in err, err
    assert PipelineConfig(entity_prompt="{{literal}} a {}").entity_prompt.format("dog") == "{literal} a dog"


def test_none_is_a_value_only_where_the_default_is_none(tiny_backbone):
    """``PipelineConfig(weighting=None)`` once passed and failed mid-run; options whose default
    is None ("the model's", "top box only") still take it. A 0 x 0 image is one line too."""
    from comclip.backbones.runtime import RuntimeOptions
    from comclip.eval.runs.options import EvalOptions

    for make, name in (
        (lambda: PipelineConfig(weighting=None), "weighting"),
        (lambda: RuntimeOptions(batch_size=None), "batch_size"),
    ):
        with pytest.raises(InputError, match=f"{name} cannot be None"):
            make()
    with pytest.raises(InputError, match="n_bootstrap cannot be None"):
        EvalOptions(n_bootstrap=None)
    assert PipelineConfig(temperature=None, region=None, union_margin=None).temperature is None
    with pytest.raises(InputError, match="has no pixels"):
        ComCLIP(tiny_backbone).score([Image.new("RGB", (0, 0))], ["a red square"])
