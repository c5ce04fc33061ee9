"""This process's place among the processes of one run (torchrun's or srun's environment),
and where its default embedding cache lives. Plain data read from the environment: model
loading needs it without the evaluation package (see :mod:`comclip.eval.runs.process_group`)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


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
        return World(
            int(env.get("SLURM_PROCID", 0)),
            int(env["SLURM_NTASKS"]),
            int(env.get("SLURM_LOCALID", 0)),
            int(env.get("SLURM_NNODES", 1)),
        )
    return World()
