"""Learning-rate schedule: linear warm-up, then multi-step decay (lufficc/SSD, Detectron).

    lr(i) = base_lr * warmup(i) * gamma ** (number of steps <= i)
    warmup(i) = factor + (1 - factor) * i / warmup_iters   for i < warmup_iters, else 1

Iteration-based, as the SSD reference schedules are (120k iterations, steps at 80k/100k).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import torch


class WarmupMultiStep:
    """The LR multiplier of iteration ``i`` (a picklable callable for ``LambdaLR``).

    Its attributes are plain numbers, so ``LambdaLR.state_dict()`` stores them as such and a
    checkpoint loads with ``torch.load(..., weights_only=True)``.
    """

    def __init__(
        self,
        steps: Sequence[int],
        gamma: float = 0.1,
        warmup_iters: int = 500,
        warmup_factor: float = 1.0 / 3.0,
    ) -> None:
        if list(steps) != sorted(steps):
            raise ValueError(f"lr steps must be increasing, got {list(steps)}")
        self.steps = [int(s) for s in steps]
        self.gamma = float(gamma)
        self.warmup_iters = int(warmup_iters)
        self.warmup_factor = float(warmup_factor)

    def __call__(self, iteration: int) -> float:
        warmup = 1.0
        if iteration < self.warmup_iters:
            alpha = iteration / self.warmup_iters
            warmup = self.warmup_factor * (1.0 - alpha) + alpha
        return warmup * self.gamma ** bisect.bisect_right(self.steps, iteration)


def build_optimizer(
    model: torch.nn.Module, lr: float, momentum: float, weight_decay: float
) -> torch.optim.SGD:
    """SGD with momentum; no weight decay on biases and norm parameters (1-D tensors), which
    decay would only pull towards zero without regularising anything."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    steps: Sequence[int],
    gamma: float,
    warmup_iters: int,
    warmup_factor: float,
) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` over :class:`WarmupMultiStep`; call ``scheduler.step()`` once per iteration."""
    schedule = WarmupMultiStep(steps, gamma, warmup_iters, warmup_factor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
