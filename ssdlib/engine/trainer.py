"""The SSD training loop: iteration-based, resumable bit for bit, DDP-ready.

One iteration = load a batch (indices and augmentation seeds from ``(seed, iteration)``, see
:mod:`.sampling`) -> forward under autocast -> match + encode the targets on the model's
device (batched) -> MultiBox loss -> non-finite checks -> backward -> step -> LR schedule.

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

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ssdlib.boxes import encode
from ssdlib.config import Config, ConfigError, dump_config
from ssdlib.data import collate
from ssdlib.engine.checkpoint import (
    atomic_write,
    get_rng_state,
    latest_checkpoint,
    load_checkpoint,
    remove_stale_temps,
    save_checkpoint,
    set_rng_state,
)
from ssdlib.engine.cpu_features import channels_last_for_training
from ssdlib.engine.distributed import DistInfo, all_reduce_max, barrier, init_distributed
from ssdlib.engine.errors import NonFiniteLossError
from ssdlib.engine.logging import MetricsLogger
from ssdlib.engine.sampling import IterationBatchSampler, SeededDataset
from ssdlib.engine.schedule import build_optimizer, build_scheduler
from ssdlib.loss import MultiBoxLoss
from ssdlib.matching import match_batch
from ssdlib.model import SSD, build_model

__all__ = ["NonFiniteLossError", "StepResult", "TrainResult", "prepare_targets", "train",
           "train_step"]


@dataclass
class StepResult:
    loc: float
    cls: float
    skipped: str | None = None  # None, "loss" (non-finite loss) or "grad" (non-finite gradient)

    @property
    def loss(self) -> float:
        return self.loc + self.cls


@dataclass
class TrainResult:
    model: SSD
    iteration: int
    checkpoint: Path | None
    losses: list[float]  # total loss of every iteration this call ran (nan when skipped)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but CUDA is not available; use 'cpu' or 'auto'")
    if name == "cuda":
        name = f"cuda:{local_rank}"
    return torch.device(name)


def resolve_amp(setting: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype. ``auto``: on CUDA bf16 where the GPU supports it, else fp16; on a CPU
    bf16 where it has bf16 matrix instructions (AMX or AVX512-BF16), else off."""
    if setting == "off":
        return None
    if setting == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else None
    return torch.bfloat16 if setting == "bf16" else torch.float16


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AMX tiles or AVX512-BF16).

    Measured on such a CPU (one thread, light model, batch 32 at 160 px, forward + backward):
    fp32 0.249 s, bf16 autocast 0.128 s, bf16 + channels_last 0.104 s. Without these
    instructions oneDNN emulates bf16 and it is slower than fp32, so ``auto`` stays fp32 there.
    It is False too where the environment holds PyTorch below those kernels
    (``ONEDNN_MAX_CPU_ISA``, ``ATEN_CPU_CAPABILITY``) or ``SSDLIB_NO_BF16=1`` says so: see
    :func:`ssdlib.engine.cpu_features.bf16_support`, which also gives the reason.
    """
    from ssdlib.engine.cpu_features import bf16_support

    return bf16_support()[0]


def prepare_targets(
    gt_boxes: list[torch.Tensor],
    gt_labels: list[torch.Tensor],
    priors: torch.Tensor,
    variances: tuple[float, float],
    iou_threshold: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Matched labels ``(B, P)`` and encoded regression targets ``(B, P, 4)`` of a batch.

    Degenerate ground truth (NaN/inf coordinates, zero or negative width/height) is dropped
    first: the datasets already remove it, but a custom dataset or transform may not, and the
    encoder's ``log(w / prior_w)`` would turn such a box into inf/NaN targets.
    """
    kept_boxes, kept_labels = [], []
    for boxes, labels in zip(gt_boxes, gt_labels):
        ok = torch.isfinite(boxes).all(dim=1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        kept_boxes.append(boxes[ok])
        kept_labels.append(labels[ok])
    labels, matched = match_batch(kept_boxes, kept_labels, priors, iou_threshold)
    # Background priors' targets are never read by the loss; zero them rather than keep the
    # -inf that encoding an empty image's all-zero "matches" gives.
    target = torch.where((labels > 0)[..., None], encode(matched, priors, variances), 0.0)
    return labels, target


def compute_loss(
    model: nn.Module,
    images: torch.Tensor,
    gt_boxes: list[torch.Tensor],
    gt_labels: list[torch.Tensor],
    priors: torch.Tensor,
    variances: tuple[float, float],
    iou_threshold: float,
    loss_fn: MultiBoxLoss,
    amp_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loc, cls) MultiBox losses of a batch.

    Args:
        images: (B, 3, S, S) normalised; gt_boxes: B tensors (G_b, 4) xyxy relative;
        gt_labels: B tensors (G_b,) in 1..C; priors: (P, 4) cx, cy, w, h — all on one device.
    """
    with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        cls_logits, box_deltas = model(images)
    with torch.no_grad():
        labels, target = prepare_targets(gt_boxes, gt_labels, priors, variances, iou_threshold)
    return loss_fn(cls_logits, box_deltas, labels, target)


def _grads_finite(params: list[torch.Tensor]) -> bool:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return True
    # One fused norm per tensor: NaN/inf anywhere makes its norm non-finite. A per-tensor
    # isfinite(g).all() allocates a bool copy of every gradient (~1 s per SSD300 CPU step).
    return bool(torch.stack(torch._foreach_norm(grads)).isfinite().all())


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    images: torch.Tensor,
    gt_boxes: list[torch.Tensor],
    gt_labels: list[torch.Tensor],
    priors: torch.Tensor,
    variances: tuple[float, float],
    iou_threshold: float,
    loss_fn: MultiBoxLoss,
    amp_dtype: torch.dtype | None = None,
    dist_info: DistInfo | None = None,
) -> StepResult:
    """One optimisation step; leaves parameters (and BatchNorm statistics) untouched when the
    loss or the gradients are not finite. Shapes as in :func:`compute_loss`."""
    bn_stats = [b for m in model.modules() if isinstance(m, _BatchNorm) for b in m.buffers()]
    saved = [b.clone() for b in bn_stats]
    optimizer.zero_grad(set_to_none=True)
    loc, cls = compute_loss(model, images, gt_boxes, gt_labels, priors, variances,
                            iou_threshold, loss_fn, amp_dtype)  # fmt: skip
    loss = loc + cls
    bad = 0.0 if bool(torch.isfinite(loss)) else 1.0
    if all_reduce_max(bad, images.device, dist_info or DistInfo()) > 0:
        with torch.no_grad():
            for b, s in zip(bn_stats, saved):
                b.copy_(s)
        return StepResult(float(loc.detach()), float(cls.detach()), skipped="loss")
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)  # true gradients, for the check (a no-op without fp16)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if not _grads_finite(params):  # DDP averaged the gradients: every rank agrees
        optimizer.zero_grad(set_to_none=True)
        scaler.update()  # lowers the fp16 scale; nothing to do without a scaler
        return StepResult(float(loc.detach()), float(cls.detach()), skipped="grad")
    scaler.step(optimizer)
    scaler.update()
    return StepResult(float(loc.detach()), float(cls.detach()))


def check_checkpoint(ckpt: dict, cfg: Config, path: Path) -> None:
    """Refuse a checkpoint whose model differs from the config's (before any work starts)."""
    saved = ckpt.get("config", {}).get("model", {})
    if saved.get("num_classes") != cfg.model.num_classes:
        raise ConfigError(
            f"{path}: checkpoint was trained with model.num_classes={saved.get('num_classes')} "
            f"but the config has {cfg.model.num_classes}; use a matching config or another "
            "output folder"
        )
    if saved.get("name") != cfg.model.name:
        raise ConfigError(f"{path}: checkpoint holds model {saved.get('name')!r}, "
                          f"config asks for {cfg.model.name!r}")  # fmt: skip


def _find_resume(out: Path, resume: bool | str | Path) -> Path | None:
    if resume is False:
        return None
    if resume not in (True, "auto"):
        path = Path(resume)
        if not path.is_file():
            raise FileNotFoundError(f"--resume {path}: no such checkpoint")
        return path
    found = latest_checkpoint(out)
    if found is None and resume is True:
        raise FileNotFoundError(f"--resume: no checkpoint in {out} (model_*.pth / last_checkpoint)")
    return found


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
    Returns the trained (unwrapped) model.
    """
    from ssdlib.engine.datasets import build_train_dataset, check_class_names

    t = cfg.train
    out = Path(output_dir)
    info = init_distributed("cuda" if resolve_device(t.device).type == "cuda" else "cpu")
    device = resolve_device(t.device, info.local_rank)

    # Everything that can be wrong is checked before the first iteration.
    if dataset is None:
        dataset = build_train_dataset(cfg)
    elif hasattr(dataset, "class_names"):
        check_class_names(cfg, tuple(dataset.class_names), "training set")
    ckpt_path = _find_resume(out, resume)
    ckpt = load_checkpoint(ckpt_path) if ckpt_path else None
    if ckpt is not None:
        check_checkpoint(ckpt, cfg, ckpt_path)

    torch.manual_seed(t.seed)  # same initial weights on every rank
    model = build_model(cfg).to(device)
    channels_last = channels_last_for_training(t.channels_last, cfg.model.name, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, t.lr, t.momentum, t.weight_decay)
    scheduler = build_scheduler(optimizer, t.lr_steps, t.gamma, t.warmup_iters, t.warmup_factor)
    amp_dtype = resolve_amp(t.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    start_iter = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        start_iter = int(ckpt["iteration"])

    net: nn.Module = model
    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if t.compile:
        net = torch.compile(net)

    sampler = IterationBatchSampler(len(dataset), t.batch_size, t.seed, start_iter, t.max_iter,
                                    info.rank, info.world_size,
                                    shuffle=not getattr(dataset, "sequential", False))  # fmt: skip
    workers = cfg.data.num_workers
    loader = DataLoader(
        SeededDataset(dataset), batch_sampler=sampler, collate_fn=collate, num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=False,
        # Worker base seeds from (seed, start) instead of the global RNG, which stays untouched.
        generator=torch.Generator().manual_seed(t.seed * 1_000_003 + start_iter),
    )  # fmt: skip

    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out)  # half-written files of a killed run (never read, just litter)
        atomic_write(out / "config.yaml", dump_config(cfg).encode())
        if ckpt_path:
            print(f"resuming from {ckpt_path} at iteration {start_iter}")
    logger = MetricsLogger(out, start_iter, enabled=info.is_main)
    loss_fn = MultiBoxLoss(t.neg_pos_ratio)
    variances = tuple(cfg.priors.variances)
    bar = tqdm(total=t.max_iter, initial=start_iter, desc="train", dynamic_ncols=True,
               disable=not (progress and info.is_main))  # fmt: skip
    losses: list[float] = []
    window: list[StepResult] = []
    bad_in_row, last_ckpt, tic = 0, ckpt_path, time.perf_counter()
    net.train()
    try:
        for iteration, (images, targets) in enumerate(loader, start=start_iter + 1):
            images = images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            boxes = [tg["boxes"].to(device, non_blocking=True) for tg in targets]
            labels = [tg["labels"].to(device, non_blocking=True) for tg in targets]
            lr = optimizer.param_groups[0]["lr"]
            res = train_step(net, optimizer, scaler, images, boxes, labels, model.priors,
                             variances, t.iou_threshold, loss_fn, amp_dtype, info)  # fmt: skip
            with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()" after a
                warnings.simplefilter("ignore", UserWarning)  # skipped step: intended here
                scheduler.step()  # the LR is a function of the iteration, skipped or not
            losses.append(math.nan if res.skipped else res.loss)
            if res.skipped:
                counts = res.skipped == "loss" or not scaler.is_enabled()
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
                window.append(res)
            bar.update(1)
            if window and (iteration % t.log_period == 0 or iteration == t.max_iter):
                row = {
                    "iteration": iteration,
                    "loss": sum(r.loss for r in window) / len(window),
                    "loc_loss": sum(r.loc for r in window) / len(window),
                    "cls_loss": sum(r.cls for r in window) / len(window),
                    "lr": lr,
                    "time": round(time.perf_counter() - tic, 3),
                }
                bar.set_postfix(loss=f"{row['loss']:.3f}", loc=f"{row['loc_loss']:.3f}",
                                cls=f"{row['cls_loss']:.3f}", lr=f"{lr:.2e}")  # fmt: skip
                logger.log(row)
                window = []
            if eval_fn is not None and t.eval_period > 0 and iteration % t.eval_period == 0:
                if info.is_main:
                    logger.log({"iteration": iteration, **eval_fn(model)})
                    net.train()
                barrier(info)
            if iteration % t.checkpoint_period == 0 or iteration == t.max_iter:
                if info.is_main:
                    state = {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                        "iteration": iteration,
                        "config": cfg.to_dict(),
                        "rng": get_rng_state(),
                    }
                    last_ckpt = save_checkpoint(state, out, iteration, t.keep_checkpoints)
                barrier(info)
    finally:
        bar.close()
        logger.close()
    return TrainResult(model, max(start_iter, t.max_iter), last_ckpt, losses)
