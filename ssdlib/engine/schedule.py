"""Learning-rate schedules: linear warm-up, then multi-step decay (lufficc/SSD, Detectron) or a
cosine to zero (Loshchilov & Hutter 2017, SGDR; ``train.lr_schedule``).

    step:    lr(i) = base_lr * warmup(i) * gamma ** (number of steps <= i)
    cosine:  lr(i) = base_lr * warmup(i) * (1 + cos(pi * i / max_iter)) / 2
    warmup(i) = factor + (1 - factor) * i / warmup_iters   for i < warmup_iters, else 1

Iteration-based, as the SSD reference schedules are (120k iterations, steps at 80k/100k). The
cosine needs no step positions and spends more of a short run at a useful rate: it is what the
Shapes recipe uses (README, "make demo results").
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import torch


def linear_warmup(iteration: int, warmup_iters: int, warmup_factor: float) -> float:
    """``warmup(i)`` of the formulas above: from ``warmup_factor`` up to 1 at ``warmup_iters``."""
    if iteration >= warmup_iters:
        return 1.0
    alpha = iteration / warmup_iters
    return warmup_factor * (1.0 - alpha) + alpha


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
        warmup = linear_warmup(iteration, self.warmup_iters, self.warmup_factor)
        return warmup * self.gamma ** bisect.bisect_right(self.steps, iteration)


class WarmupCosine:
    """The LR multiplier of iteration ``i`` under warm-up then a half cosine that reaches 0 at
    ``max_iter`` (picklable, plain-number attributes, as :class:`WarmupMultiStep`)."""

    def __init__(self, max_iter: int, warmup_iters: int = 500, warmup_factor: float = 1.0 / 3.0) -> None:
        if max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}")
        self.max_iter = int(max_iter)
        self.warmup_iters = int(warmup_iters)
        self.warmup_factor = float(warmup_factor)

    def __call__(self, iteration: int) -> float:
        warmup = linear_warmup(iteration, self.warmup_iters, self.warmup_factor)
        progress = min(iteration, self.max_iter) / self.max_iter
        return warmup * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_multiplier(
    kind: str,
    steps: Sequence[int],
    gamma: float,
    warmup_iters: int,
    warmup_factor: float,
    max_iter: int,
) -> WarmupMultiStep | WarmupCosine:
    """The schedule ``train.lr_schedule`` names: ``step`` (``steps``, ``gamma``) or ``cosine``."""
    if kind == "step":
        return WarmupMultiStep(steps, gamma, warmup_iters, warmup_factor)
    if kind == "cosine":
        return WarmupCosine(max_iter, warmup_iters, warmup_factor)
    raise ValueError(f"lr schedule {kind!r} unknown; expected 'step' or 'cosine'")


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
    kind: str = "step",
    max_iter: int = 1,
) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` over :func:`lr_multiplier`; call ``scheduler.step()`` once per iteration."""
    schedule = lr_multiplier(kind, steps, gamma, warmup_iters, warmup_factor, max_iter)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
