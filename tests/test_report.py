"""The report (comclip.eval.reports.report): failed examples count against every metric of their
kind, paired comparisons on examples both scored, and the one-line reason of a method that
scored nothing."""

from __future__ import annotations

import pytest


def test_failures_count_as_wrong_and_methods_are_compared_on_shared_examples():
    from comclip.eval.reports.report import compare_with, summarise_run

    def record(id_, ok, value=None):
        base = {"id": id_, "kind": "caption_choice", "subset": "", "tags": []}
        return {**base, "status": "ok", "correct": {"accuracy": value}} if ok else {**base, "status": "failed", "error": "x"}

    clip = [record("a", True, True), record("b", True, False), record("c", True, True)]
    comclip = [record("a", True, True), record("b", True, True), record("c", False)]
    summary = summarise_run(comclip, n_bootstrap=100)
    assert summary["metrics"]["accuracy"]["value"] == pytest.approx(200 / 3)  # c failed: wrong, not left out
    assert (summary["n_scored"], summary["n_failed"]) == (2, 1)
    (comparison,) = compare_with("clip", {"clip": clip, "comclip": comclip}, n_bootstrap=100)
    assert comparison["n"] == 2 and comparison["difference"] == pytest.approx(50.0)  # on a and b only
    assert (comparison["improved"], comparison["worsened"]) == (1, 0)


def test_a_method_that_scored_nothing_gets_one_line_naming_its_most_common_error(tmp_path):
    from comclip.eval.benchmarks.datasets import Dataset
    from comclip.eval.reports.report import unscored, write_report

    def failed(n: int, error: str) -> dict:
        return {
            "id": f"e{n}",
            "method": "comclip",
            "kind": "caption_choice",
            "subset": "",
            "tags": [],
            "status": "failed",
            "error": error,
        }

    results = {("comclip", f"e{n}"): failed(n, f"image not found: /data/img{n}.png") for n in range(3)}
    results[("comclip", "e3")] = failed(3, "caption is empty")
    report = write_report(Dataset("toy", "test", []), "tiny", {"comclip": {}}, results, tmp_path, n_bootstrap=0)
    assert unscored(report) == [
        "method comclip scored none of its 4 examples; the most common error (3 of them): image not found: /data/img0.png"
    ]
    assert (tmp_path / "report.json").exists() and "## Failed examples" in (tmp_path / "report.md").read_text()
    assert report["runs"][0]["metrics"]["accuracy"]["value"] == 0.0  # every failure counts as wrong


def _metric(value, low, high):
    return {"value": value, "ci95": [low, high]}


def _legend_report(difference, interval):
    clip = {"method": "clip", "config": {"model": "m"}, "metrics": {"group": _metric(40.0, 30.0, 50.0)},
            "subsets": {"a": {"group": _metric(20.0, 10, 30)}, "b": {"group": _metric(60.0, 50, 70)}}}  # fmt: skip
    composed = {"method": "mine", "config": {"model": "m", "weighting": "softmax", "subimage_fill": "mean",
                "score_mode": "evidence", "evidence_weight": 2.0, "parser": {"name": "spacy"}, "grounder": {"name": "clip"}},
                "metrics": {"group": _metric(40.0 + difference, 30.0 + difference, 50.0 + difference)},
                "subsets": {"a": {"group": _metric(50.0, 40, 60)}, "b": {"group": _metric(55.0, 45, 65)}}}  # fmt: skip
    comparison = {"method": "mine", "metric": "group", "n": 100, "difference": difference, "ci95": interval,
                  "improved": 30, "worsened": 10, "p_mcnemar": 0.002}  # fmt: skip
    return {"runs": [clip, composed], "comparisons": [comparison]}


def test_the_takeaway_is_computed_from_the_numbers():
    from comclip.eval.reports.legend import takeaway

    ahead = "\n".join(takeaway(_legend_report(25.0, [15.0, 35.0])))
    assert (
        "Best on group: **mine**, 65.0% [55.0, 75.0], against CLIP's 40.0% [30.0, 50.0]; the two intervals do not overlap"
        in ahead
    )
    assert "mine: +25.0 points against CLIP on the 100 examples both scored (paired 95% interval [15.0, 35.0]): ahead." in ahead
    assert "ahead of CLIP on a (+30.0) and behind on b (-5.0)" in ahead
    level = "\n".join(takeaway(_legend_report(4.0, [-2.0, 10.0])))
    assert "the two intervals overlap" in level and "not told apart from CLIP here (the interval holds 0)" in level
    behind = "\n".join(takeaway(_legend_report(-8.0, [-12.0, -4.0])))
    assert "Best on group: **clip**" in behind and ": behind." in behind
    tie = "\n".join(takeaway(_legend_report(0.0, [-5.0, 5.0])))  # an exact tie is no one's win
    assert "Best on group: a tie between **clip** and **mine**, 40.0%" in tie and "**clip**, 40.0%" not in tie


def test_the_legend_gives_the_sum_weighting_as_the_code_computes_it():
    from comclip.eval.reports.legend import describe_method

    described = describe_method("comclip", {"weighting": "sum", "parser": "spacy", "grounder": "clip"})
    assert "w_i = s_i / sum_j s_j" in described and "w_i = s_i," not in described


def test_the_legend_says_what_each_part_of_a_label_means():
    from comclip.eval.reports.legend import legend

    lines = legend(_legend_report(25.0, [15.0, 35.0]))
    assert lines[3].startswith("- **clip**: plain CLIP")
    mine = lines[4]
    assert "softmax of the s_i" in mine and "image's mean colour" in mine and "plus 2.0 x how well" in mine
    assert "parsed by spacy, entities grounded by clip" in mine and "+geometry" not in mine
