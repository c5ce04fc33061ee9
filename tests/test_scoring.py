"""Score modes against a reference computation, and the ablation command end to end."""

from __future__ import annotations

import json

import pytest


import torch

from comclip.composition.scoring import SCORE_MODES, Evidence
from comclip.grounding.proposals import segment_proposals


def test_score_modes_by_hand():
    e = Evidence(composed=0.30, clip=0.28, entity_similarities=[0.2, 0.4], relation_similarities=[0.1])
    assert SCORE_MODES["comclip"](e, 2.0) == 0.30
    assert SCORE_MODES["evidence"](e, 2.0) == pytest.approx(0.30 + 2.0 * 0.3)
    assert SCORE_MODES["evidence"](e, 1.0, relations=True) == pytest.approx(0.30 + (0.2 + 0.4 + 0.1) / 3)
    assert SCORE_MODES["evidence-min"](e, 0.5) == pytest.approx(0.30 + 0.5 * 0.2)
    assert SCORE_MODES["evidence-min"](e, 1.0, relations=True) == pytest.approx(0.40)
    empty = Evidence(0.3, 0.3, [], [])
    assert all(mode(empty, 1.0) == 0.3 for mode in SCORE_MODES.values())


def test_pipeline_evidence_adds_the_entity_cosines(tiny_backbone, rgb_image_path):
    from comclip.pipeline import ComCLIP

    text = "a red ball next to a blue cube"
    faithful = ComCLIP(tiny_backbone).explain(rgb_image_path, text)
    evidence = ComCLIP(tiny_backbone, score_mode="evidence", evidence_weight=0.7).explain(rgb_image_path, text)
    entities = [p.similarity for p in evidence.parts if p.kind == "entity"]
    assert evidence.composed == pytest.approx(faithful.score)
    assert evidence.score == pytest.approx(faithful.score + 0.7 * sum(entities) / len(entities))
    with pytest.raises(Exception, match="unknown score mode"):
        ComCLIP(tiny_backbone, score_mode="magic")


def test_segment_proposals_find_objects():
    from PIL import Image, ImageDraw

    from comclip.grounding import Box

    image = Image.new("RGB", (120, 90), (90, 90, 90))
    draw = ImageDraw.Draw(image)
    draw.rectangle((10, 20, 29, 39), fill=(230, 20, 20))
    draw.ellipse((70, 40, 99, 69), fill=(20, 20, 230))
    boxes = segment_proposals(image)
    for truth in (Box(10, 20, 30, 40), Box(70, 40, 100, 70)):
        assert max(b.iou(truth) for b in boxes) > 0.8
    assert segment_proposals(Image.new("RGB", (50, 50), (10, 10, 10))) == []


def test_ablate_chooses_on_dev_and_reports_on_test(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "abl"
    code, stdout, err = cli("ablate", "sandbox", "--model", tiny_model_dir, "--grid", "small", "--n", "3",
                            "--task", "binding,substitution", "--out", out)
    assert code == 0, err
    summary = json.loads((out / "ablation.json").read_text())
    dev = [json.loads(line) for line in (out / "dev.jsonl").read_text().splitlines()]
    assert summary["n_configs"] == len(dev) == 8 and summary["dev_split"] == "seed100" and summary["test_split"] == "seed200"
    assert summary["best"]["criterion"] == max(d["criterion"] for d in dev)
    test = json.loads((out / "test" / "report.json").read_text())
    assert len(test["runs"]) == 3 and test["runs"][0]["method"] == "clip"
    assert test["chosen_on"]["config"] == summary["best"]["config"]
    assert test["runs"][1]["config"]["score_mode"] == "comclip" and test["runs"][1]["config"]["fill"] == "black"
    code, _, err = cli("ablate", "sandbox", "--model", tiny_model_dir, "--dev-seed", "5", "--test-seed", "5", "--out", tmp_path / "x")
    assert code == 2 and "must differ" in err



def test_patch_grid_geometry():
    from comclip.backbones.base import PatchGrid
    from comclip.backbones.hf import _view_geometry
    from comclip.grounding import Box

    grid = PatchGrid(torch.zeros(2, 3, 4), x0=10.0, y0=0.0, step_x=10.0, step_y=5.0)
    w = grid.overlap_weights([Box(10, 0, 20, 5), Box(15, 2.5, 40, 10), Box(0, 0, 5, 5)])
    assert w[0].tolist() == [50.0, 0, 0, 0, 0, 0]
    assert w[1].tolist() == [12.5, 25.0, 25.0, 25.0, 50.0, 50.0]  # x overlaps 5, 10, 10; y 2.5, 5
    assert w[2].sum() == 0  # left of the encoder's view
    assert PatchGrid.unpack(grid.pack()).x0 == 10.0
    assert _view_geometry((448, 224), 224) == (112.0, 0.0, 1.0)
    assert _view_geometry((100, 200), 50) == (0.0, 50.0, 0.5)  # resized to 50x100, 25 px cropped top = 50 original


def test_patch_grounder_reads_one_forward_pass(tiny_model_dir, rgb_image_path):
    from PIL import Image

    from comclip.backbones import create_backbone
    from comclip.cache import MemoryCache
    from comclip.grounding import create_grounder
    from comclip.pipeline import ComCLIP

    backbone = create_backbone(str(tiny_model_dir))
    backbone.cache = MemoryCache()
    grounder = create_grounder("clip", backbone, region="patches")
    ranked = grounder.ground(Image.open(rgb_image_path).convert("RGB"), ["dog", "cat"])
    assert len(ranked) == 2 and len(ranked[0]) == len(grounder.candidates(Image.open(rgb_image_path).convert("RGB"))[0])
    assert len(backbone.cache) == 2 + 2  # global + patch tokens of the image, two prompts; no crops
    plain = ComCLIP(create_backbone(str(tiny_model_dir)), grounder=create_grounder("clip", backbone, region="patches"))
    fused = ComCLIP(backbone, grounder=grounder)
    assert torch.allclose(plain.score([rgb_image_path], ["a dog on a mat"]), fused.score([rgb_image_path], ["a dog on a mat"]), atol=1e-5)


def test_union_margin_grounds_to_every_close_box():
    from comclip.grounding import Box, Detection
    from comclip.grounding.assignment import assign

    detections = [Detection((Box(0, 0, 5, 5),), 0.50), Detection((Box(5, 5, 9, 9),), 0.49), Detection((Box(1, 1, 2, 2),), 0.40)]
    assert assign([detections], [0], joint=False)[0].detection.boxes == (Box(0, 0, 5, 5),)
    union = assign([detections], [0], joint=False, union_margin=0.02)[0].detection
    assert union.boxes == (Box(0, 0, 5, 5), Box(5, 5, 9, 9)) and union.score == 0.50
    assert assign([[]], [0], joint=False, union_margin=0.02)[0].detection is None
