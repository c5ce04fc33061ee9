"""SugarCrepe++, MMVP-VLM, ColorSwap, COLA and users' minimal pairs: each loader on a small
fixture in its real layout (written here), their metrics against reference computations,
`comclip eval` end to end with CLIP and ComCLIP, and the word-order split of the reports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comclip.errors import InputError
from comclip.eval.benchmarks.datasets import PAIR_MATCH, TWO_POSITIVES, WINOGROUND, load_dataset
from comclip.eval.benchmarks.datasets.base import DIFFERENT_WORDS, SAME_WORDS
from comclip.eval.benchmarks.kinds import word_order_class

from .conftest import run_cli, run_cli_here, shared_data

COLOURS = [(220, 30, 30), (30, 30, 220), (30, 200, 30), (230, 230, 40), (240, 240, 240), (20, 20, 20)]


def _picture(n: int) -> Image.Image:
    """A small two-colour picture (left half, right half), different for each n."""
    image = Image.new("RGB", (48, 32), COLOURS[n % len(COLOURS)])
    image.paste(COLOURS[(n + 1) % len(COLOURS)], (24, 0, 48, 32))
    return image


def _image(path: Path, n: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    _picture(n).save(path)
    return path


def _hub(tmp_path: Path, repo: str, files: Path) -> dict:
    """A Hub cache holding dataset ``repo`` with the files of folder ``files``, as
    huggingface_hub lays it out; the environment that points the CLI at it."""
    commit = "1" * 40
    root = tmp_path / "hub" / f"datasets--{repo.replace('/', '--')}"
    shutil.copytree(files, root / "snapshots" / commit)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    return {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}


# --- fixtures in each dataset's own layout ---------------------------------------------------
SCPP = {
    "swap_att": [
        {
            "id": 0,
            "filename": "000000000139.jpg",
            "caption": "a red cup on a blue table",
            "caption2": "a table that is blue holding a cup that is red",
            "negative_caption": "a blue cup on a red table",
        },
        {
            "id": 1,
            "filename": "000000000285.jpg",
            "caption": "a white dog next to a black cat",
            "caption2": "a black cat sits beside a dog that is white",
            "negative_caption": "a black dog next to a white cat",
        },
    ],
    "replace_rel": [
        {
            "id": 7,
            "filename": "000000000139.jpg",
            "caption": "a man riding a horse",
            "caption2": "a horse carrying a man on its back",
            "negative_caption": "a man feeding a horse",
        },
    ],
}


@pytest.fixture
def scpp_dir(tmp_path) -> Path:
    """SugarCrepe++ as its repository and the Hub hold it: one JSON per subset (captions only)."""
    folder = tmp_path / "scpp" / "data"
    folder.mkdir(parents=True)
    for subset, items in SCPP.items():
        (folder / f"{subset}.json").write_text(json.dumps(items))
    for n, name in enumerate(("000000000139.jpg", "000000000285.jpg")):
        _image(tmp_path / "scpp" / "images" / name, n)
    return folder


@pytest.fixture
def mmvp_dir(tmp_path) -> Path:
    """MMVP-VLM's layout: Questions.csv and MLLM_VLM Images/<Type>/<Question ID>.jpg."""
    folder = tmp_path / "MMVP_VLM"
    rows = [
        (1, "Orientation and Direction", "The school bus is parked facing the camera"),
        (2, "Orientation and Direction", "The school bus is parked facing away from the camera"),
        (3, "Color and Appearance", "The flower is red"),
        (4, "Color and Appearance", "The flower is yellow"),
    ]
    folder.mkdir()
    (folder / "Questions.csv").write_text(
        "Question ID,Type,Statement\n" + "".join(f'{qid},{kind},"{text}"\n' for qid, kind, text in reversed(rows))
    )  # any order: pairs follow the ids
    for qid, kind, _ in rows:
        _image(folder / "MLLM_VLM Images" / kind / f"{qid}.jpg", qid)
    return folder


COLORSWAP = [
    (0, "a red chair and a blue table", "a blue chair and a red table"),
    (1, "a yellow ball on green grass", "a green ball on yellow grass"),
    (2, "a white cat under a black umbrella", "a black cat under a white umbrella"),
]


def _png_bytes(n: int) -> bytes:
    import io

    buffer = io.BytesIO()
    _picture(n).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def colorswap_dir(tmp_path) -> Path:
    """ColorSwap as the Hub serves it: Parquet files per split, images as {bytes, path} cells."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "colorswap" / "data"
    folder.mkdir(parents=True)
    splits = {"test-00000-of-00001.parquet": COLORSWAP[:2], "train-00000-of-00001.parquet": COLORSWAP[2:]}
    for name, rows in splits.items():
        table = {
            "id": [r[0] for r in rows],
            "caption_1": [r[1] for r in rows],
            "caption_2": [r[2] for r in rows],
            "image_1": [{"bytes": _png_bytes(2 * r[0]), "path": f"{r[0]}_1.png"} for r in rows],
            "image_2": [{"bytes": _png_bytes(2 * r[0] + 1), "path": f"{r[0]}_2.png"} for r in rows],
            "image_source": ["midjourney"] * len(rows),
            "caption_source": ["human"] * len(rows),
        }
        pq.write_table(pa.table(table), folder / name)
    return folder.parent


@pytest.fixture
def cola_file(tmp_path) -> Path:
    """COLA's multi-object JSON: [image 1 link, caption 1, image 2 link, caption 2]."""
    folder = tmp_path / "COLA" / "data"
    rows = [
        [
            "https://cs-people.bu.edu/array/data/vg_gqa_images/2414605.jpg",
            "square white plate and round blue bowl",
            "https://cs-people.bu.edu/array/data/vg_gqa_images/2390538.jpg",
            "square blue plate and round white bowl",
        ],
        [
            "https://cs-people.bu.edu/array/data/vg_gqa_images/2352710.jpg",
            "wooden table and metal chair",
            "https://cs-people.bu.edu/array/data/vg_gqa_images/2406212.jpg",
            "metal table and wooden chair",
        ],
    ]
    folder.mkdir(parents=True)
    (folder / "COLA_multiobjects_matching_benchmark.json").write_text(json.dumps(rows))
    for n, stem in enumerate(("2414605", "2390538", "2352710", "2406212")):
        _image(folder / "images" / f"{stem}.jpg", n)
    return folder / "COLA_multiobjects_matching_benchmark.json"


@pytest.fixture
def minimal_pairs_csv(tmp_path) -> Path:
    folder = tmp_path / "pairs"
    for n in range(4):
        _image(folder / "img" / f"{n}.png", n)
    (folder / "pairs.csv").write_text(
        "image_0,image_1,caption_0,caption_1,tag\n"
        "img/0.png,img/1.png,a red square left of a blue square,a blue square left of a red square,order\n"
        "img/2.png,img/3.png,a green field,a yellow field,colour\n"
    )
    return folder / "pairs.csv"


# --- the word-order split --------------------------------------------------------------------


# --- metrics against reference computations --------------------------------------------------


# --- loaders ---------------------------------------------------------------------------------
def test_sugarcrepe_pp_loader(scpp_dir):
    dataset = load_dataset("sugarcrepe_pp", scpp_dir)
    assert [e.id for e in dataset.examples] == ["replace_rel/7", "swap_att/0", "swap_att/1"]
    first = dataset.examples[1]
    assert first.kind == TWO_POSITIVES and first.subset == "swap_att"
    assert first.texts == [SCPP["swap_att"][0][k] for k in ("caption", "caption2", "negative_caption")]
    assert first.images == [str(scpp_dir.parent / "images" / "000000000139.jpg")]  # images/ beside data/
    assert word_order_class(first.kind, first.texts) == SAME_WORDS
    other = load_dataset("sugarcrepe_pp", scpp_dir / "swap_att.json", image_dir="/coco/val2017")
    assert other.examples[0].images == ["/coco/val2017/000000000139.jpg"]
    with pytest.raises(InputError, match="captions only.*--image-dir"):
        load_dataset("sugarcrepe_pp", "hf:Aman-J/SugarCrepe_pp")


def test_mmvp_loader_pairs_rows_by_id(mmvp_dir):
    dataset = load_dataset("mmvp", mmvp_dir)
    assert [(e.id, e.subset) for e in dataset.examples] == [("1-2", "Orientation and Direction"), ("3-4", "Color and Appearance")]
    pair = dataset.examples[1]
    assert pair.kind == PAIR_MATCH and pair.texts == ["a photo of The flower is red", "a photo of The flower is yellow"]
    assert pair.images == [str(mmvp_dir / "MLLM_VLM Images" / "Color and Appearance" / f"{q}.jpg") for q in (3, 4)]
    with open(mmvp_dir / "Questions.csv", "a") as handle:
        handle.write('5,Texts,"a lone statement"\n')
    with pytest.raises(InputError, match="5 statements"):
        load_dataset("mmvp", mmvp_dir)


def test_colorswap_from_parquet_leaves_the_folder_alone(colorswap_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("COMCLIP_CACHE", str(tmp_path / "cache"))
    before = sorted(p.relative_to(colorswap_dir) for p in colorswap_dir.rglob("*"))
    dataset = load_dataset("colorswap", colorswap_dir)
    assert dataset.split == "test" and [e.id for e in dataset.examples] == ["0", "1"]
    assert dataset.examples[1].texts == list(COLORSWAP[1][1:]) and dataset.examples[1].kind == WINOGROUND
    for example in dataset.examples:
        for image in example.images:
            assert Path(image).is_relative_to(tmp_path / "cache") and Image.open(image).size == (48, 32)
    assert sorted(p.relative_to(colorswap_dir) for p in colorswap_dir.rglob("*")) == before
    assert [e.id for e in load_dataset("colorswap", colorswap_dir, split="train").examples] == ["2"]


def test_colorswap_from_a_table(tmp_path):
    for n in range(2):
        _image(tmp_path / "cs" / f"{n}.png", n)
    (tmp_path / "cs" / "colorswap.jsonl").write_text(
        json.dumps({"id": 5, "image_1": "0.png", "image_2": "1.png", "caption_1": "a red car", "caption_2": "a car red"}) + "\n"
    )
    (example,) = load_dataset("colorswap", tmp_path / "cs").examples
    assert example.images == [str(tmp_path / "cs" / "0.png"), str(tmp_path / "cs" / "1.png")] and example.id == "5"


def test_colorswap_from_its_official_release(tmp_path, cli, tiny_model_dir):
    """The GitHub release: data/test.json and data/train.json (JSON arrays), images.zip
    extracted beside them as images/img_<id>_<k>.png, paths relative to the JSON's folder."""
    data = tmp_path / "colorswap" / "data"
    for split, rows in (("test", COLORSWAP[:2]), ("train", COLORSWAP[2:])):
        entries = []
        for number, first, second in rows:
            for k in (1, 2):
                _image(data / "images" / f"img_{number}_{k}.png", 2 * number + k - 1)
            entries.append({"id": number, "caption_1": first, "caption_2": second, "image_1": f"images/img_{number}_1.png",
                            "image_2": f"images/img_{number}_2.png", "image_source": "midjourney", "caption_source": "human"})  # fmt: skip
        (data / f"{split}.json").write_text(json.dumps(entries))
    by_file = load_dataset("colorswap", data / "test.json")
    assert by_file.split == "test" and [e.id for e in by_file.examples] == ["0", "1"]
    assert by_file.examples[1].images == [str(data / "images" / f"img_1_{k}.png") for k in (1, 2)]
    assert by_file.examples[1].texts == list(COLORSWAP[1][1:]) and by_file.examples[1].kind == WINOGROUND
    assert [e.id for e in load_dataset("colorswap", data).examples] == ["0", "1"]  # the folder: test by default
    assert [e.id for e in load_dataset("colorswap", data, split="train").examples] == ["2"]
    with pytest.raises(InputError, match="no dev.json .*test.json, train.json.*--split"):
        load_dataset("colorswap", data, split="dev")
    code, _, err = cli("eval", "colorswap", "--data", data / "test.json", "--model", tiny_model_dir, "--out", tmp_path / "o",
                       "--no-cache", "--bootstrap", "0", "--method", "clip")  # fmt: skip
    assert code == 0 and "clip: 2 scored, 0 failed" in err, err


def test_cola_loader_finds_images_by_link_name(cola_file):
    dataset = load_dataset("cola", cola_file.parent)
    assert len(dataset.examples) == 2 and dataset.examples[0].kind == PAIR_MATCH
    assert dataset.examples[0].images == [str(cola_file.parent / "images" / f"{s}.jpg") for s in ("2414605", "2390538")]
    assert all(Path(p).exists() for e in dataset.examples for p in e.images)
    cola_file.write_text(json.dumps([["a.jpg", "a caption", "b.jpg"]]))
    with pytest.raises(InputError, match="item 0"):
        load_dataset("cola", cola_file)


def test_minimal_pairs_csv_and_jsonl(minimal_pairs_csv, tmp_path):
    dataset = load_dataset("minimal_pairs", minimal_pairs_csv.parent)
    assert [(e.id, e.subset, e.tags) for e in dataset.examples] == [("2", "order", ["order"]), ("3", "colour", ["colour"])]
    assert dataset.examples[0].images == [str(minimal_pairs_csv.parent / "img" / f"{n}.png") for n in (0, 1)]
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text(
        json.dumps({"id": "x", "image_0": "a.png", "image_1": "b.png", "caption_0": "one", "caption_1": "two"})
        + "\n"
        + json.dumps({"image_0": "a.png"})
        + "\n"
    )
    with pytest.raises(InputError, match="line 2: needs image_1, caption_0, caption_1"):
        load_dataset("minimal_pairs", jsonl)


# --- end to end ------------------------------------------------------------------------------
EXPECTED_METRICS = {
    "sugarcrepe_pp": {"itt", "tot"},
    "mmvp": {"pair"},
    "colorswap": {"text", "image", "group", "pairwise"},
    "cola": {"pair"},
    "minimal_pairs": {"text", "image", "group", "pairwise"},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_METRICS))
def test_eval_end_to_end_with_clip_and_comclip(name, request, tiny_model_dir, tmp_path):
    data = {
        "sugarcrepe_pp": "scpp_dir",
        "mmvp": "mmvp_dir",
        "colorswap": "colorswap_dir",
        "cola": "cola_file",
        "minimal_pairs": "minimal_pairs_csv",
    }[name]
    out = tmp_path / "run"
    result = run_cli_here(
        [
            "eval",
            name,
            "--data",
            request.getfixturevalue(data),
            "--model",
            tiny_model_dir,
            "--method",
            "clip,comclip",
            "--out",
            out,
            "--no-cache",
        ],
        env={"COMCLIP_CACHE": str(tmp_path / "c")},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    expected_n = len(load_dataset(name, request.getfixturevalue(data)).examples)
    for run in report["runs"]:
        assert run["n_scored"] == run["n_examples"] == expected_n and run["n_failed"] == 0
        assert set(run["metrics"]) == EXPECTED_METRICS[name]
        split = run["word_order"]
        assert split[SAME_WORDS]["n"] + split[DIFFERENT_WORDS]["n"] == expected_n
    assert "## Word order" in (out / "report.md").read_text()
    if name == "sugarcrepe_pp":  # ComCLIP keeps CLIP's text side: the text-only metric is shared
        records = [json.loads(line) for line in (out / "per_example.jsonl").read_text().splitlines()]
        by_method = {m: {r["id"]: r["text_scores"] for r in records if r["method"] == m} for m in ("clip", "comclip")}
        assert by_method["clip"] == by_method["comclip"] and len(by_method["clip"]) == expected_n


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, fixture, repo",
    [
        ("sugarcrepe_pp", "scpp_dir", "Aman-J/SugarCrepe_pp"),
        ("mmvp", "mmvp_dir", "MMVP/MMVP_VLM"),
        ("colorswap", "colorswap_dir", "stanfordnlp/colorswap"),
    ],
)
def test_hub_names_read_the_hub_cache(name, fixture, repo, request, tiny_model_dir, tmp_path, monkeypatch):
    """In this process: huggingface_hub reads its cache folder from ``constants`` when called."""
    from huggingface_hub import constants

    folder = request.getfixturevalue(fixture)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", _hub(tmp_path, repo, folder)["HF_HUB_CACHE"])
    extra = ["--image-dir", folder.parent / "images"] if name == "sugarcrepe_pp" else []
    args = ["eval", name, "--data", f"hf:{repo}", *extra, "--model", tiny_model_dir, "--method", "clip"]
    result = run_cli_here([*args, "--out", tmp_path / "run", "--no-cache", "--workers", "0"])
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    local = load_dataset(name, folder, image_dir=folder.parent / "images" if name == "sugarcrepe_pp" else None)
    assert report["runs"][0]["n_scored"] == len(local.examples) > 0


def test_a_hub_name_without_its_cache_is_one_line(tmp_path):
    """As its own process: the environment alone points huggingface_hub at an empty cache."""
    result = run_cli(
        ["eval", "mmvp", "--data", "hf:MMVP/MMVP_VLM", "--model", "comclip/sandbox", "--out", tmp_path / "r"],
        env={"HF_HUB_CACHE": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2 and "MMVP/MMVP_VLM" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_shared_sugarcrepe_report_splits_word_order(tmp_path):
    data = shared_data("sugarcrepe", "sugarcrepe-coco-mini-dev.json")
    out = tmp_path / "sc"
    result = run_cli_here(
        ["eval", "sugarcrepe", "--data", data, "--model", "comclip/sandbox", "--method", "clip", "--out", out, "--no-cache"]
    )
    assert result.returncode == 0, result.stderr
    run = json.loads((out / "report.json").read_text())["runs"][0]
    for subset in ("swap_obj", "swap_att"):
        assert run["word_order_subsets"][subset][SAME_WORDS]["n"] > 0
    assert run["word_order_subsets"]["add_obj"][SAME_WORDS]["n"] == 0  # an added object is never a reordering
    records = [json.loads(line) for line in (out / "per_example.jsonl").read_text().splitlines()]
    same = [r["correct"]["accuracy"] for r in records if r["word_order"] == SAME_WORDS]
    assert run["word_order"][SAME_WORDS]["n"] == len(same)
    assert run["word_order"][SAME_WORDS]["metrics"]["accuracy"]["value"] == pytest.approx(100 * np.mean(same))
    assert "same words, other order" in (out / "report.md").read_text()
