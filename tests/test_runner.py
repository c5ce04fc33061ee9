"""The evaluation engine (comclip.eval.runs.runner): one loop over a small task interface, for
examples and retrieval alike; evaluate() picks the task from the dataset."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from comclip.errors import InputError
from comclip.eval.runs.runner import TASKS, ExampleTask, run_task
from comclip.eval.runs.store import PER_EXAMPLE, ResultLog
from comclip.world import World


class CountingTask:
    """A task of ``n`` units in batches of two, each unit one record per method."""

    unit = "unit"
    notes: dict[str, dict] = {}

    def __init__(self, n: int, methods=("a", "b")):
        self.ids, self.methods = [f"u{k}" for k in range(n)], list(methods)
        self.planned = 0

    def plan(self, results: ResultLog, world: World) -> int:
        self.todo = [(m, i) for i in world.shard(self.ids) for m in self.methods if not results.has(m, i)]
        self.planned += 1
        return len(self.todo)

    def records(self) -> Iterator[tuple[list[dict], int]]:
        for start in range(0, len(self.todo), 2):
            part = self.todo[start : start + 2]
            yield [self.record(m, i) for m, i in part], len(part)

    @staticmethod
    def record(method: str, unit: str) -> dict:
        return {
            "id": unit,
            "method": method,
            "kind": "caption_choice",
            "subset": "",
            "tags": [],
            "status": "ok",
            "correct": {"accuracy": unit != "u0"},
        }

    def order(self):
        return [(m, i) for i in self.ids for m in self.methods]


def test_run_task_writes_every_record_and_returns_them_in_the_tasks_order(tmp_path):
    records = run_task(CountingTask(3), tmp_path, progress=False)
    assert list(records) == [(m, f"u{k}") for k in range(3) for m in ("a", "b")]
    lines = (tmp_path / PER_EXAMPLE).read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(line)["status"] == "ok" for line in lines)


def test_run_task_resumes_only_what_is_left(tmp_path):
    run_task(CountingTask(2), tmp_path, progress=False)
    bigger = CountingTask(4)
    records = run_task(bigger, tmp_path, resume=True, progress=False)
    assert len(bigger.todo) == 4 and len(records) == 8  # 2 new units x 2 methods; the rest read back
    assert (tmp_path / PER_EXAMPLE).read_text().count("\n") == 8


def test_run_task_refuses_a_folder_holding_results_before_planning(tmp_path):
    run_task(CountingTask(1), tmp_path, progress=False)
    task = CountingTask(1)
    with pytest.raises(InputError, match="already holds results"):
        run_task(task, tmp_path, progress=False)
    assert task.planned == 0  # nothing was encoded for a folder that cannot take the run


def test_every_dataset_task_is_registered_without_an_import_and_the_example_task_checks_its_limit():
    from comclip.errors import InputError
    from comclip.eval.benchmarks.datasets import Dataset
    from comclip.eval.benchmarks.datasets.retrieval import RetrievalDataset

    assert {Dataset.task, RetrievalDataset.task} <= set(TASKS)  # read lazily: nothing imported for it first
    assert TASKS[RetrievalDataset.task].__module__ == "comclip.eval.runs.recall"
    with pytest.raises(InputError, match="--limit must be at least 1"):
        ExampleTask(Dataset("x", "test", []), {}, limit=0)


def test_evaluate_runs_the_task_the_dataset_names(monkeypatch, tiny_backbone, tmp_path):
    """A dataset with a task of its own is evaluated through it: evaluate() has no branch per kind of dataset."""
    from dataclasses import dataclass, field

    from comclip.eval.runs.evaluate import evaluate

    @dataclass
    class Counted:
        name: str = "counted"
        split: str = "test"
        source: str = ""
        licence: str = ""
        origin: str = ""
        examples: list = field(default_factory=list)
        task = "counting"

        def content_rows(self):
            yield b"three units"

    monkeypatch.setitem(TASKS._items, "counting", lambda dataset, backbone, pipelines, **options: CountingTask(3, pipelines))
    report = evaluate(Counted(), tiny_backbone, {"a": None, "b": None}, tmp_path, progress=False)
    assert [run["n_examples"] for run in report["runs"]] == [3, 3]
    assert round(report["runs"][0]["metrics"]["accuracy"]["value"], 2) == 66.67
