"""`comclip eval` and ``evaluate()`` (comclip.eval.runs.evaluate and its runner): every example is
scored or counted as failed, runs resume to the same report, options and ties are the user's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from comclip.eval.benchmarks.datasets import load_dataset


def test_jsonl_eval_counts_failures_and_writes_report(cli, tiny_model_dir, jsonl_data, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = cli("eval", "jsonl", "--data", jsonl_data, "--model", tiny_model_dir, "--out", out)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert set(report) >= {"dataset", "split", "model", "versions", "runs", "seed"}
    assert report["versions"]["torch"] and report["versions"]["comclip"]
    assert [r["method"] for r in report["runs"]] == ["clip", "comclip"]
    for run in report["runs"]:
        assert run["n_scored"] == 3 and run["n_failed"] == 1
        assert run["failures"][0]["id"] == "c" and "image not found" in run["failures"][0]["error"]
        accuracy = run["metrics"]["accuracy"]
        assert 0 <= accuracy["value"] <= 100 and accuracy["ci95"][0] <= accuracy["value"] <= accuracy["ci95"][1]
        assert set(run["subsets"]) == {"colour", "shape"}
    assert report["runs"][1]["config"]["weighting"] == "sum"
    lines = (out / "per_example.jsonl").read_text().splitlines()
    assert len(lines) == 8
    assert "| clip | 3 | 1 |" in (out / "report.md").read_text()


def test_killed_run_resumes_to_the_same_report(cli, tiny_model_dir, jsonl_data, tmp_path):
    full, partial = tmp_path / "full", tmp_path / "partial"
    assert cli("eval", "jsonl", "--data", jsonl_data, "--model", tiny_model_dir, "--out", full)[0] == 0
    partial.mkdir()
    lines = (full / "per_example.jsonl").read_text().splitlines()
    # As if killed after three examples, in the middle of writing the fourth line.
    (partial / "per_example.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:25])
    (partial / "run.json").write_text((full / "run.json").read_text())  # written when the run started
    code, _, err = cli("eval", "jsonl", "--data", jsonl_data, "--model", tiny_model_dir, "--out", partial)
    assert code == 2 and "--resume" in err  # never overwrites silently
    assert cli("eval", "jsonl", "--data", jsonl_data, "--model", tiny_model_dir, "--out", partial, "--resume")[0] == 0
    a, b = (json.loads((d / "report.json").read_text()) for d in (full, partial))
    assert a["runs"] == b["runs"]
    code, out, err = cli("eval", "jsonl", "--data", jsonl_data, "--model", tiny_model_dir, "--out", partial, "--resume")
    assert code == 0 and "already finished" in err


def test_decoding_workers_and_precision_options(cli, tiny_model_dir, jsonl_data, tmp_path):
    runs = {}
    for workers in ("0", "2"):
        out = tmp_path / f"w{workers}"
        assert cli("eval", "jsonl", "--data", jsonl_data, "--model", tiny_model_dir, "--out", out, "--workers", workers)[0] == 0
        runs[workers] = json.loads((out / "report.json").read_text())["runs"]
    assert runs["0"] == runs["2"]  # the missing image fails the same way in a worker
    code, _, err = cli(
        "eval", "jsonl", "--data", jsonl_data, "--model", tiny_model_dir, "--out", tmp_path / "p", "--precision", "half"
    )
    assert code == 2 and "--precision: invalid choice: 'half'" in err and len(err.strip().splitlines()) == 1
    out = tmp_path / "bf16"
    assert cli("eval", "jsonl", "--data", jsonl_data, "--model", tiny_model_dir, "--out", out, "--precision", "amp_bf16")[0] == 0
    report = json.loads((out / "report.json").read_text())
    assert report["backbone"]["precision"] == "amp_bf16"


def test_batched_scoring_equals_one_at_a_time(tiny_backbone, jsonl_data, tmp_path):
    """Chunks of examples scored in one batched pass give the same records as one by one."""
    from comclip.eval.runs import runner
    from comclip.eval.runs.scorers import clip_scorer, comclip_scorer
    from comclip.pipeline import ComCLIP

    dataset = load_dataset("jsonl", jsonl_data)
    scorers = {"clip": clip_scorer(tiny_backbone), "comclip": comclip_scorer(ComCLIP(tiny_backbone))}
    one = runner.run(dataset, scorers, tmp_path / "one", chunk=1)
    many = runner.run(dataset, scorers, tmp_path / "many", chunk=32)
    # files decoded by two worker processes, one chunk of two examples ahead of the scoring
    prefetched = runner.run(dataset, scorers, tmp_path / "prefetched", chunk=2, workers=2)
    statuses = {key: record["status"] for key, record in one.items()}
    assert statuses == {(m, i): "failed" if i == "c" else "ok" for m in scorers for i in "abcd"}  # c's image is missing
    for other in (many, prefetched):
        assert one.keys() == other.keys()
        for key in one:
            assert one[key]["status"] == other[key]["status"]
            if one[key]["status"] == "ok":
                assert np.allclose(one[key]["scores"], other[key]["scores"], atol=1e-5)
            else:
                assert one[key]["error"] == other[key]["error"]


def test_fallbacks_are_flagged_per_example_and_counted_per_method(cli, tiny_model_dir, tmp_path):
    Image.new("RGB", (40, 30), (200, 20, 20)).save(tmp_path / "red.png")
    rows = [
        {"id": "parsed", "image": "red.png", "positive": "a red square", "negatives": ["a blue square"]},
        {"id": "unparsed", "image": "red.png", "positive": "a red square", "negatives": ["it is"]},
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "none.json").write_text(json.dumps({"red.png": {}}))  # no regions for the image
    out = tmp_path / "out"
    code, _, err = cli(
        "eval",
        "jsonl",
        "--data",
        tmp_path / "d.jsonl",
        "--model",
        tiny_model_dir,
        "--out",
        out,
        "--grounder",
        "regions",
        "--regions-file",
        tmp_path / "none.json",
    )
    assert code == 0, err
    records = {(r["method"], r["id"]): r for r in map(json.loads, (out / "per_example.jsonl").read_text().splitlines())}
    assert records[("comclip", "unparsed")]["flags"]["no_entities"] == 1
    assert "no_entities" not in records[("comclip", "parsed")]["flags"]
    assert records[("comclip", "parsed")]["flags"]["not_grounded"] == 2  # the regions file has no labels at all
    assert "flags" not in records[("clip", "parsed")]
    report = json.loads((out / "report.json").read_text())
    comclip = next(run for run in report["runs"] if run["method"] == "comclip")
    assert comclip["flags"]["no_entities"] == 1 and comclip["flags"]["not_grounded"] == 2
    for flag, count in comclip["flags"].items():  # each count: the examples whose records carry the flag
        assert count == sum(1 for (m, _), r in records.items() if m == "comclip" and r["flags"].get(flag))
    assert "## Fallbacks" in (out / "report.md").read_text()
    (comparison,) = report["comparisons"]
    assert comparison["method"] == "comclip" and comparison["n"] == 2 and comparison["metric"] == "accuracy"


def test_the_python_api_raises_when_a_method_scored_nothing(tiny_backbone, tmp_path):
    """``evaluate()`` on data whose every image is missing writes its report, then raises with
    the most common reason, as the command line exits 1; it never returns a run of nothing."""
    from comclip.eval.reports.report import NothingScored
    from comclip.eval.runs.evaluate import CLIP, evaluate, open_dataset

    rows = [{"id": str(k), "image": f"gone{k}.png", "positive": "a red square", "negatives": ["a blue square"]} for k in range(3)]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(NothingScored, match="method clip scored none of its 3 examples.*image not found") as raised:
        evaluate(open_dataset("jsonl", data), tiny_backbone, {"clip": CLIP}, tmp_path / "out", n_bootstrap=0)
    assert raised.value.report["runs"][0]["n_failed"] == 3
    assert json.loads((tmp_path / "out" / "report.json").read_text())["runs"][0]["n_scored"] == 0


def test_ties_are_counted_and_the_rule_is_the_users(cli, tiny_model_dir, tmp_path):
    """A false caption identical to the true one ties exactly: wrong under the default strict
    rule, right under ``--ties first``; each report counts the examples a tie decided, and a
    run is not resumed under the other rule."""
    Image.new("RGB", (40, 30), (200, 20, 20)).save(tmp_path / "red.png")
    rows = [
        {"id": "tie", "image": "red.png", "positive": "a red square", "negatives": ["a red square"]},
        {"id": "clear", "image": "red.png", "positive": "a red square", "negatives": ["a square red"]},
    ]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["eval", "jsonl", "--data", data, "--model", tiny_model_dir, "--method", "clip", "--bootstrap", "0", "--no-cache"]
    reports = {}
    for rule in ("strict", "first"):
        code, _, err = cli(*args, "--out", tmp_path / rule, "--ties", rule)
        assert code == 0, err
        reports[rule] = json.loads((tmp_path / rule / "report.json").read_text())
        assert reports[rule]["ties"]["rule"] == rule and reports[rule]["runs"][0]["ties"] == {"accuracy": 1}
        assert "Examples where a tie decided a metric: clip 1 (accuracy 1)" in (tmp_path / rule / "report.md").read_text()
    clear = json.loads((tmp_path / "strict" / "per_example.jsonl").read_text().splitlines()[1])["correct"]["accuracy"]
    strict, first = (reports[rule]["runs"][0]["metrics"]["accuracy"]["value"] for rule in ("strict", "first"))
    assert strict == 50.0 * clear and first == strict + 50.0
    code, _, err = cli(*args, "--out", tmp_path / "strict", "--ties", "first", "--resume")
    assert code == 2 and "ties" in err and "another run" in err, err


def test_a_dataset_whose_own_code_counts_ties_otherwise_says_so():
    from comclip.eval.reports.legend import tie_line

    report = {"ties": {"rule": "strict", "official": "first"}, "runs": [{"method": "clip", "ties": {}}]}
    lines = tie_line(report)
    assert "counts as wrong" in lines[0] and "none" in lines[0] and "`--ties first` reproduces" in lines[1]
    assert len(tie_line({**report, "ties": {"rule": "first", "official": "first"}})) == 1
