"""The guards of a training step against NaN/inf: a non-finite loss or gradient skips the
update, leaving the weights and the BatchNorm running statistics as they were.

Used by :func:`ssdlib.engine.trainer.train_step`; the bench times :func:`grads_finite` on its own.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ssdlib.engine.distributed import DistInfo, all_reduce_max

__all__ = ["batchnorm_snapshot", "finite_on_all_ranks", "grads_finite", "restore_snapshot"]


def grads_finite(params: list[torch.Tensor]) -> bool:
    """True when every gradient of ``params`` (those that have one) is finite."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return True
    # One fused norm per tensor: NaN/inf anywhere makes its norm non-finite. A per-tensor
    # isfinite(g).all() allocates a bool copy of every gradient (~1 s per SSD300 CPU step).
    return bool(torch.stack(torch._foreach_norm(grads)).isfinite().all())


def finite_on_all_ranks(loss: torch.Tensor, dist_info: DistInfo | None = None) -> bool:
    """True when the scalar ``loss`` is finite on every DDP rank (one all-reduce), so that all
    ranks skip a step together; without DDP, whether this rank's loss is finite."""
    bad = 0.0 if bool(torch.isfinite(loss)) else 1.0
    return all_reduce_max(bad, loss.device, dist_info or DistInfo()) == 0


def batchnorm_snapshot(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(buffer, copy) of every BatchNorm buffer of ``model``: a forward pass in training mode
    moves the running statistics before the loss says whether the step is kept."""
    buffers = [b for m in model.modules() if isinstance(m, _BatchNorm) for b in m.buffers()]
    return [(b, b.clone()) for b in buffers]


def restore_snapshot(snapshot: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Put the copies of :func:`batchnorm_snapshot` back into their buffers, in place."""
    with torch.no_grad():
        for buffer, saved in snapshot:
            buffer.copy_(saved)
