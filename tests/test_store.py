"""The result store (comclip.eval.runs.store): the record log and its resume rules, the run
manifest, and the merge of several processes' shards, as units without a model."""

from __future__ import annotations

import json

import pytest

from comclip.errors import InputError
from comclip.eval.runs.store import PER_EXAMPLE, RUN_FILE, ResultLog, differences, finished, merge_shards, read_all
from comclip.world import World


def _record(method: str, key: str, value: int = 0) -> dict:
    return {"id": key, "method": method, "status": "ok", "value": value}


def test_records_are_written_as_they_come_and_read_back_on_resume(tmp_path):
    manifest = {"dataset": {"content_sha256": "abc"}, "limit": None}
    with ResultLog(tmp_path, resume=False, manifest=manifest) as log:
        log.add(_record("clip", "a"))
        assert (tmp_path / PER_EXAMPLE).read_text().count("\n") == 1  # flushed at once
    assert json.loads((tmp_path / RUN_FILE).read_text()) == manifest
    with ResultLog(tmp_path, resume=True, manifest={**manifest, "limit": 5}) as log:  # the limit may change
        assert log.has("clip", "a") and not log.has("clip", "b")


def test_a_folder_with_results_is_never_appended_to_without_resume_or_by_another_run(tmp_path):
    with ResultLog(tmp_path, resume=False, manifest={"model": "one"}) as log:
        log.add(_record("clip", "a"))
    with pytest.raises(InputError, match="already holds results"):
        ResultLog(tmp_path, resume=False, manifest={"model": "one"})
    with pytest.raises(InputError, match=r"another run \(model: \"one\" -> \"two\"\)"):
        ResultLog(tmp_path, resume=True, manifest={"model": "two"})
    (tmp_path / RUN_FILE).unlink()
    with pytest.raises(InputError, match="no readable run.json"):
        ResultLog(tmp_path, resume=True, manifest={"model": "one"})


def test_a_line_cut_by_a_kill_is_skipped_and_the_next_record_starts_a_line(tmp_path):
    (tmp_path / PER_EXAMPLE).write_text(json.dumps(_record("clip", "a")) + "\n" + '{"id": "b", "meth')
    (tmp_path / RUN_FILE).write_text("{}")
    with ResultLog(tmp_path, resume=True, manifest={}) as log:
        assert set(log.done) == {("clip", "a")}
        log.add(_record("clip", "b"))
    assert set(read_all(tmp_path)) == {("clip", "a"), ("clip", "b")}


def test_shards_merge_in_order_into_one_file_and_are_removed(tmp_path, monkeypatch):
    import comclip.eval.runs.store as store

    monkeypatch.setattr(store, "barrier", lambda world: None)  # the two processes are played here in turn
    logs = [ResultLog(tmp_path, resume=False, world=World(rank=rank, size=2)) for rank in (0, 1)]  # all check first
    for rank, log in enumerate(logs):
        with log:
            for n in range(rank, 5, 2):  # each process takes every second example
                log.add(_record("clip", f"e{n}", n))
    assert not (tmp_path / PER_EXAMPLE).exists()
    order = [("clip", f"e{n}") for n in range(5)]
    merged = merge_shards(tmp_path, order, known={})
    assert list(merged) == order and [r["value"] for r in merged.values()] == [0, 1, 2, 3, 4]
    assert not list(tmp_path.glob("per_example.rank*.jsonl"))
    lines = (tmp_path / PER_EXAMPLE).read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [f"e{n}" for n in range(5)]


def test_without_shards_the_known_records_are_returned_in_order_and_nothing_is_rewritten(tmp_path):
    known = {("clip", "b"): _record("clip", "b"), ("clip", "a"): _record("clip", "a"), ("x", "z"): _record("x", "z")}
    merged = merge_shards(tmp_path, [("clip", "a"), ("clip", "b")], known)
    assert list(merged) == [("clip", "a"), ("clip", "b"), ("x", "z")]  # records beyond the order come last
    assert not (tmp_path / PER_EXAMPLE).exists()


def test_finished_needs_both_reports_whole_and_agreeing_with_the_records(tmp_path):
    """A run is finished only when report.json parses and counts the log's records, and
    report.md exists; a report cut short or a missing file is not finished (resume rebuilds)."""
    (tmp_path / RUN_FILE).write_text(json.dumps({"limit": 3}))
    (tmp_path / PER_EXAMPLE).write_text("".join(json.dumps(_record("clip", k)) + "\n" for k in "ab"))
    assert not finished(tmp_path, {"limit": 3})
    report = json.dumps({"runs": [{"method": "clip", "n_examples": 2, "metrics": {}}]})
    (tmp_path / "report.json").write_text(report)
    assert not finished(tmp_path, {"limit": 3})  # no report.md
    (tmp_path / "report.md").write_text("# report")
    assert finished(tmp_path, {"limit": 3}) and not finished(tmp_path, {"limit": 4})
    (tmp_path / "report.json").write_text(report[:20])  # cut short
    assert not finished(tmp_path, {"limit": 3})
    (tmp_path / "report.json").write_text(json.dumps({"runs": [{"method": "clip", "n_examples": 1, "metrics": {}}]}))
    assert not finished(tmp_path, {"limit": 3})  # counts fewer records than the log holds
    (tmp_path / "report.json").write_text(json.dumps({"runs": [{"method": "clip", "n_examples": 2}]}))
    assert not finished(tmp_path, {"limit": 3})  # lost its metrics


def test_differences_name_each_changed_leaf():
    old = {"model": {"name": "a", "fingerprint": "1"}, "methods": {"comclip": {"fill": "black"}}}
    new = {"model": {"name": "a", "fingerprint": "2"}, "methods": {"comclip": {"fill": "mean"}}}
    assert differences(old, new) == ['methods.comclip.fill: "black" -> "mean"', 'model.fingerprint: "1" -> "2"']


def test_a_run_recorded_before_a_rename_is_the_same_run(tmp_path):
    """run.json written under a field's former name (``fill``) resumes under its current one."""
    old = {"methods": {"comclip": {"weighting": "sum", "fill": "black", "relations": "off"}}, "limit": None}
    new = {"methods": {"comclip": {"weighting": "sum", "subimage_fill": "black", "relation_check": "off"}}, "limit": None}
    (tmp_path / RUN_FILE).write_text(json.dumps(old))
    (tmp_path / PER_EXAMPLE).write_text(json.dumps(_record("comclip", "a")) + "\n")
    with ResultLog(tmp_path, resume=True, manifest=new) as log:
        assert log.has("comclip", "a")
    assert json.loads((tmp_path / RUN_FILE).read_text()) == new  # rewritten under the current names
    changed = {"methods": {"comclip": {**new["methods"]["comclip"], "subimage_fill": "mean"}}, "limit": None}
    (tmp_path / RUN_FILE).write_text(json.dumps(old))
    with pytest.raises(InputError, match="another run"):
        ResultLog(tmp_path, resume=True, manifest=changed)


def test_a_run_recorded_before_ties_could_be_chosen_was_strict(tmp_path):
    """run.json without ``ties`` (written before ``--ties``) is the same run as ``strict``, and
    another run than ``first``."""
    old = {"methods": {"clip": {"model": "m"}}, "limit": None}
    (tmp_path / RUN_FILE).write_text(json.dumps(old))
    (tmp_path / PER_EXAMPLE).write_text(json.dumps(_record("clip", "a")) + "\n")
    with ResultLog(tmp_path, resume=True, manifest={**old, "ties": "strict"}) as log:
        assert log.has("clip", "a")
    (tmp_path / RUN_FILE).write_text(json.dumps(old))
    with pytest.raises(InputError, match='ties: "strict" -> "first"'):
        ResultLog(tmp_path, resume=True, manifest={**old, "ties": "first"})
