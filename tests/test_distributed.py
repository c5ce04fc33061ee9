"""Evaluations split across processes with torch.distributed (torchrun, gloo on CPU): the same
report as one process, and a killed two-process run resumed by one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from comclip.eval.runs.process_group import World, world_from_env
from comclip.eval.runs.store import LOCK_FILE

from .conftest import run_cli_here

ARGS = ["eval", "sandbox", "--task", "binding,order-swap", "--seed", "3", "--no-cache", "--workers", "0"]


def torchrun(args: list[str], processes: int = 2, **kwargs):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(processes),
        "-m",
        "comclip",
        *map(str, args),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return command, env


def test_the_world_comes_from_torchrun_or_slurm():
    assert world_from_env({}) == World()
    assert world_from_env({"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"}) == World(2, 4, 0)
    assert world_from_env({"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "MASTER_ADDR": "n1"}) == World(5, 8, 1)
    assert World(1, 3).shard(list(range(8))) == [1, 4, 7]
    env = {"WORLD_SIZE": "8", "RANK": "5", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
    assert world_from_env(env).nodes == 2 and world_from_env({**env, "LOCAL_WORLD_SIZE": "8"}).nodes == 1
    default = Path("/c/embeddings.sqlite")
    assert World(nodes=1).cache_path(default) == default
    assert World(nodes=2).cache_path(default) == Path(f"/c/embeddings.{socket.gethostname()}.sqlite")


def test_two_processes_give_the_report_of_one(tiny_model_dir, tmp_path):
    one = run_cli_here([*ARGS, "--items", "6", "--model", tiny_model_dir, "--out", tmp_path / "one"])
    assert one.returncode == 0, one.stderr
    command, env = torchrun([*ARGS, "--items", "6", "--model", tiny_model_dir, "--out", tmp_path / "two"])
    two = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("one", "two"))
    assert a["runs"] == b["runs"] and a["comparisons"] == b["comparisons"] and a["grounding"] == b["grounding"]
    assert (a["world_size"], b["world_size"]) == (1, 2)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["per_example.jsonl", "report.json", "report.md", "run.json"]
    records = [
        sorted(
            (json.loads(line) for line in (tmp_path / d / "per_example.jsonl").read_text().splitlines()),
            key=lambda r: (r["method"], r["id"]),
        )
        for d in ("one", "two")
    ]
    assert [(r["method"], r["id"], r["correct"]) for r in records[0]] == [
        (r["method"], r["id"], r["correct"]) for r in records[1]
    ]
    assert all(np.allclose(r["scores"], q["scores"], atol=1e-6) for r, q in zip(*records))


def _alive(pids: list[str]) -> list[str]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def _wait_for_lock(folder: Path, seconds: float) -> bool:
    """Whether the run's folder lock could be taken within ``seconds``: the kernel frees it once
    the last thread of every killed process has closed its files. A process's state is not
    enough to tell: its main thread shows as a zombie while its other threads still exit."""
    from filelock import FileLock, Timeout

    lock = FileLock(folder / LOCK_FILE, timeout=seconds)
    try:
        lock.acquire()
    except Timeout:
        return False
    lock.release()
    return True


def test_a_killed_two_process_run_is_resumed_by_one(tiny_model_dir, tmp_path):
    args = [*ARGS, "--items", "80", "--model", tiny_model_dir]
    command, env = torchrun([*args, "--out", tmp_path / "killed"])
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shards = [tmp_path / "killed" / f"per_example.rank{r}.jsonl" for r in (0, 1)]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not any(s.exists() and s.stat().st_size for s in shards):
        time.sleep(0.1)
    # torchrun and its workers (they have sessions of their own): every process naming this folder
    named = subprocess.run(["pgrep", "-f", str(tmp_path / "killed")], capture_output=True, text=True).stdout.split()
    subprocess.run(["pkill", "-KILL", "-f", str(tmp_path / "killed")], check=False)
    process.wait(timeout=60)
    assert _wait_for_lock(tmp_path / "killed", 60), f"the killed run's lock is still held: {named} {_alive(named)}"
    assert not (tmp_path / "killed" / "report.json").exists(), "the run finished before it was killed"
    assert any(s.exists() and s.stat().st_size for s in shards), "the run was not killed midway: no shard written"
    resumed = run_cli_here([*args, "--out", tmp_path / "killed", "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    whole = run_cli_here([*args, "--out", tmp_path / "whole"])
    assert whole.returncode == 0, whole.stderr
    a, b = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("whole", "killed"))
    assert json.dumps(a["runs"], indent=1) == json.dumps(b["runs"], indent=1) and b["world_size"] == 1
    assert not list((tmp_path / "killed").glob("per_example.rank*"))


def test_retrieval_across_two_processes_gives_the_report_of_one(tiny_model_dir, tmp_path):
    from PIL import Image

    rows = []
    for n, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 30), (200, 30, 200)]):
        Image.new("RGB", (48, 40), colour).save(tmp_path / f"im{n}.png")
        rows.append({"image": f"im{n}.png", "captions": [f"a flat colour number {n}", f"colour {n} everywhere"]})
    rows.append({"image": "missing.png", "captions": ["a lost photo"]})
    (tmp_path / "captions.json").write_text(json.dumps(rows))
    args = [
        "eval",
        "retrieval",
        "--data",
        tmp_path / "captions.json",
        "--model",
        tiny_model_dir,
        "--rerank-top",
        "3",
        "--no-cache",
        "--workers",
        "0",
    ]
    one = run_cli_here([*args, "--out", tmp_path / "one"])
    assert one.returncode == 0, one.stderr
    command, env = torchrun([*args, "--out", tmp_path / "two"])
    two = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("one", "two"))
    assert a["runs"] == b["runs"] and a["comparisons"] == b["comparisons"] and b["world_size"] == 2
    assert a["runs"][0]["n_failed"] == 2  # the missing image's query and its caption's, counted once each
