"""Where errors come from: the per-example diagnosis (parse and grounding against gold, the
grounding margin) and the report sections built from it, against hand-made cases."""

from __future__ import annotations

import json

import numpy as np

from comclip.boxes import Box
from comclip.eval.benchmarks.datasets import WINOGROUND, Example
from comclip.eval.reports.diagnosis import attribution, diagnose, error_section, signals
from comclip.parsing import Entity, SceneGraph
from comclip.results import ComCLIPResult, Part

CIRCLE, SQUARE = Box(0, 0, 10, 10), Box(20, 20, 30, 30)
TRUTH = {
    "text": "a red circle and a blue square",
    "entities": [{"id": 0, "head": "circle", "attributes": ["red"]}, {"id": 1, "head": "square", "attributes": ["blue"]}],
    "relations": [],
}


def _result(entities, boxes, margins=(0.2, 0.3)) -> ComCLIPResult:
    graph = SceneGraph(TRUTH["text"], [Entity(n, head, head, tuple(attrs)) for n, (head, attrs) in enumerate(entities)])
    parts = [Part("entity", e[0], [b], 0.5, 0.5, [], (n,), m) for n, (e, b, m) in enumerate(zip(entities, boxes, margins))]
    return ComCLIPResult("img", TRUTH["text"], 0.3, 0.4, parts, graph)


def _example():
    return Example(
        "x", WINOGROUND, ["img"], [TRUTH["text"]], given={TRUTH["text"]: TRUTH}, boxes=((("circle", CIRCLE), ("square", SQUARE)),)
    )


def test_right_parse_and_grounding():
    result = _result([("circle", ["red"]), ("square", ["blue"])], [CIRCLE, SQUARE])
    assert diagnose(_example(), [[result]]) == {"parse_wrong": False, "grounding_wrong": False, "entities": [2, 2], "margin": 0.2}


def test_wrong_parse_and_wrong_grounding_are_told_apart():
    wrong_parse = _result([("purple", []), ("square", ["blue"])], [CIRCLE, SQUARE])
    wrong_boxes = _result([("circle", ["red"]), ("square", ["blue"])], [SQUARE, SQUARE])
    assert diagnose(_example(), [[wrong_parse]])["parse_wrong"] is True
    assert diagnose(_example(), [[wrong_parse]])["grounding_wrong"] is False  # "purple" names no true object
    assert diagnose(_example(), [[wrong_parse]])["entities"] == [1, 1]  # only "square" is checked
    assert diagnose(_example(), [[wrong_boxes]]) == {
        "parse_wrong": False,
        "grounding_wrong": True,
        "entities": [1, 2],
        "margin": 0.2,
    }


def test_a_box_of_what_shows_of_a_partly_hidden_object_grounds_it():
    """An object partly hidden is grounded by a box of its whole shape or of what shows of it
    (IoU >= 0.5 with either), and by nothing else."""
    shown = Box(0, 0, 10, 4)  # the circle's top: the rest lies behind another object
    example = _example()
    example.shown = ((shown, SQUARE),)
    on_the_part = _result([("circle", ["red"]), ("square", ["blue"])], [Box(0, 0, 10, 4.5), SQUARE])
    assert Box(0, 0, 10, 4.5).iou(CIRCLE) < 0.5 and diagnose(_example(), [[on_the_part]])["entities"] == [1, 2]
    assert diagnose(example, [[on_the_part]])["entities"] == [2, 2]
    whole = _result([("circle", ["red"]), ("square", ["blue"])], [CIRCLE, SQUARE])
    below = _result([("circle", ["red"]), ("square", ["blue"])], [Box(0, 6, 10, 10), SQUARE])
    assert diagnose(example, [[whole]])["entities"] == [2, 2] and diagnose(example, [[below]])["entities"] == [1, 2]
    example.shown = ((Box(*np.float64([0, 0, 10, 4])), SQUARE),)  # the sandbox's numbers: a record stays JSON
    assert json.loads(json.dumps(diagnose(example, [[on_the_part]]))) == {**diagnose(example, [[on_the_part]])}


def test_entities_are_counted_on_each_images_own_caption():
    """In a 2 x 2 group, where a wrong caption's entities land is no grounding error of the
    count (the image may not hold what it names), though the example's flag still sees it."""
    right = _result([("circle", ["red"]), ("square", ["blue"])], [CIRCLE, SQUARE])
    elsewhere = _result([("circle", ["red"]), ("square", ["blue"])], [SQUARE, SQUARE])
    truth = (("circle", CIRCLE), ("square", SQUARE))
    group = Example("g", WINOGROUND, ["a", "b"], ["t0", "t1"], boxes=(truth, truth))
    found = diagnose(group, [[right, elsewhere], [elsewhere, right]])
    assert found["entities"] == [4, 4] and found["grounding_wrong"] is True
    assert diagnose(group, [[elsewhere, right], [right, right]])["entities"] == [3, 4]


def test_entity_grounding_pools_the_checked_entities_per_subset():
    from comclip.eval.reports.diagnosis import entity_grounding

    def record(subset, right, checked):
        return {"status": "ok", "subset": subset, "correct": {"group": True}, "diagnosis": {"entities": [right, checked]}}

    records = [record("a", 2, 2), record("a", 1, 2), record("b", 0, 4), {"status": "failed", "subset": "b"}]
    found = entity_grounding(records, n_bootstrap=0, seed=0)["entity_grounding"]
    assert found["n"] == 8 and found["value"] == 100 * 3 / 8
    assert found["subsets"]["a"]["value"] == 75.0 and found["subsets"]["b"] == {**found["subsets"]["b"], "value": 0.0, "n": 4}
    assert entity_grounding([record("a", 1, 1)], 0, 0)["entity_grounding"].get("subsets") is None  # one subset: no split
    assert entity_grounding([{"status": "ok", "diagnosis": {}}], 0, 0) == {}


def test_no_gold_gives_only_the_margin():
    bare = Example("x", WINOGROUND, ["img"], [TRUTH["text"]])
    assert diagnose(bare, [[_result([("circle", []), ("square", [])], [CIRCLE, SQUARE], (0.5, None))]]) == {"margin": 0.5}


def _record(correct, **diagnosis):
    return {
        "status": "ok",
        "correct": {"group": correct},
        "diagnosis": diagnosis,
        "flags": {"shared_box": 1} if not correct else {},
    }


def test_attribution_counts_each_wrong_example_once():
    records = [
        _record(False, parse_wrong=True, grounding_wrong=False),
        _record(False, parse_wrong=False, grounding_wrong=True),
        _record(False, parse_wrong=True, grounding_wrong=True),
        _record(False, parse_wrong=False, grounding_wrong=False),
        _record(True, parse_wrong=True, grounding_wrong=True),
    ]
    found = attribution(records, "group")
    assert (found["wrong"], found["examples"]) == (4, 5)
    assert (found["parse"], found["grounding"], found["parse_and_grounding"], found["neither"]) == (1, 1, 1, 1)
    lines = error_section({"runs": [{"method": "m", "errors": found}]})
    assert any("| m | group | 4 / 5 | 1 | 1 | 1 | 1 |" in line for line in lines)


def test_signals_without_gold():
    records = [_record(False, margin=0.1), _record(False, margin=0.3), _record(True, margin=0.5)]
    assert attribution(records, "group") is None
    found = signals(records, "group")
    assert found["wrong"] == {"n": 2, "flags": {"shared_box": 100.0}, "median_margin": 0.2}
    assert found["right"]["median_margin"] == 0.5 and found["right"]["flags"] == {}
    assert "Signals of wrong and right examples" in "\n".join(error_section({"runs": [{"method": "m", "signals": found}]}))


def test_eval_without_gold_reports_signals(cli, tmp_path, tiny_model_dir, rgb_image_path):
    import json

    data = tmp_path / "data.jsonl"
    rows = [
        {
            "image": str(rgb_image_path),
            "positive": "a red square left of a blue square",
            "negatives": ["a blue square left of a red square"],
        },
        {"image": str(rgb_image_path), "positive": "a red dog", "negatives": ["a blue cat"]},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    code, _, err = cli(
        "eval",
        "jsonl",
        "--data",
        data,
        "--model",
        tiny_model_dir,
        "--out",
        out,
        "--workers",
        "0",
        "--no-cache",
        "--bootstrap",
        "0",
        "--method",
        "clip,comclip",
    )
    assert code == 0, err
    runs = {r["method"]: r for r in json.loads((out / "report.json").read_text())["runs"]}
    found = runs["comclip"]["signals"]
    assert found["wrong"]["n"] + found["right"]["n"] == 2 and "errors" not in runs["comclip"] and "signals" not in runs["clip"]
    records = [json.loads(line) for line in (out / "per_example.jsonl").read_text().splitlines()]
    assert all("margin" in r["diagnosis"] for r in records if r["method"] == "comclip")
