"""The SSD training loop: iteration-based, resumable bit for bit, DDP-ready.

One iteration = load a batch (indices and augmentation seeds from ``(seed, iteration)``, see
:mod:`.sampling`) -> forward under autocast -> match + encode the targets on the model's
device (batched) -> MultiBox loss -> non-finite checks -> backward -> step -> LR schedule. The
loss (:class:`~ssdlib.loss.MultiBoxLoss`) is built once per run and holds the priors, variances
and matching rule, so a step is ``train_step(net, loss_fn, optimizer, images, targets)``.

Non-finite values: a NaN/inf loss is detected BEFORE backward (agreed across DDP ranks); the
step is skipped, BatchNorm running statistics are restored (the forward pass already moved
them) and the iteration is reported. Non-finite gradients skip the step too. After
``max_nonfinite`` such iterations in a row training stops with :class:`NonFiniteLossError`.
With fp16 AMP, gradient overflows are the GradScaler's normal way of finding its scale: they
skip the step but do not count towards the limit.

Resume: ``resume="auto"`` continues from the newest complete checkpoint in the output folder
when there is one (``True`` requires one, a path names one, ``False`` starts afresh).
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ssdlib.config import Config, dump_config
from ssdlib.data import collate
from ssdlib.engine.checkpoint import (
    atomic_write,
    get_rng_state,
    remove_stale_temps,
    save_checkpoint,
    set_rng_state,
)
from ssdlib.engine.cpu_features import channels_last_for_training

# cpu_has_native_bf16 and check_checkpoint moved (to .device, .resume); still importable here.
from ssdlib.engine.device import cpu_has_native_bf16, resolve_amp, resolve_device  # noqa: F401
from ssdlib.engine.distributed import DistInfo, barrier, init_distributed
from ssdlib.engine.errors import NonFiniteLossError
from ssdlib.engine.nonfinite import (
    batchnorm_snapshot,
    finite_on_all_ranks,
    grads_finite,
    restore_snapshot,
)
from ssdlib.engine.outdir import OutputLock, check_output_dir
from ssdlib.engine.resume import (
    changed_schedule,
    check_checkpoint,  # noqa: F401
    find_resume,
    nonfinite_entry,
    rebuild_schedule,
)
from ssdlib.engine.run_log import MetricsLogger
from ssdlib.engine.sampling import IterationBatchSampler, SeededDataset
from ssdlib.engine.schedule import build_optimizer, build_scheduler
from ssdlib.loss import MultiBoxLoss
from ssdlib.model import SSD, build_model

__all__ = ["NonFiniteLossError", "StepResult", "TrainResult", "compute_loss", "train", "train_step"]


@dataclass
class StepResult:
    loc: float
    cls: float
    skipped: str | None = None  # None, "loss" (non-finite loss) or "grad" (non-finite gradient)

    @property
    def loss(self) -> float:
        return self.loc + self.cls

    @classmethod
    def of(cls, loc: torch.Tensor, cls_loss: torch.Tensor, skipped: str | None = None) -> StepResult:
        """From the step's loss tensors (one device-to-host copy each)."""
        return cls(float(loc.detach()), float(cls_loss.detach()), skipped)


@dataclass
class TrainResult:
    model: SSD
    iteration: int
    checkpoint: Path | None
    losses: list[float]  # total loss of every iteration this call ran (nan when skipped)


def compute_loss(
    model: nn.Module,
    loss_fn: MultiBoxLoss,
    images: torch.Tensor,
    targets: list[dict[str, torch.Tensor]],
    amp_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loc, cls) MultiBox losses of a batch: the forward pass under autocast, the loss in float32.

    Args:
        images: (B, 3, S, S) normalised; targets: B dicts with "boxes" (G_b, 4) xyxy relative and
        "labels" (G_b,) in 1..C — on the device of the model and of ``loss_fn``'s priors.
    """
    with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        cls_logits, box_deltas = model(images)
    return loss_fn(cls_logits, box_deltas, [t["boxes"] for t in targets], [t["labels"] for t in targets])


def train_step(model, loss_fn, optimizer, images, targets, scaler=None, amp=None, ddp=None) -> StepResult:
    """One optimisation step; leaves parameters (and BatchNorm statistics) untouched when the
    loss or the gradients are not finite. (Types below: they would not fit on the one line.)

    Args:
        model (nn.Module): the network, maybe DDP-wrapped or compiled.
        loss_fn (MultiBoxLoss): holds the priors, variances and matching rule.
        optimizer (torch.optim.Optimizer).
        images, targets: as in :func:`compute_loss`.
        scaler (torch.amp.GradScaler | None): fp16's loss scaler; None: no scaling.
        amp (torch.dtype | None): the autocast dtype (bf16, fp16); None: float32.
        ddp (DistInfo | None): the DDP ranks, which must agree on skipping; None: one process.
    """
    scaler = scaler if scaler is not None else torch.amp.GradScaler(images.device.type, enabled=False)
    bn_stats = batchnorm_snapshot(model)
    optimizer.zero_grad(set_to_none=True)
    loc, cls = compute_loss(model, loss_fn, images, targets, amp)
    loss = loc + cls
    if not finite_on_all_ranks(loss, ddp):  # checked before backward: no NaN weights
        restore_snapshot(bn_stats)
        return StepResult.of(loc, cls, skipped="loss")
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)  # true gradients, for the check (a no-op without fp16)
    if not grads_finite([p for g in optimizer.param_groups for p in g["params"]]):  # DDP: all agree
        optimizer.zero_grad(set_to_none=True)
        scaler.update()  # lowers the fp16 scale; nothing to do without a scaler
        return StepResult.of(loc, cls, skipped="grad")
    scaler.step(optimizer)
    scaler.update()
    return StepResult.of(loc, cls)


@dataclass
class _Run:
    """What one training run steps: built by :func:`_build_run`, used by :func:`_train_loop`."""

    model: SSD
    net: nn.Module  # the model, DDP-wrapped and/or compiled
    loss_fn: MultiBoxLoss  # holds the priors (on the device) and the matching rule
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    device: torch.device
    info: DistInfo
    start_iter: int = 0
    window: list[StepResult] = field(default_factory=list)  # steps since the last log row
    channels_last: bool = False  # train.channels_last resolved for this CPU/GPU and model


def _build_run(cfg: Config, device: torch.device, info: DistInfo, ckpt: dict | None) -> _Run:
    """Model, optimizer, schedule and scaler; from ``ckpt`` when resuming (the schedule then
    follows the config where its settings changed, and says so)."""
    t = cfg.train
    torch.manual_seed(t.seed)  # same initial weights on every rank
    model = build_model(cfg).to(device)
    from ssdlib.engine.finetune import apply_init_weights  # train.init_weights: fine-tuning

    apply_init_weights(model, cfg, fresh=ckpt is None)
    channels_last = channels_last_for_training(t.channels_last, cfg.model.name, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, t.lr, t.momentum, t.weight_decay)
    scheduler = build_scheduler(optimizer, t.lr_steps, t.gamma, t.warmup_iters, t.warmup_factor,
                                t.lr_schedule, t.max_iter)
    amp_dtype = resolve_amp(t.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    loss_fn = MultiBoxLoss(model.priors, tuple(cfg.priors.variances), t.iou_threshold, t.neg_pos_ratio,
                           t.object_balance)
    run = _Run(model, model, loss_fn, optimizer, scheduler, scaler, amp_dtype, device, info,
               channels_last=channels_last)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        run.start_iter = int(ckpt["iteration"])
        run.window = [StepResult(float(a), float(b)) for a, b in ckpt.get("log_window", [])]
        changes = changed_schedule(ckpt.get("config", {}).get("train", {}), t)
        if changes:
            rebuild_schedule(optimizer, scheduler, t, run.start_iter)
            if info.is_main:
                print(f"resume: {'; '.join(changes)}: the new values apply from iteration "
                      f"{run.start_iter + 1} (lr now {optimizer.param_groups[0]['lr']:.6g})")
    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        run.net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if t.compile:
        run.net = torch.compile(run.net)
    return run


def _build_loader(cfg: Config, dataset: Dataset, run: _Run) -> DataLoader:
    """Batches of iterations ``start_iter + 1 .. max_iter`` (see :mod:`.sampling`)."""
    t, info = cfg.train, run.info
    sampler = IterationBatchSampler(len(dataset), t.batch_size, t.seed, run.start_iter, t.max_iter,
                                    info.rank, info.world_size,
                                    shuffle=not getattr(dataset, "sequential", False))  # fmt: skip
    return DataLoader(
        SeededDataset(dataset), batch_sampler=sampler, collate_fn=collate,
        num_workers=cfg.data.num_workers, pin_memory=run.device.type == "cuda",
        persistent_workers=False,
        # Worker base seeds from (seed, start) instead of the global RNG, which stays untouched.
        generator=torch.Generator().manual_seed(t.seed * 1_000_003 + run.start_iter),
    )  # fmt: skip


def _save(run: _Run, cfg: Config, out: Path, iteration: int) -> Path:
    """Checkpoint of ``iteration``; refused (NonFiniteLossError) when a weight or BatchNorm
    statistic is NaN/inf, so the newest checkpoint is always one that can be resumed."""
    weights = run.model.state_dict()
    bad = nonfinite_entry(weights)
    if bad:
        raise NonFiniteLossError(
            f"stopping at iteration {iteration}: {bad} is not finite, so no checkpoint was "
            "written (the previous one is kept); lower train.lr or raise train.warmup_iters")
    state = {
        "model": weights,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else {},
        "iteration": iteration,
        "config": cfg.to_dict(),
        "rng": get_rng_state(),
        # The steps since the last log row: a resumed run's first row averages the same ones.
        "log_window": [[r.loc, r.cls] for r in run.window],
    }
    return save_checkpoint(state, out, iteration, cfg.train.keep_checkpoints)


def _to_device(
    images: torch.Tensor, targets: list[dict], device: torch.device, channels_last: bool
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """A batch from the loader on ``device`` (asynchronously from pinned memory): images
    (B, 3, S, S) in the training layout, the targets' "boxes" and "labels"."""
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, [{"boxes": t["boxes"].to(device, non_blocking=True),
                     "labels": t["labels"].to(device, non_blocking=True)} for t in targets]  # fmt: skip


def _log_row(window: list[StepResult], iteration: int, lr: float, tic: float) -> dict[str, float]:
    n = len(window)
    return {
        "iteration": iteration,
        "loss": sum(r.loss for r in window) / n,
        "loc_loss": sum(r.loc for r in window) / n,
        "cls_loss": sum(r.cls for r in window) / n,
        "lr": lr,
        "time": round(time.perf_counter() - tic, 3),
    }


def _train_loop(
    run: _Run, loader: DataLoader, cfg: Config, out: Path, logger: MetricsLogger, bar: tqdm,
    eval_fn: Callable[[SSD], dict[str, float]] | None, last_ckpt: Path | None,
) -> tuple[list[float], Path | None]:
    """Iterations ``start_iter + 1 ..``: step, schedule, non-finite accounting, log rows,
    periodic evaluation and checkpoints. Returns (per-iteration losses, last checkpoint)."""
    t, info, model = cfg.train, run.info, run.model
    losses: list[float] = []
    bad_in_row, tic = 0, time.perf_counter()
    run.net.train()
    for iteration, (images, targets) in enumerate(loader, start=run.start_iter + 1):
        images, targets = _to_device(images, targets, run.device, run.channels_last)
        lr = run.optimizer.param_groups[0]["lr"]
        res = train_step(run.net, run.loss_fn, run.optimizer, images, targets, run.scaler, run.amp_dtype,
                         info)  # fmt: skip
        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()" after a
            warnings.simplefilter("ignore", UserWarning)  # skipped step: intended here
            run.scheduler.step()  # the LR is a function of the iteration, skipped or not
        losses.append(math.nan if res.skipped else res.loss)
        if res.skipped:
            counts = res.skipped == "loss" or not run.scaler.is_enabled()
            bad_in_row = bad_in_row + 1 if counts else bad_in_row
            if info.is_main:
                tqdm.write(f"iteration {iteration}: non-finite {res.skipped} "
                           f"(loc {res.loc}, cls {res.cls}); step skipped")  # fmt: skip
            if bad_in_row >= t.max_nonfinite:
                raise NonFiniteLossError(
                    f"stopping at iteration {iteration}: {bad_in_row} non-finite "
                    f"losses/gradients in a row (train.max_nonfinite={t.max_nonfinite}); "
                    "lower train.lr or raise train.warmup_iters, check the data")
        else:
            bad_in_row = 0
            run.window.append(res)
        bar.update(1)
        if run.window and (iteration % t.log_period == 0 or iteration == t.max_iter):
            row = _log_row(run.window, iteration, lr, tic)
            bar.set_postfix(loss=f"{row['loss']:.3f}", loc=f"{row['loc_loss']:.3f}",
                            cls=f"{row['cls_loss']:.3f}", lr=f"{lr:.2e}")  # fmt: skip
            logger.log(row)
            run.window = []
        if eval_fn is not None and t.eval_period > 0 and iteration % t.eval_period == 0:
            if info.is_main:
                logger.log({"iteration": iteration, **eval_fn(model)})
                run.net.train()
            barrier(info)
        if iteration % t.checkpoint_period == 0 or iteration == t.max_iter:
            if info.is_main:
                last_ckpt = _save(run, cfg, out, iteration)
            barrier(info)
    return losses, last_ckpt


def train(
    cfg: Config,
    output_dir: str | Path,
    resume: bool | str | Path = "auto",
    dataset: Dataset | None = None,
    progress: bool = True,
    eval_fn: Callable[[SSD], dict[str, float]] | None = None,
) -> TrainResult:
    """Train ``cfg``'s model; checkpoints, ``config.yaml`` and metrics go to ``output_dir``.

    ``dataset`` replaces the config's training set (it must return transformed samples with
    relative boxes, as ``build_train_transform`` does). ``eval_fn(model) -> {name: value}`` runs
    on rank 0 every ``train.eval_period`` iterations (0: never); its values are logged.
    Only one run at a time may write to ``output_dir`` (:class:`~.outdir.OutputLock`).
    Returns the trained (unwrapped) model.
    """
    from ssdlib.engine.datasets import build_train_dataset, check_class_names

    t = cfg.train
    out = Path(output_dir)
    info = init_distributed("cuda" if resolve_device(t.device).type == "cuda" else "cpu")
    device = resolve_device(t.device, info.local_rank)

    # Everything that can be wrong is checked before the first iteration.
    if info.is_main:
        check_output_dir(out)  # a file, a read-only disk: now, not at the first checkpoint
    if dataset is None:
        dataset = build_train_dataset(cfg)
    elif hasattr(dataset, "class_names"):
        check_class_names(cfg, tuple(dataset.class_names), "training set")
    with OutputLock(out) if info.is_main else contextlib.nullcontext():
        # Under the lock: no other run writes checkpoints while we pick one.
        ckpt_path, ckpt = find_resume(out, resume, cfg, log=print if info.is_main else _quiet)
        run = _build_run(cfg, device, info, ckpt)
        loader = _build_loader(cfg, dataset, run)
        if info.is_main:
            remove_stale_temps(out)  # half-written files of a killed run (never read, just litter)
            atomic_write(out / "config.yaml", dump_config(cfg).encode())
            if ckpt_path:
                print(f"resuming from {ckpt_path} at iteration {run.start_iter}")
        logger = MetricsLogger(out, run.start_iter, enabled=info.is_main)
        bar = tqdm(total=t.max_iter, initial=run.start_iter, desc="train", dynamic_ncols=True,
                   disable=not (progress and info.is_main))  # fmt: skip
        try:
            losses, last_ckpt = _train_loop(run, loader, cfg, out, logger, bar, eval_fn, ckpt_path)
        finally:
            bar.close()
            logger.close()
    return TrainResult(run.model, max(run.start_iter, t.max_iter), last_ckpt, losses)


def _quiet(*_: object) -> None:
    """Other ranks say nothing; rank 0 prints what they all do."""
