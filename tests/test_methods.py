"""Named methods: the registry, layering (user over method over model over library), user
registration, and --method on the command line (score, explain, eval, methods)."""

from __future__ import annotations

import json

import pytest

from comclip.config import PipelineConfig
from comclip.errors import InputError
from comclip.methods import METHODS, PLUS, method_configs, parse_methods, register_method


def test_the_three_methods_and_their_layering():
    base = PipelineConfig.layered({"grounder": {"region": "mask"}, "entity_prompt": "a {}"})
    configs = method_configs(["clip", "comclip", "comclip-plus"], base, {"weighting": "softmax"})
    assert configs["clip"] is None
    assert configs["comclip"] == base.replace(weighting="softmax")  # the paper's: the base, unchanged
    plus = configs["comclip-plus"]
    assert all(getattr(plus, name) == value for name, value in PLUS.items() if name != "subimage_fill")
    assert (
        plus.region == "mask"
        and plus.grounder_fill == plus.subimage_fill == "background"  # one fill: a sub-image is its candidate
        and plus.entity_prompt == "a {}"
        and plus.weighting == "softmax"
    )
    assert method_configs(["comclip-plus"], PipelineConfig(), {"subimage_fill": "black"})["comclip-plus"].subimage_fill == "black"


def test_plus_keeps_a_region_mode_other_than_mask():
    plus = METHODS["comclip-plus"].config(PipelineConfig(region="patches"))
    assert plus.region == "patches" and plus.subimage_fill == PLUS["subimage_fill"] == "mean"


def test_users_register_their_own_method():
    register_method("test-softmax", {"weighting": "softmax", "subimage_fill": "blur"}, "a test method")
    try:
        assert parse_methods("clip, test-softmax") == ["clip", "test-softmax"]
        assert METHODS["test-softmax"].config(PipelineConfig()).subimage_fill == "blur"
    finally:
        METHODS._items.pop("test-softmax")
    with pytest.raises(InputError, match="unknown pipeline|unexpected|fill"):
        register_method("bad", {"subimage_fill": "pink"})
    assert "bad" not in METHODS


@pytest.mark.parametrize("value", ["", "clip,nope", ","])
def test_unknown_method_is_one_line(value):
    with pytest.raises(InputError, match="--method"):
        parse_methods(value)


def test_methods_command_lists_every_method_with_reasons(cli):
    code, out, _ = cli("methods", "--json")
    listed = {m["name"]: m for m in json.loads(out)}
    assert code == 0 and list(listed) == list(METHODS)
    assert set(PLUS) <= set(listed["comclip-plus"]["reasons"])
    code, out, _ = cli("methods")
    assert code == 0 and "comclip-plus" in out and "joint" in out


def test_score_and_explain_take_comclip_plus(cli, tmp_path):
    from comclip.sandbox.pairs import make_pair

    pair = make_pair("object-swap", 3, 0)
    image = tmp_path / "scene.png"
    pair.scenes[0].render().save(image)
    code, out, err = cli(
        "score",
        image,
        *pair.captions,
        "--model",
        "comclip/sandbox-bow",
        "--method",
        "clip,comclip,comclip-plus",
        "--details",
        "--json",
    )
    assert code == 0, err
    results = json.loads(out)["results"]
    assert all({"clip", "comclip", "comclip-plus"} <= set(r) for r in results)
    assert set(results[0]["details"]) == {"comclip", "comclip-plus"}
    assert results[0]["details"]["comclip-plus"]["parts"][0]["margin"] is not None
    code, out, err = cli(
        "explain", image, pair.captions[0], "--model", "comclip/sandbox-bow", "--method", "comclip-plus", "--json"
    )
    assert code == 0, err
    shown = json.loads(out)
    assert shown["method"] == "comclip-plus" and shown["config"]["assignment"] == "joint"
    assert shown["comclip"] == pytest.approx(results[0]["comclip-plus"])
    code, _, err = cli("explain", image, pair.captions[0], "--model", "comclip/sandbox-bow", "--method", "clip", "--json")
    assert code == 2 and "one composed method" in err


def test_eval_reports_comclip_plus_and_where_errors_come_from(cli, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli(
        "eval",
        "sandbox",
        "--model",
        "comclip/sandbox-bow",
        "--task",
        "binding,order-swap",
        "--n",
        "6",
        "--seed",
        "3",
        "--method",
        "clip,comclip,comclip-plus",
        "--out",
        out,
        "--workers",
        "0",
        "--no-cache",
        "--bootstrap",
        "0",
    )
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    runs = {r["method"]: r for r in report["runs"]}
    assert runs["comclip-plus"]["config"]["assignment"] == "joint"
    for method in ("comclip", "comclip-plus"):
        errors = runs[method]["errors"]
        assert errors["examples"] == 12
        assert errors["parse"] + errors["grounding"] + errors["parse_and_grounding"] + errors["neither"] == errors["wrong"]
        wrong = 12 - round(runs[method]["metrics"]["group"]["value"] * 12 / 100)
        assert errors["wrong"] == wrong
    assert "errors" not in runs["clip"]
    assert "clip joint" in report["grounding"]
    assert "Where errors come from" in (out / "report.md").read_text()


def test_the_app_session_scores_a_named_method_as_score_does():
    from comclip.app import AppSession
    from comclip.app.session import method_choices
    from comclip.backbones import create_backbone
    from comclip.pipeline import ComCLIP
    from comclip.sandbox.pairs import make_pair

    backbone = create_backbone("comclip/sandbox-bow", device="cpu")
    pair = make_pair("binding", 4, 0)
    session = AppSession(backbone)
    assert method_choices() == [m for m in METHODS if METHODS[m].composed]
    assert (
        session.defaults("comclip-plus")["subimage_fill"] == "background"  # the model masks candidates
        and session.defaults()["subimage_fill"] == session.config.subimage_fill
    )
    image = pair.scenes[0].render()
    import os
    import tempfile

    path = os.path.join(tempfile.mkdtemp(), "scene.png")
    image.save(path)
    scored = session.score(path, "\n".join(pair.captions), draw=False, method="comclip-plus")
    expected = ComCLIP(backbone, METHODS["comclip-plus"].config(PipelineConfig.for_backbone(backbone))).score(
        [path], list(pair.captions)
    )
    assert [r.score for r in scored.results] == pytest.approx(expected[0].tolist())
