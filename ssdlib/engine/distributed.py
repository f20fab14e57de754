"""Multi-GPU (or multi-process CPU) training with ``torchrun`` and DistributedDataParallel.

``torchrun --nproc_per_node=N -m ssdlib train --config ...`` sets ``RANK``, ``WORLD_SIZE``
and ``LOCAL_RANK``; :func:`init_distributed` reads them (NCCL on CUDA, gloo on CPU). Without
them training runs in one process.

Batch size and learning rate rule: ``train.batch_size`` is PER PROCESS (per GPU); one
iteration is one optimizer step over ``batch_size * world_size`` images. ``train.lr`` and the
iteration counts are used as written, with no automatic scaling. To reproduce a 1 x 32 recipe
on 4 GPUs either set ``train.batch_size=8`` (same global batch, same lr and iterations), or keep
32 per GPU and apply the linear scaling rule yourself: ``lr x 4``, ``max_iter``, ``lr_steps``,
``warmup_iters`` divided by 4.

Only rank 0 writes logs and checkpoints; every rank reads the same checkpoint on resume.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "all_reduce_max", "barrier", "init_distributed"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op without it)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world_size, local_rank)


def all_reduce_max(value: float, device: torch.device, info: DistInfo) -> float:
    """The maximum of ``value`` over ranks, so that every rank takes the same branch (a rank
    that skips a backward pass alone would leave the others waiting in DDP's all-reduce)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
