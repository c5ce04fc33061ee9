"""Several processes on one evaluation, through ``torch.distributed``, as open_clip and
clip_benchmark do: ``torchrun --nproc_per_node N -m comclip eval ...``, or ``srun`` with
torch's usual environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``; SLURM's ``SLURM_NTASKS`` / ``SLURM_PROCID`` / ``SLURM_LOCALID`` stand in
for the first three where a job script sets only ``MASTER_ADDR``).

Each process takes every ``size``-th example in the dataset's order and writes its own
shard of records in the run folder as it goes; process 0 merges the shards by example id
and writes the report. The process group is NCCL on CUDA and gloo on CPU.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Mapping, Sequence, TypeVar

T = TypeVar("T")
#: How long a process waits for the others (at the start, and for the last shard to finish).
TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    #: Machines taking part: several make each use a cache file of its own (see :meth:`cache_path`).
    nodes: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """Every ``size``-th item, starting at this rank: a deterministic split."""
        return list(items[self.rank :: self.size])

    def cache_path(self, default: Path) -> Path:
        """Where the default embedding cache lives: one SQLite file is safe for the processes
        of one machine (WAL mode), not across machines sharing a network folder, so each
        machine of a multi-node run gets ``embeddings.<host>.sqlite`` beside it."""
        if self.nodes <= 1:
            return default
        return default.with_name(f"{default.stem}.{socket.gethostname()}{default.suffix}")

    def device(self, requested: str | None) -> str | None:
        """The device a process uses: its own GPU (``LOCAL_RANK``) where none was named."""
        import torch

        if requested is None and self.size > 1 and torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return requested


def world_from_env(env: Mapping[str, str] = os.environ) -> World:
    """The world torchrun (or srun) describes in the environment; one process without it."""
    if "WORLD_SIZE" in env:
        size = int(env["WORLD_SIZE"])
        nodes = max(1, size // max(1, int(env.get("LOCAL_WORLD_SIZE", size))))
        return World(int(env.get("RANK", 0)), size, int(env.get("LOCAL_RANK", 0)), nodes)
    if "SLURM_NTASKS" in env and "MASTER_ADDR" in env:
        return World(int(env.get("SLURM_PROCID", 0)), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)),
                     int(env.get("SLURM_NNODES", 1)))
    return World()


def join(world: World, device_type: str) -> None:
    """Start the process group (NCCL on CUDA, gloo otherwise) where there are several processes."""
    import torch.distributed as dist

    if world.size > 1 and not dist.is_initialized():
        os.environ.setdefault("RANK", str(world.rank))
        os.environ.setdefault("WORLD_SIZE", str(world.size))
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", rank=world.rank, world_size=world.size,
                                timeout=TIMEOUT)


def barrier(world: World) -> None:
    """Wait for every process (nothing to wait for alone)."""
    if world.size > 1:
        import torch.distributed as dist

        dist.barrier()


def gathered(world: World, part: dict) -> dict:
    """Every process's ``part`` (a picklable dict) merged into one, the same in each process."""
    if world.size == 1:
        return dict(part)
    import torch.distributed as dist

    parts: list = [None] * world.size
    dist.all_gather_object(parts, part)
    return {key: value for one in parts for key, value in one.items()}


def leave(world: World) -> None:
    if world.size > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
