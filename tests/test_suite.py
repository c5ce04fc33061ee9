"""``comclip suite``: a TOML file of models, methods and datasets, each cell an ordinary
resumable run, one combined report; mistakes in the file are one line before any model loads."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from .conftest import SHARED_DATA, run_cli_here


@pytest.fixture
def suite_file(tmp_path, tiny_model_dir) -> Path:
    """Generated data (two sandbox tasks) with the shipped sandbox model, and a JSONL file
    with the tiny CLIP; the shared SugarCrepe file too where it is there."""
    Image.new("RGB", (40, 30), (200, 20, 20)).save(tmp_path / "red.png")
    rows = [{"id": str(k), "image": "red.png", "positive": "a red square", "negatives": ["a blue circle"]} for k in range(3)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = f"""models = ["comclip/sandbox"]
methods = ["clip", "comclip"]

[[datasets]]
name = "sandbox"
label = "binding"
task = "binding"
n = 12

[[datasets]]
name = "sandbox"
label = "order"
task = "order-swap"
n = 12

[[datasets]]
name = "jsonl"
data = "{tmp_path / "data.jsonl"}"
models = ["{tiny_model_dir}"]
methods = ["clip"]
"""
    shared = SHARED_DATA / "sugarcrepe" / "sugarcrepe-coco-mini-dev.json"
    if shared.exists():
        text += f'\n[[datasets]]\nname = "sugarcrepe"\ndata = "{shared}"\nimage_dir = "{SHARED_DATA / "coco-mini" / "val2017"}"\nlimit = 4\n'
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return path


def _suite(path, out, *extra, **kwargs):
    return run_cli_here(["suite", path, "--out", out, "--bootstrap", "100", "--no-cache", "--workers", "0", *extra], **kwargs)


def test_a_killed_suite_resumes_to_the_report_of_an_uninterrupted_one(suite_file, tmp_path):
    whole = _suite(suite_file, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    combined = json.loads((tmp_path / "whole" / "suite.json").read_text())
    cells = {c["name"] for c in combined["cells"]}
    assert {"binding/comclip/sandbox", "order/comclip/sandbox"} <= cells and all(c["scored"] for c in combined["cells"])
    rows = list(csv.DictReader((tmp_path / "whole" / "suite.csv").open()))
    order = {(r["dataset"], r["method"]): r for r in rows}
    assert order["order", "comclip"]["metric"] == "group" and order["order", "comclip"]["vs_clip"] != ""
    assert "## binding" in (tmp_path / "whole" / "suite.md").read_text() and (tmp_path / "whole" / "binding.png").exists()

    out = tmp_path / "killed"
    args = [
        sys.executable,
        "-m",
        "comclip",
        "suite",
        suite_file,
        "--out",
        out,
        "--bootstrap",
        "100",
        "--no-cache",
        "--workers",
        "0",
    ]
    process = subprocess.Popen(list(map(str, args)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    first = out / "binding__comclip-sandbox" / "report.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not first.exists():
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert first.exists() and not (out / "suite.json").exists()
    refused = _suite(suite_file, out)
    assert refused.returncode == 2 and "already holds results" in refused.stderr and "--resume" in refused.stderr
    resumed = _suite(suite_file, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "suite.json").read_text())["rows"] == combined["rows"]


def test_dry_run_lists_the_cells_and_checks_the_files_before_any_model_loads(tmp_path):
    Image.new("RGB", (40, 30), (200, 20, 20)).save(tmp_path / "red.png")
    rows = [{"id": "a", "image": "red.png", "positive": "a dog", "negatives": ["a cat"]},
            {"id": "b", "image": "gone.png", "positive": "a dog", "negatives": ["a cat"]}]  # fmt: skip
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = tmp_path / "suite.toml"
    suite.write_text(
        f'models = ["{tmp_path / "no-such-model"}", "m2"]\n\n[[datasets]]\nname = "jsonl"\ndata = "{tmp_path / "data.jsonl"}"\n'
    )
    result = _suite(suite, tmp_path / "o", "--dry-run")
    assert result.returncode == 2, result.stderr
    assert result.stdout.count("cell: jsonl/") == 2 and "problem: jsonl: 2 examples, 1 image files missing" in result.stdout
    assert str(tmp_path / "gone.png") in result.stdout and not (tmp_path / "o").exists()
    only = _suite(suite, tmp_path / "o", "--dry-run", "--only", "*/m2")
    assert only.stdout.count("cell: ") == 1


def test_relative_data_paths_are_read_under_the_data_root(cli, tmp_path, monkeypatch):
    """A shipped suite points at other data without a copy: --data-root, else the file's own
    data_root (relative to the file); hub names and absolute paths stay as written."""
    from comclip.eval.experiments.suite import read_suite

    data = tmp_path / "elsewhere" / "data"
    data.mkdir(parents=True)
    Image.new("RGB", (40, 30), (200, 20, 20)).save(data / "red.png")
    (data / "rows.jsonl").write_text(json.dumps({"id": "a", "image": "red.png", "positive": "a dog", "negatives": ["a cat"]}))
    suites = tmp_path / "suites"
    suites.mkdir()
    text = 'models = ["m"]\n[[datasets]]\nname = "jsonl"\ndata = "data/rows.jsonl"\n'
    text += '[[datasets]]\nname = "winoground"\ndata = "hf:facebook/winoground"\n'
    (suites / "plain.toml").write_text(text)
    (suites / "rooted.toml").write_text('data_root = "../elsewhere"\n' + text)
    monkeypatch.chdir(tmp_path)
    for suite, root in ((suites / "plain.toml", tmp_path / "elsewhere"), (suites / "rooted.toml", None)):
        jsonl, hub = read_suite(suite, data_root=root)
        assert Path(jsonl.entry.options["data"]).resolve() == data / "rows.jsonl"
        assert hub.entry.options["data"] == "hf:facebook/winoground"
    code, out, err = cli("suite", suites / "plain.toml", "--out", tmp_path / "o", "--dry-run", "--only", "jsonl/*",
                         "--data-root", tmp_path / "elsewhere")  # fmt: skip
    assert code == 0 and "jsonl: 1 examples" in out, out + err
    code, _, err = cli("suite", suites / "plain.toml", "--out", tmp_path / "o", "--dry-run", "--data-root", tmp_path / "no")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--data-root" in err and "not a folder" in err, err


@pytest.mark.parametrize(
    "text, words",
    [
        ('models = ["m"]\n', ["no [[datasets]]"]),
        ('models = ["m"]\n[[datasets]]\nname = "nope"\n', ["'nope' is not a dataset"]),
        ('models = ["m"]\n[[datasets]]\nname = "jsonl"\nlimt = 3\n', ["unknown key 'limt'"]),
        ('models = ["m"]\n[[datasets]]\nname = "jsonl"\nlimit = "3"\n', ["limit must be a whole number"]),
        ('models = ["m"]\n[[datasets]]\nname = "jsonl"\nlimit = 0\n', ["limit must be positive"]),
        ('models = ["m"]\nties = "maybe"\n[[datasets]]\nname = "jsonl"\n', ["unknown ties 'maybe'"]),
        ('models = ["m"]\n[[datasets]]\nname = "jsonl"\npipeline = {weighting = "nope"}\n', ["pipeline", "'nope'"]),
        ('models = ["m"]\npipeline = {wieghting = "sum"}\n[[datasets]]\nname = "jsonl"\n', ["pipeline", "wieghting"]),
        ('models = ["m"]\nmethods = ["clip", "mine"]\n[[datasets]]\nname = "jsonl"\n', ["unknown method 'mine'"]),
        ('[[datasets]]\nname = "jsonl"\n', ["no models"]),
        ('models = ["m"]\n[[datasets]]\nname = "jsonl"\n[[datasets]]\nname = "jsonl"\n', ["two datasets are labelled 'jsonl'"]),
        ('models = ["m"\n', ["not valid TOML"]),
        ('models = ["m"]\nseed = 3\n[[datasets]]\nname = "jsonl"\n', ["unknown top-level key 'seed'"]),
        ('models = ["m"]\nmethods = []\n[[datasets]]\nname = "jsonl"\n', ["no methods"]),
        ('models = ["m"]\n[[datasets]]\nname = "sugarcrepe"\nn = 5\n', ["sugarcrepe dataset takes no n"]),
        ('models = ["m"]\n[[datasets]]\nname = "jsonl"\nseed = 2\n', ["jsonl dataset takes no seed"]),
        ('models = ["m"]\n[[datasets]]\nname = "sandbox"\nsplit = "test"\n', ["sandbox dataset takes no split"]),
        ('models = ["m"]\n[[datasets]]\nname = "sandbox"\nseed = -1\n', ["seed must be 0 or more"]),
        ('models = ["m"]\n[[datasets]]\nname = "jsonl"\nbootstrap_seed = -4\n', ["bootstrap_seed must be 0 or more"]),
        ('models = ["m"]\ndata_root = "nowhere"\n[[datasets]]\nname = "jsonl"\n', ["data_root 'nowhere'", "not a folder"]),
        ('models = ["m"]\ndata_root = 3\n[[datasets]]\nname = "jsonl"\n', ["data_root must be a folder's path"]),
    ],
)
def test_a_mistake_in_the_suite_file_is_one_line(text, words, cli, tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(text)
    code, _, err = cli("suite", suite, "--out", tmp_path / "o", "--dry-run")
    assert code == 2 and len(err.strip().splitlines()) == 1 and str(suite) in err, err
    assert all(word in err for word in words), err


@pytest.mark.parametrize("name", ["paper.toml", "compositional.toml"])
def test_the_shipped_suites_are_valid(name):
    """suites/paper.toml (the paper's benchmarks and backbones) and suites/compositional.toml
    name real datasets, methods and keys (their data is the user's to fetch)."""
    from comclip.eval.experiments.suite import read_suite

    cells = read_suite(Path(__file__).resolve().parents[1] / "suites" / name)
    datasets = {cell.entry.name for cell in cells}
    expected = (
        {"winoground", "vl_checklist", "svo_probes", "comvg", "retrieval"}
        if name == "paper.toml"
        else {"sugarcrepe", "sugarcrepe_pp", "valse", "aro", "whatsup", "mmvp", "colorswap", "cola"}
    )
    assert datasets == expected


def test_a_suite_takes_the_sandbox_pixel_and_crowded_tasks(tmp_path):
    """A suite's sandbox entries name the new tasks and groups as ``--task`` does: the cells open
    the items of those tasks, and an unknown task is one error before any model loads."""
    from comclip.errors import InputError
    from comclip.eval.experiments.suite import read_suite

    suite = tmp_path / "pixels.toml"
    suite.write_text(
        'models = ["comclip/sandbox-bow"]\nmethods = ["clip", "comclip-plus"]\n\n'
        '[[datasets]]\nname = "sandbox"\nlabel = "relations"\ntask = "depth,direction"\nn = 3\n\n'
        '[[datasets]]\nname = "sandbox"\nlabel = "crowded"\ntask = "crowded"\nn = 2\n'
    )
    relations, crowded = read_suite(suite)
    assert {ex.subset for ex in relations.entry.open().examples} == {"depth", "direction"}
    opened = crowded.entry.open()
    assert {ex.subset for ex in opened.examples} == {
        "crowded-binding",
        "crowded-object-swap",
        "crowded-depth",
        "crowded-direction",
    }
    assert len(opened.examples) == 8 and all(ex.boxes for ex in opened.examples)
    suite.write_text(suite.read_text().replace('"crowded"', '"crowded-swap"'))
    with pytest.raises(InputError, match="crowded-swap"):
        read_suite(suite)[1].entry.open()


def test_a_suite_whose_cells_scored_nothing_exits_1_saying_which(tiny_model_dir, tmp_path):
    """Every example's image undecodable: each cell's report is written and the suite's table
    too, and, as ``eval`` does, each method that scored nothing is one line and the exit is 1
    (it was 0 and said nothing)."""
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    rows = [{"id": str(n), "image": "broken.png", "positive": "a red square", "negatives": ["a blue square"]} for n in range(2)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = tmp_path / "suite.toml"
    suite.write_text(
        f'models = ["{tiny_model_dir}"]\nmethods = ["clip"]\n[[datasets]]\nname = "jsonl"\ndata = "{tmp_path / "data.jsonl"}"\n'
    )
    result = _suite(suite, tmp_path / "o")
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("comclip: error:")]
    assert len(errors) == 1 and "jsonl" in errors[0] and "clip scored no example" in errors[0], result.stderr
    assert (tmp_path / "o" / "suite.md").exists() and "Traceback" not in result.stderr


def test_a_dry_run_of_a_huge_sandbox_draws_no_item(cli, tmp_path, monkeypatch):
    """The sandbox draws its images: a dry run counts its 400 million examples and draws none."""
    from comclip.sandbox import dataset

    drawn = []
    monkeypatch.setattr(dataset, "make_pair", lambda *a: drawn.append(a))
    suite = tmp_path / "suite.toml"
    suite.write_text('models = ["comclip/sandbox"]\nmethods = ["clip"]\n[[datasets]]\nname = "sandbox"\nn = 100000000\n')
    code, out, _ = cli("suite", suite, "--out", tmp_path / "o", "--dry-run")
    assert code == 0 and "400000000 examples" in out and drawn == []


def _small_suite(tmp_path, model, labels=("one", "two"), name="suite.toml") -> Path:
    Image.new("RGB", (40, 30), (200, 20, 20)).save(tmp_path / "red.png")
    rows = [{"id": str(k), "image": "red.png", "positive": "a red square", "negatives": ["a blue circle"]} for k in range(2)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = f'models = ["{model}"]\nmethods = ["clip"]\n'
    for label in labels:
        text += f'[[datasets]]\nname = "jsonl"\nlabel = "{label}"\ndata = "{tmp_path / "data.jsonl"}"\n'
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("labels", [("a/b", "a-b"), ("Evil", "evil"), ("../../evil", "evil")])
def test_cells_that_would_share_a_folder_are_refused_before_anything_runs(labels, cli, tmp_path, tiny_model_dir):
    suite = _small_suite(tmp_path, tiny_model_dir, labels)
    for extra in (["--dry-run"], []):
        code, _, err = cli("suite", suite, "--out", tmp_path / "o", *extra)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "share the folder" in err, err
    assert not (tmp_path / "o").exists()


def test_a_suites_folder_is_its_own(cli, tmp_path, tiny_model_dir):
    """Another suite on the same --out is refused, not mixed; the same suite again needs
    --resume; --only with --resume keeps the other finished cells in the tables; a suite
    running holds the folder."""
    from comclip.eval.runs.store import folder_lock

    out, args = tmp_path / "o", ["--bootstrap", "50", "--no-cache", "--workers", "0"]
    first = _small_suite(tmp_path, tiny_model_dir)
    assert cli("suite", first, "--out", out, *args)[0] == 0
    tables = json.loads((out / "suite.json").read_text())
    other = _small_suite(tmp_path, tiny_model_dir, ("three",), name="other.toml")
    code, _, err = cli("suite", other, "--out", out, *args)
    assert code == 2 and "another suite" in err and json.loads((out / "suite.json").read_text()) == tables
    code, _, err = cli("suite", first, "--out", out, *args)
    assert code == 2 and "already holds" in err and "--resume" in err
    assert cli("suite", first, "--out", out, "--only", "one/*", "--resume", *args)[0] == 0
    again = json.loads((out / "suite.json").read_text())
    assert [c["scored"] for c in again["cells"]] == [True, True] and again["rows"] == tables["rows"]
    with folder_lock(out):
        code, _, err = cli("suite", first, "--out", out, "--resume", *args)
    assert code == 2 and "in use by another comclip run" in err


def test_a_suite_whose_model_does_not_load_leaves_no_folder(cli, tmp_path):
    suite = _small_suite(tmp_path, tmp_path / "no-such-model")
    code, _, err = cli("suite", suite, "--out", tmp_path / "results" / "o", "--no-cache")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()


def test_a_cell_whose_report_lost_its_metrics_is_rebuilt_by_resume(cli, tmp_path, tiny_model_dir):
    out, args = tmp_path / "o", ["--bootstrap", "50", "--no-cache", "--workers", "0"]
    suite = _small_suite(tmp_path, tiny_model_dir)
    assert cli("suite", suite, "--out", out, *args)[0] == 0
    tables = json.loads((out / "suite.json").read_text())
    report = next(out.glob("one__*")) / "report.json"
    damaged = json.loads(report.read_text())
    for run in damaged["runs"]:
        del run["metrics"]
    report.write_text(json.dumps(damaged))
    code, _, err = cli("suite", suite, "--out", out, "--resume", *args)
    assert code == 0, err
    assert (
        "metrics" in json.loads(report.read_text())["runs"][0]
        and json.loads((out / "suite.json").read_text())["rows"] == tables["rows"]
    )
