"""Spatial relations checked on grounded boxes: the rules' table, the score it adds, the
pipeline's flags, and the goal on the sandbox's order swaps with oracle boxes and parses."""

from __future__ import annotations

import json
import math

import pytest

from comclip.boxes import Box
from comclip.composition.geometry import RULES, geometry_bonus, relation_score, spatial_rule

W = H = 100.0
LEFT, RIGHT = Box(5, 40, 25, 60), Box(70, 40, 90, 60)
TOP, BOTTOM = Box(40, 5, 60, 25), Box(40, 70, 60, 90)
CUP, TABLE = Box(40, 30, 60, 50), Box(20, 50, 80, 70)  # the cup stands on the table
DOG, CAR = Box(45, 55, 60, 90), Box(20, 40, 80, 80)  # overlapping; the dog's bottom edge is lower


@pytest.mark.parametrize(
    "predicate, subject, obj, truth",
    [
        ("to the left of", LEFT, RIGHT, True),
        ("to the left of", RIGHT, LEFT, False),
        ("left of", LEFT, RIGHT, True),
        ("to the right of", RIGHT, LEFT, True),
        ("to the right of", LEFT, RIGHT, False),
        ("above", TOP, BOTTOM, True),
        ("above", BOTTOM, TOP, False),
        ("below", BOTTOM, TOP, True),
        ("below", TOP, BOTTOM, False),
        ("on", CUP, TABLE, True),
        ("on top of", TABLE, CUP, False),
        ("sit on", CUP, TABLE, True),
        ("under", TABLE, CUP, True),
        ("beneath", CUP, TABLE, False),
        ("on", LEFT, RIGHT, False),
        ("next to", CUP, TABLE, True),
        ("next to", LEFT, RIGHT, False),
        ("beside", Box(10, 10, 20, 20), Box(21, 10, 30, 20), True),
        ("inside", Box(42, 42, 48, 48), CAR, True),
        ("inside", CAR, Box(42, 42, 48, 48), False),
        ("in", CAR, Box(42, 42, 48, 48), True),
        ("in", LEFT, RIGHT, False),
        ("in front of", DOG, CAR, True),
        ("behind", DOG, CAR, False),
        ("behind", CAR, DOG, True),
    ],
)
def test_each_rule_tells_true_from_false(predicate, subject, obj, truth):
    score = relation_score(predicate, [subject], [obj], W, H)
    assert 0.0 <= score <= 1.0
    assert (score > 0.8) if truth else (score < 0.2), score


def test_inverse_predicates_are_the_rule_with_places_swapped():
    pairs = ((LEFT, RIGHT), (TOP, BOTTOM), (CUP, TABLE))
    predicates = (("to the left of", "to the right of"), ("above", "below"), ("on", "under"))
    for n, (a, b) in enumerate(pairs):
        for m, (predicate, inverse) in enumerate(predicates):
            score = relation_score(predicate, [a], [b], W, H)
            assert relation_score(inverse, [b], [a], W, H) == pytest.approx(score)
            if n == m:  # the pair the rule is about: decided, and the inverse is not the rule itself
                assert score is not None and score > 0.8 and relation_score(inverse, [a], [b], W, H) < 0.2


def test_what_boxes_cannot_say_gives_no_evidence():
    assert relation_score("in front of", [LEFT], [RIGHT], W, H) is None  # depth without overlap
    assert relation_score("to the left of", [LEFT], [LEFT], W, H) is None  # one box for both entities
    assert relation_score("holding", [LEFT], [RIGHT], W, H) is None and spatial_rule("with") is None
    assert spatial_rule("stand next to") == RULES["next to"] and spatial_rule("  To The LEFT of ") == RULES["to the left of"]


def test_an_entity_grounded_to_several_boxes_is_their_bounding_box():
    score = relation_score("to the left of", [Box(0, 0, 10, 10), Box(0, 80, 10, 90)], [RIGHT], W, H)
    assert score == pytest.approx(relation_score("to the left of", [Box(0, 0, 10, 90)], [RIGHT], W, H))


def test_the_bonus_is_the_weighted_mean_offset_from_a_half():
    assert geometry_bonus([], 3.0) == 0.0
    assert geometry_bonus([0.9, 0.3], 2.0) == pytest.approx(2.0 * ((0.9 - 0.5) + (0.3 - 0.5)) / 2)
    assert math.isclose(geometry_bonus([0.5], 10.0), 0.0)


@pytest.fixture(scope="module")
def order_swap_pair():
    from comclip.sandbox.pairs import make_pair

    return make_pair("order-swap", 200, 0)


def oracle_pipeline(backbone, pair, **options):
    from comclip import ComCLIP
    from comclip.grounding.oracle import OracleGrounder
    from comclip.parsing.given import GivenParser

    grounder = OracleGrounder(known=[(s.render(), [(o.shape, o.box) for o in s.objects]) for s in pair.scenes])
    return ComCLIP(backbone, parser=GivenParser(dict(zip(pair.captions, pair.graphs))), grounder=grounder, **options)


def test_geometry_penalises_the_swapped_caption_and_leaves_the_paper_alone(tiny_backbone, order_swap_pair):
    images = [s.render() for s in order_swap_pair.scenes]
    off = oracle_pipeline(tiny_backbone, order_swap_pair).score_details(images, list(order_swap_pair.captions))
    on = oracle_pipeline(tiny_backbone, order_swap_pair, relation_check="geometry").score_details(
        images, list(order_swap_pair.captions)
    )
    for i in range(2):
        for j in range(2):
            (g,) = [check[3] for check in on[i][j].spatial]
            assert (g > 0.5) == (i == j)
            assert on[i][j].score == pytest.approx(off[i][j].score + (g - 0.5))
            assert off[i][j].spatial == () and on[i][j].to_dict()["spatial"][0]["score"] == g
        assert on[i][i].score > on[i][1 - i].score and on[i][i].score > on[1 - i][i].score


def test_an_unverifiable_relation_is_flagged_and_adds_nothing(tiny_backbone, order_swap_pair):
    from comclip import ComCLIP
    from comclip.grounding.oracle import OracleGrounder
    from comclip.parsing.given import GivenParser

    image = order_swap_pair.scenes[0].render()
    caption = order_swap_pair.captions[0]
    blind = dict(parser=GivenParser({caption: order_swap_pair.graphs[0]}), grounder=OracleGrounder())  # grounds nothing
    on = ComCLIP(tiny_backbone, relation_check="geometry", **blind).explain(image, caption)
    off = ComCLIP(tiny_backbone, **blind).explain(image, caption)
    assert "relation_unverified" in on.flags and "not_grounded" in on.flags
    assert on.score == off.score and on.spatial[0][3] is None


def test_sandbox_examples_carry_their_true_graphs_for_the_given_parser(cli, tiny_model_dir, tmp_path):
    code, _, err = cli(
        "eval",
        "sandbox",
        "--task",
        "order-swap,binding",
        "--n",
        "3",
        "--seed",
        "5",
        "--model",
        tiny_model_dir,
        "--parser",
        "given",
        "--relation-check",
        "geometry",
        "--out",
        tmp_path / "run",
        "--no-cache",
    )
    assert code == 0, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert [(r["n_scored"], r["n_failed"]) for r in report["runs"]] == [(6, 0), (6, 0)]
    assert report["runs"][1]["config"]["relation_check"] == "geometry"


@pytest.mark.parametrize("model", ["comclip/sandbox", "comclip/sandbox-bow"])
def test_order_swaps_are_solved_with_oracle_boxes_and_parses(model):
    """The rules' check: with the true boxes and graphs, order swaps >= 98% on held-out seed 200."""
    from comclip.backbones import create_backbone
    from comclip.sandbox.pairs import minimal_pairs

    backbone, correct = create_backbone(model), 0
    pairs = minimal_pairs("order-swap", 200, 100)
    for pair in pairs:
        s = oracle_pipeline(backbone, pair, relation_check="geometry").score(
            [sc.render() for sc in pair.scenes], list(pair.captions)
        )
        correct += bool(s[0, 0] > s[0, 1] and s[1, 1] > s[1, 0] and s[0, 0] > s[1, 0] and s[1, 1] > s[0, 1])
    assert correct >= 98
