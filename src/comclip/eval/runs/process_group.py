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
from datetime import timedelta

from comclip.world import World, world_from_env

__all__ = ["World", "barrier", "gathered", "join", "leave", "world_from_env"]
#: How long a process waits for the others (at the start, and for the last shard to finish).
TIMEOUT = timedelta(hours=24)


def join(world: World, device_type: str) -> None:
    """Start the process group (NCCL on CUDA, gloo otherwise) where there are several processes."""
    import torch.distributed as dist

    if world.size > 1 and not dist.is_initialized():
        os.environ.setdefault("RANK", str(world.rank))
        os.environ.setdefault("WORLD_SIZE", str(world.size))
        dist.init_process_group(
            "nccl" if device_type == "cuda" else "gloo", rank=world.rank, world_size=world.size, timeout=TIMEOUT
        )


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
