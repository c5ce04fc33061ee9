"""ComCLIP end to end on a real (tiny) CLIP: shapes, the formula against a hand computation,
grounding by head noun, fallbacks, batching, and the CLI on real COCO photos."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from comclip import ComCLIP
from comclip.backbones import create_backbone
from comclip.composition import make_subimage
from comclip.errors import InputError
from comclip.grounding import Box, Detection, Grounder
from comclip.results import NOT_GROUNDED

from .conftest import assert_ranked_boxes_inside, shared_data


def _scene(path, circle=(220, 30, 30), square=(30, 60, 220)):
    img = Image.new("RGB", (96, 64), (128, 128, 128))
    draw = ImageDraw.Draw(img)
    draw.ellipse((8, 16, 40, 48), fill=circle)
    draw.rectangle((56, 16, 88, 48), fill=square)
    img.save(path)
    return path


CIRCLE_BOX, SQUARE_BOX = [8, 16, 41, 49], [56, 16, 89, 49]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    return [_scene(folder / "a.png"), _scene(folder / "b.png", circle=(30, 60, 220), square=(220, 30, 30))]


@pytest.fixture(scope="module")
def regions_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("regions") / "regions.json"
    path.write_text(json.dumps({"circle": [CIRCLE_BOX], "square": [SQUARE_BOX]}))
    return path


class RecordingGrounder(Grounder):
    """Returns fixed boxes and records the queries it was asked."""

    name = "recording"

    def __init__(self):
        self.queries = []

    def ground(self, image, queries, source=None):
        self.queries.append(list(queries))
        boxes = {"circle": Box(*CIRCLE_BOX), "square": Box(*SQUARE_BOX)}
        return [[Detection((boxes[q],), 1.0, q)] if q in boxes else [] for q in queries]


def test_score_matrix_shape_and_clip_parts(tiny_backbone, scenes):
    model = ComCLIP(tiny_backbone)
    texts = ["a red circle and a blue square", "a blue circle and a red square", "it is"]
    scores = model.score(scenes, texts)
    assert scores.shape == (2, 3)
    details = model.score_details(scenes, texts)
    clip = tiny_backbone.similarity(scenes, texts)
    for i in range(2):
        for j in range(3):
            assert details[i][j].score == pytest.approx(float(scores[i, j]))
            assert details[i][j].clip == pytest.approx(float(clip[i, j]), abs=1e-6)


def test_pipeline_equals_hand_computation(tiny_backbone, scenes):
    """Compose by hand from the backbone's own embeddings; the pipeline must agree to 1e-6."""
    grounder = RecordingGrounder()
    model = ComCLIP(tiny_backbone, grounder=grounder, weighting="softmax")
    text = "a red circle next to a blue square"
    result = model.explain(scenes[0], text)
    image = Image.open(scenes[0]).convert("RGB")
    circle, square = [Box(*CIRCLE_BOX)], [Box(*SQUARE_BOX)]
    parts = [(circle, "red circle"), (square, "blue square"), (circle + square, "next to")]
    subs = tiny_backbone.encode_images([make_subimage(image, boxes, "black") for boxes, _ in parts]).double().numpy()
    phrases = tiny_backbone.encode_texts([p for _, p in parts]).double().numpy()
    v_global = tiny_backbone.encode_images([image])[0].double().numpy()
    caption = tiny_backbone.encode_texts([text])[0].double().numpy()
    s = (subs * phrases).sum(axis=1)
    e = np.exp(s * tiny_backbone.logit_scale - (s * tiny_backbone.logit_scale).max())
    w = e / e.sum()
    v = v_global + (w[:, None] * subs).sum(axis=0)
    expected = float(v / np.linalg.norm(v) @ caption)
    assert result.score == pytest.approx(expected, abs=1e-6)
    assert [p.phrase for p in result.parts] == ["red circle", "blue square", "next to"]
    assert [p.kind for p in result.parts] == ["entity", "entity", "relation"]
    np.testing.assert_allclose([p.similarity for p in result.parts], s, atol=1e-6)
    np.testing.assert_allclose([p.weight for p in result.parts], w, atol=1e-6)
    assert result.parts[2].boxes == circle + square  # predicate = union of subject and object


def test_entities_are_grounded_by_head_noun_and_scored_by_phrase(tiny_backbone, scenes):
    grounder = RecordingGrounder()
    model = ComCLIP(tiny_backbone, grounder=grounder)
    result = model.explain(scenes[0], "a red circle and a blue square")
    assert grounder.queries == [["circle", "square"]]  # not "red circle": that would defeat the purpose
    assert [p.phrase for p in result.parts] == ["red circle", "blue square"]


def test_each_image_is_grounded_once_for_all_captions(tiny_backbone, scenes):
    grounder = RecordingGrounder()
    ComCLIP(tiny_backbone, grounder=grounder).score(scenes, ["a red circle", "a blue circle", "a square and a circle"])
    assert len(grounder.queries) == 2  # one call per image
    assert grounder.queries[0] == ["circle", "square"]  # distinct heads across captions


def test_caption_without_entities_is_its_own_entity_on_the_whole_image(tiny_backbone, scenes):
    result = ComCLIP(tiny_backbone).explain(scenes[0], "it is")
    assert result.parts == [] and result.flags == ("no_entities",)
    assert result.score == result.clip  # the faithful mode: cos(normalize(2 v), c) = cos(v, c)
    assert "its own entity" in result.fallback


class _NowhereGrounder(Grounder):
    name = "nowhere"

    def ground(self, image, queries, source=None):
        return [[] for _ in queries]


@pytest.mark.parametrize("mode", ["comclip", "evidence", "evidence-min"])
def test_a_caption_that_does_not_parse_is_scored_on_the_same_scale(tiny_backbone, scenes, mode):
    """A parse-less caption scores exactly as a caption parsed into one entity (its own text)
    grounded to the whole image would, so falling back can neither win nor lose a comparison
    by changing scale (before, evidence gave it the plain CLIP cosine, parsed captions ~1 more)."""
    from comclip.parsing.given import GivenParser

    text = "it is"
    as_entity = GivenParser({text: {"entities": [{"id": 0, "head": text, "phrase": text}], "relations": []}})
    options = dict(score_mode=mode, evidence_weight=0.7, grounder=_NowhereGrounder())
    unparsed = ComCLIP(tiny_backbone, **options).explain(scenes[0], text)
    parsed = ComCLIP(tiny_backbone, parser=as_entity, **options).explain(scenes[0], text)
    assert parsed.parts and parsed.flags[0] == NOT_GROUNDED
    assert unparsed.score == pytest.approx(parsed.score, abs=1e-5)
    expected = unparsed.clip * (1.7 if mode != "comclip" else 1.0)
    assert unparsed.score == pytest.approx(expected, abs=1e-6)


def test_regions_grounder_and_not_grounded_flag(tiny_backbone, scenes, regions_file):
    model = ComCLIP(tiny_backbone, grounder="regions", grounder_options={"regions": str(regions_file)})
    result = model.explain(scenes[0], "a red circle and a blue square")
    assert [p.boxes[0].as_list() for p in result.parts] == [CIRCLE_BOX, SQUARE_BOX]
    strict = ComCLIP(tiny_backbone, grounder="regions", grounder_options={"regions": str(regions_file), "min_similarity": 0.999})
    result = strict.explain(scenes[0], "a dog next to a circle")
    dog, circle, relation = result.parts
    assert dog.flags == [NOT_GROUNDED] and dog.boxes[0].as_list() == [0, 0, 96, 64]  # whole image
    assert circle.flags == [] and relation.flags == [NOT_GROUNDED]


def test_clip_grounder_returns_ranked_windows_inside_the_image(tiny_backbone, scenes):
    from comclip.grounding import create_grounder

    grounder = create_grounder("clip", tiny_backbone)
    image = Image.open(scenes[0]).convert("RGB")
    ranked = grounder.ground(image, ["circle", "square"])
    assert len(ranked) == 2
    assert_ranked_boxes_inside(ranked, 96, 64)
    boxes_before = grounder.candidates(image)[1]
    assert grounder.candidates(image.copy())[1] is boxes_before  # cached by content


def test_batch_size_does_not_change_scores(tiny_model_dir, scenes):
    texts = ["a red circle and a blue square", "a blue circle on a red square"]
    one = ComCLIP(create_backbone(str(tiny_model_dir), device="cpu", batch_size=1)).score(scenes, texts)
    many = ComCLIP(create_backbone(str(tiny_model_dir), device="cpu", batch_size=64)).score(scenes, texts)
    assert torch.allclose(one, many, atol=1e-5)


def test_groups_scored_together_equal_each_group_alone(tiny_backbone, scenes):
    """Batching across examples (one call for many groups) changes no score."""
    groups = [
        (scenes, ["a red circle and a blue square", "a blue circle and a red square"]),
        (scenes[:1], ["a red circle", "a square left of a circle", "it is"]),
        (scenes[::-1], ["a blue square"]),
    ]
    for region in ("crop", "patches"):
        scorer = ComCLIP(tiny_backbone, grounder_options={"region": region})
        together = scorer.score_groups(groups)
        for (images, texts), group in zip(groups, together):
            alone, matrix = scorer.score(images, texts), group.matrix
            assert group.results[0][0].score == pytest.approx(float(matrix[0, 0]))
            assert matrix.shape == alone.shape and torch.allclose(matrix.float(), alone.float(), atol=1e-5)


def test_bad_options(tiny_backbone):
    with pytest.raises(InputError, match="weighting"):
        ComCLIP(tiny_backbone, weighting="max")
    with pytest.raises(InputError, match="fill"):
        ComCLIP(tiny_backbone, subimage_fill="pink")
    with pytest.raises(InputError, match="unknown grounder"):
        ComCLIP(tiny_backbone, grounder="yolo")
    with pytest.raises(InputError, match="regions"):
        ComCLIP(tiny_backbone, grounder="regions")


@pytest.fixture(scope="module")
def coco_photo():
    folder = shared_data("coco-mini", "val2017")
    return sorted(folder.glob("*.jpg"))[0]


def test_score_cli_with_comclip_on_real_photo(cli, tiny_model_dir, coco_photo):
    code, out, err = cli(
        "score",
        "--model",
        tiny_model_dir,
        "--method",
        "clip,comclip",
        "--details",
        "--json",
        coco_photo,
        "a man sitting at a table",
        "it is",
    )
    assert code == 0, err
    data = json.loads(out)
    first, second = data["results"]
    assert set(first) >= {"text", "clip", "comclip", "details"}
    assert [p["phrase"] for p in first["details"]["parts"]] == ["man", "table", "sit at"]
    assert second["comclip"] == pytest.approx(second["clip"], abs=1e-6)
    assert second["details"]["fallback"]


def test_explain_cli_writes_figure_and_json(cli, tiny_model_dir, coco_photo, tmp_path):
    figure = tmp_path / "fig.png"
    code, out, err = cli(
        "explain",
        "--model",
        tiny_model_dir,
        coco_photo,
        "a young man sitting at a wooden table",
        "--out",
        figure,
        "--json",
        "--weighting",
        "softmax",
        "--subimage-fill",
        "blur",
    )
    assert code == 0, err
    with Image.open(figure) as fig:
        assert fig.format == "PNG" and fig.width >= 600
    data = json.loads(out)
    assert data["config"]["weighting"] == "softmax" and data["config"]["subimage_fill"] == "blur"
    assert sum(p["weight"] for p in data["parts"]) == pytest.approx(1.0)
    assert all(len(p["boxes"]) >= 1 for p in data["parts"])


def test_explain_cli_needs_an_output(cli, tiny_model_dir, coco_photo):
    code, _, err = cli("explain", "--model", tiny_model_dir, coco_photo, "a dog")
    assert code == 2 and "--out" in err


def test_demo_runs_offline_and_reproducibly(cli, tmp_path):
    """The README's main job with the shipped sandbox model: same seed, same table."""
    outputs = []
    for run in ("a", "b"):
        code, out, err = cli("demo", "--n", "3", "--out", tmp_path / run)
        assert code == 0, err
        outputs.append(out)
        report = (tmp_path / run / "report.md").read_text()
        assert all(f"| {m} |" in report for m in ("clip", "comclip sum", "comclip softmax", "comclip-plus"))
        assert "evidence(1)" not in report  # the wider grid is behind --full
        assert "## Methods" in report and "- **comclip softmax**:" in report and "softmax of the s_i" in report
        assert report.count("Grounding:") == 2 and report.count("- Best on group:") == 2  # one section per shipped model
        assert report.count("| method | binding | object-swap | order-swap | substitution | depth |") == 2  # a pixel relation too
        for model in ("comclip_sandbox", "comclip_sandbox-bow"):
            assert (tmp_path / run / model / "explain.png").stat().st_size > 1000
    data = [json.loads((tmp_path / run / "comclip_sandbox-bow" / "report.json").read_text()) for run in ("a", "b")]
    assert data[0]["model"] == "comclip/sandbox-bow" and data[0]["grounding"]["clip"]["n"] == 5 * 3 * 2 * 2
    assert [r["metrics"] for r in data[0]["runs"]] == [r["metrics"] for r in data[1]["runs"]]
    assert outputs[0] == outputs[1]
    code, out, err = cli("demo", "--n", "2", "--model", "comclip/sandbox", "--full", "--out", tmp_path / "full")
    assert code == 0 and "| evidence(1) sum mean +geometry |" in out and "| comclip softmax mean |" in out, err


def test_region_boxes_follow_an_image_decoded_at_reduced_scale(tiny_backbone, tmp_path):
    """A regions file gives boxes for the full-size photo; the pipeline sees it at reduced
    scale, so the boxes are scaled with it."""
    from comclip.imaging.files import load_image

    big = tmp_path / "big.png"
    _scene(big)  # 96 x 64
    regions = tmp_path / "regions.json"
    regions.write_text(json.dumps({"circle": [[16, 32, 82, 98]]}))  # in the 192 x 128 original's pixels
    Image.open(big).resize((192, 128)).save(big)
    small = load_image(big, max_side=96)
    assert small.scale == pytest.approx(0.5)
    result = ComCLIP(tiny_backbone, grounder="regions", grounder_options={"regions": str(regions)}).explain(small, "a circle")
    assert result.parts[0].boxes == [Box(8.0, 16.0, 41.0, 49.0)]


def test_scoring_pauses_the_cycle_collector_and_gives_it_back(tiny_backbone, monkeypatch):
    """The many short-lived objects of a batch would set the cycle collector off again and
    again (half a warm run's time): it is off while the pipeline scores, and as it was after."""
    import gc

    from comclip.collector import collector_paused
    from comclip.grounding import assignment

    seen, assign = [], assignment.assign

    def watched(*args, **kwargs):
        seen.append(gc.isenabled())
        return assign(*args, **kwargs)

    monkeypatch.setattr("comclip.pipeline.model.assign", watched)
    model = ComCLIP(tiny_backbone)
    assert gc.isenabled()
    model.score([Image.new("RGB", (40, 40), (200, 30, 30))], ["a red square", "a blue circle"])
    assert seen and not any(seen) and gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # an outer pause is left to its owner
    finally:
        gc.enable()
