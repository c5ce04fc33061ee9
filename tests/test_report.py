"""The report (comclip.eval.report): failed examples count against every metric of their
kind, paired comparisons on examples both scored, and the one-line reason of a method that
scored nothing."""

from __future__ import annotations

import pytest


def test_failures_count_as_wrong_and_methods_are_compared_on_shared_examples():
    from comclip.eval.report import compare_with, summarise_run

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
    from comclip.eval.datasets import Dataset
    from comclip.eval.report import unscored, write_report

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
