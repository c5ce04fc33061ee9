"""Dataset modules read their published formats, name malformed rows, and map each benchmark
to the right comparison (caption choice, image choice, Winoground) and breakdown."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from comclip.errors import InputError
from comclip.eval.benchmarks.datasets import CAPTION_CHOICE, IMAGE_CHOICE, load_dataset
from comclip.eval.runs.runner import load_example_images

from .conftest import shared_data


def _image(path, colour=(200, 20, 20), size=(60, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_svo_probes(tmp_path):
    _image(tmp_path / "images" / "p1.jpg")
    csv = tmp_path / "svo_probes.csv"
    csv.write_text(
        ",sentence,pos_triplet,neg_triplet,subj_neg,verb_neg,obj_neg,pos_url,neg_url,pos_image_id,neg_image_id\n"
        '0,a man rides a horse,"man,ride,horse","man,feed,horse",False,True,False,http://x/a.jpg,http://y/n9.jpg,p1,n1\n'
        '1,a dog chases a cat,"dog,chase,cat","girl,chase,cat",True,False,False,http://x/b.jpg,http://y/c.jpg,,\n'
    )
    data = load_dataset("svo_probes", csv)
    first, second = data.examples
    assert first.kind == IMAGE_CHOICE and first.subset == "verb" and second.subset == "subject"
    assert first.images[0].endswith("images/p1.jpg") and first.images[1].endswith("images/n9.jpg")  # by id, else URL name
    assert first.given == {"a man rides a horse": "man,ride,horse"}
    csv.write_text(csv.read_text().replace("False,True,False", "True,True,False"))
    with pytest.raises(InputError, match="line 2: needs a sentence and exactly one"):
        load_dataset("svo_probes", csv)
    csv.write_text("sentence,pos_triplet\nx,y\n")
    with pytest.raises(InputError, match="lacks columns neg_triplet"):
        load_dataset("svo_probes", csv)


def test_valse_folder_of_pieces(tmp_path):
    (tmp_path / "existence.json").write_text(
        json.dumps(
            {
                "7": {
                    "image_file": "v7w_1.jpg",
                    "caption": "There are no animals.",
                    "foil": "There are animals.",
                    "linguistic_phenomena": "existence",
                    "mturk": {"caption": 3},
                }
            }
        )
    )
    (tmp_path / "relations.json").write_text(
        json.dumps(
            {
                "1": {
                    "image_file": "coco_2.jpg",
                    "caption": "a cat on a mat",
                    "foil": "a cat under a mat",
                    "linguistic_phenomena": "relations",
                }
            }
        )
    )
    data = load_dataset("valse", tmp_path, tmp_path / "imgs")
    assert [e.id for e in data.examples] == ["existence/7", "relations/1"]
    assert data.examples[0].kind == CAPTION_CHOICE and data.examples[0].texts[1] == "There are animals."
    assert data.examples[1].images[0].endswith("imgs/coco_2.jpg") and data.examples[1].subset == "relations"
    (tmp_path / "bad.json").write_text(json.dumps({"3": {"caption": "x"}}))
    with pytest.raises(InputError, match="bad.json item '3'"):
        load_dataset("valse", tmp_path)


def test_vl_checklist_pairs_and_phenomena(tmp_path):
    folder = tmp_path / "Attribute" / "vaw"
    folder.mkdir(parents=True)
    (folder / "color.json").write_text(
        json.dumps([["vg/1.jpg", {"POS": ["a red car", "a blue sky"], "NEG": ["a green car", "a pink sky"]}]])
    )
    data = load_dataset("vl_checklist", tmp_path)
    assert [e.texts for e in data.examples] == [["a red car", "a green car"], ["a blue sky", "a pink sky"]]
    assert data.examples[0].subset == "Attribute/vaw/color" and data.examples[0].tags == ["Attribute"]
    (folder / "color.json").write_text(json.dumps([["vg/1.jpg", {"POS": ["a"], "NEG": []}]]))
    with pytest.raises(InputError, match="equal length"):
        load_dataset("vl_checklist", tmp_path)


def test_aro_crops_to_the_box(tmp_path):
    image = tmp_path / "images" / "2.jpg"
    _image(image, size=(100, 80))
    rows = [
        {
            "image_path": "/data/vg/2.jpg",
            "bbox_x": 10,
            "bbox_y": 20,
            "bbox_w": 30,
            "bbox_h": 40,
            "relation_name": "on",
            "true_caption": "the cup is on the table",
            "false_caption": "the table is on the cup",
        },
        {
            "image_path": "/data/vg/2.jpg",
            "bbox_x": 500,
            "bbox_y": 500,
            "bbox_w": 30,
            "bbox_h": 40,
            "relation_name": "on",
            "true_caption": "a",
            "false_caption": "b",
        },
    ]
    path = tmp_path / "visual_genome_relation.json"
    path.write_text(json.dumps(rows))
    data = load_dataset("aro", path)
    assert data.name == "aro_vg_relation" and data.examples[0].subset == "on" and data.examples[0].tags == ["spatial"]
    (loaded,) = load_example_images(data.examples[0])
    assert loaded.image.size == (30, 40)
    with pytest.raises(InputError, match="zero area"):
        load_example_images(data.examples[1])


def test_aro_end_to_end_counts_bad_crop_as_failed(cli, tiny_model_dir, tmp_path):
    _image(tmp_path / "images" / "2.jpg", size=(100, 80))
    rows = [
        {
            "image_path": "2.jpg",
            "bbox_x": 0,
            "bbox_y": 0,
            "bbox_w": 50,
            "bbox_h": 50,
            "attributes": ["red", "blue"],
            "true_caption": "the red cup and the blue plate",
            "false_caption": "the blue cup and the red plate",
        },
        {
            "image_path": "2.jpg",
            "bbox_x": 900,
            "bbox_y": 0,
            "bbox_w": 5,
            "bbox_h": 5,
            "attributes": ["red", "blue"],
            "true_caption": "a red cup",
            "false_caption": "a blue cup",
        },
    ]
    path = tmp_path / "visual_genome_attribution.json"
    path.write_text(json.dumps(rows))
    code, _, err = cli("eval", "aro", "--data", path, "--model", tiny_model_dir, "--out", tmp_path / "out")
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["dataset"] == "aro_vg_attribution"
    for run in report["runs"]:
        assert (run["n_scored"], run["n_failed"]) == (1, 1) and "zero area" in run["failures"][0]["error"]
        assert set(run["subsets"]) == {"red-blue"}


def test_winoground_from_the_hub_fails_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="gated dataset facebook/winoground.*HF_TOKEN"):
        load_dataset("winoground", "hf:facebook/winoground")


def test_winoground_examples_jsonl(tmp_path):
    (tmp_path / "examples.jsonl").write_text(
        json.dumps({"id": 0, "caption_0": "a", "caption_1": "b", "tag": "Object", "secondary_tag": "", "collapsed_tag": "Object"})
        + "\n"
    )
    data = load_dataset("winoground", tmp_path)
    assert data.examples[0].images[1].endswith("images/ex_0_img_1.png") and data.examples[0].subset == "Object"


def test_shared_readers_name_the_bad_file(tmp_path):
    (tmp_path / "examples.jsonl").write_text('{"id": 0, "caption_0": "a", "caption_1": "b"}\n{oops\n')
    with pytest.raises(InputError, match="examples.jsonl line 2: not valid JSON"):
        load_dataset("winoground", tmp_path)
    (tmp_path / "examples.jsonl").write_text('{"id": 0, "caption_0": "a"}\n')
    with pytest.raises(InputError, match="line 1: needs a JSON object with id, caption_0, caption_1"):
        load_dataset("winoground", tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no VALSE JSON files in"):
        load_dataset("valse", empty)
    with pytest.raises(InputError, match="no VL-CheckList JSON files under"):
        load_dataset("vl_checklist", empty)


def test_vg_relation_marks_spatial_predicates(tmp_path):
    rows = [
        {
            "image_path": "2.jpg",
            "bbox_x": 0,
            "bbox_y": 0,
            "bbox_w": 5,
            "bbox_h": 5,
            "relation_name": name,
            "true_caption": "a",
            "false_caption": "b",
        }
        for name in ("to the left of", "eating", "sitting on", "wearing")
    ]
    path = tmp_path / "visual_genome_relation.json"
    path.write_text(json.dumps(rows))
    assert [e.tags for e in load_dataset("aro", path).examples] == [["spatial"], ["other"], ["spatial"], ["other"]]


def _whatsup_files(root):
    """What'sUp's four layouts, as whatsup_vlms' dataset_zoo reads them, with their images."""
    controlled = [
        {
            "image_path": f"data/controlled_images/mug_{p}_plate.jpeg",
            "caption_options": [
                f"A mug {p.replace('_', ' ')} a plate",
                "A mug on a plate",
                "A mug under a plate",
                "A mug left of a plate",
            ],
        }
        for p in ("left_of", "right_of", "on", "under")
    ]
    (root / "controlled_images_dataset.json").write_text(json.dumps(controlled))
    for item in controlled:
        _image(root / "controlled_images" / item["image_path"].rsplit("/", 1)[1])
    (root / "coco_qa_two_obj.json").write_text(
        json.dumps(
            [
                [139, "A dog to the left of a cat", "A cat to the left of a dog"],
                [285, "A cup above a table", "A table above a cup"],
            ]
        )
    )
    for image_id in (139, 285):
        _image(root / "val2017" / f"{image_id:012d}.jpg")
    (root / "vg_qa_one_obj.json").write_text(
        json.dumps([[2375, "A photo of a lamp on the left", "A photo of a lamp on the right"]])
    )
    _image(root / "vg_images" / "2375.jpg")


def test_whatsup_reads_its_four_layouts(tmp_path):
    _whatsup_files(tmp_path)
    controlled = load_dataset("whatsup", tmp_path / "controlled_images_dataset.json")
    assert controlled.name == "whatsup" and controlled.split == "controlled_images_dataset"
    assert [e.subset for e in controlled.examples] == ["left_of", "right_of", "on", "under"]
    assert controlled.examples[0].texts[0] == "A mug left of a plate" and len(controlled.examples[0].texts) == 4
    assert controlled.examples[0].images == [str(tmp_path / "controlled_images" / "mug_left_of_plate.jpeg")]
    coco = load_dataset("whatsup", tmp_path / "coco_qa_two_obj.json")
    assert [e.subset for e in coco.examples] == ["left", "above"]
    assert coco.examples[0].images == [str(tmp_path / "val2017" / "000000000139.jpg")]
    gqa = load_dataset("whatsup", tmp_path / "vg_qa_one_obj.json")
    assert gqa.examples[0].subset == "left" and gqa.examples[0].images == [str(tmp_path / "vg_images" / "2375.jpg")]
    (tmp_path / "other.json").write_text("[]")
    with pytest.raises(InputError, match="not a What'sUp file"):
        load_dataset("whatsup", tmp_path / "other.json")


def test_whatsup_end_to_end_with_the_geometric_check(cli, tiny_model_dir, tmp_path):
    _whatsup_files(tmp_path)
    code, _, err = cli(
        "eval",
        "whatsup",
        "--data",
        tmp_path / "controlled_images_dataset.json",
        "--model",
        tiny_model_dir,
        "--relation-check",
        "geometry",
        "--out",
        tmp_path / "out",
    )
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [(r["method"], r["n_scored"]) for r in report["runs"]] == [("clip", 4), ("comclip", 4)]
    assert set(report["runs"][1]["subsets"]) == {"left_of", "right_of", "on", "under"}


def test_a_loader_bug_is_not_reported_as_the_users_file(monkeypatch, cli, tmp_path):
    """A loader raises InputError for the user's file; any other exception is the loader's bug:
    it propagates (a traceback, exit 1 from the CLI), never 'not a valid dataset' (exit 2)."""
    from comclip.eval.benchmarks.datasets import DATASETS

    def buggy(path, image_dir=None):
        return {}["no such key"]  # a bug, whatever the file holds

    monkeypatch.setitem(DATASETS._items, "buggy", buggy)
    data = tmp_path / "fine.jsonl"
    data.write_text("{}\n")
    with pytest.raises(KeyError):
        load_dataset("buggy", data)
    with pytest.raises(KeyError):  # the CLI does not turn it into a user's error either
        cli("eval", "buggy", "--data", data, "--out", tmp_path / "out")
    assert not issubclass(InputError, ValueError)
    with pytest.raises(InputError, match="takes no option split"):
        load_dataset("sugarcrepe", data, split="test")


def test_malformed_rows_are_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "x.png", "positive": "a dog", "negatives": []}\n')
    with pytest.raises(InputError, match=r"bad.jsonl line 1: 'negatives'"):
        load_dataset("jsonl", bad)
    bad.write_text("{not json\n")
    with pytest.raises(InputError, match="line 1: not valid JSON"):
        load_dataset("jsonl", bad)
    csv = tmp_path / "comvg.csv"
    csv.write_text("id,sentence\n1,a dog\n")
    with pytest.raises(InputError, match="lacks columns"):
        load_dataset("comvg", csv)
    with pytest.raises(InputError, match="unknown dataset"):
        load_dataset("imagenet", csv)


def test_winoground_local_folder(tmp_path, cli, tiny_model_dir):
    (tmp_path / "images").mkdir()
    meta = tmp_path / "meta.csv"
    meta.write_text(
        "id,caption_0,caption_1,tag,secondary_tag,collapsed_tag,num_main_preds\n"
        "0,a red circle left of a blue square,a blue circle left of a red square,Object,,Object,1\n"
        "1,a dog on a mat,a mat on a dog,Relation,Symbolic,Relation,1\n"
    )
    for ex in ("0", "1"):
        for i, colour in enumerate([(200, 0, 0), (0, 0, 200)]):
            Image.new("RGB", (32, 32), colour).save(tmp_path / "images" / f"ex_{ex}_img_{i}.png")
    dataset = load_dataset("winoground", tmp_path)
    assert [e.subset for e in dataset.examples] == ["Object", "Relation"]
    assert dataset.examples[1].tags == ["Relation", "Symbolic"]
    code, _, err = cli("eval", "winoground", "--data", tmp_path, "--model", tiny_model_dir, "--out", tmp_path / "out")
    assert code == 0, err
    run = json.loads((tmp_path / "out" / "report.json").read_text())["runs"][0]
    assert set(run["metrics"]) == {"text", "image", "group", "pairwise"}
    assert set(run["tags"]) == {"Object", "Relation", "Symbolic"}


def test_sugarcrepe_end_to_end(cli, tiny_model_dir, tmp_path):
    data = shared_data("sugarcrepe", "sugarcrepe-coco-mini-dev.json")
    code, out, err = cli("eval", "sugarcrepe", "--data", data, "--model", tiny_model_dir, "--out", tmp_path / "sc")
    assert code == 0, err
    report = json.loads((tmp_path / "sc" / "report.json").read_text())
    assert [(r["n_scored"], r["n_failed"]) for r in report["runs"]] == [(147, 0), (147, 0)]
    assert set(report["runs"][0]["subsets"]) == {
        "add_att",
        "add_obj",
        "replace_att",
        "replace_obj",
        "replace_rel",
        "swap_att",
        "swap_obj",
    }


def test_comvg_rows_without_images_are_failed_with_reason(cli, tiny_model_dir, tmp_path):
    data = shared_data("comvg", "comvg-dev.csv")
    code, _, err = cli("eval", "comvg", "--data", data, "--model", tiny_model_dir, "--out", tmp_path / "cv", "--parser", "given")
    assert code == 1 and "scored none of its 2695 examples" in err and "image not found" in err  # report written, run failed
    report = json.loads((tmp_path / "cv" / "report.json").read_text())
    for run in report["runs"]:
        assert run["n_scored"] + run["n_failed"] == 2695
        assert run["n_failed"] == 2695  # Visual Genome images are not in the shared data
        assert all("image not found" in f["error"] for f in run["failures"])
