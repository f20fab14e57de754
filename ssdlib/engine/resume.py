"""Which checkpoint a run resumes from, whether it fits the config, and the settings that changed.

- :func:`find_resume`: ``--resume`` semantics; in ``auto`` mode a checkpoint that does not load
  (truncated by a full disk, emptied, non-finite) is skipped for the next newest, with a line
  saying so; an explicit file must load.
- :func:`check_checkpoint`: the model of the checkpoint must be the config's.
- :func:`changed_schedule` / :func:`rebuild_schedule`: resuming with another ``train.lr``,
  ``lr_schedule``, ``lr_steps``, ``gamma``, warm-up, ``momentum`` or ``weight_decay`` (or the
  ``max_iter`` of a cosine) than the checkpoint was
  trained with applies the new values at the resumed iteration (the schedule is a function of
  the iteration, so this is what a run started with them would use there); the run prints
  which keys changed. Momentum buffers are kept.
- :func:`nonfinite_entry`: the first non-finite weight or BatchNorm statistic of a state dict;
  no checkpoint is written from, nor resumed from, such a state.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ssdlib.config import Config, ConfigError, TrainConfig
from ssdlib.engine.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints, load_checkpoint
from ssdlib.engine.schedule import lr_multiplier

__all__ = ["SCHEDULE_KEYS", "changed_schedule", "check_checkpoint", "find_resume", "nonfinite_entry",
           "rebuild_schedule"]  # fmt: skip

SCHEDULE_KEYS = ("lr", "lr_schedule", "lr_steps", "gamma", "warmup_iters", "warmup_factor", "momentum",
                 "weight_decay")  # fmt: skip
_RESUME_KEYS = ("model", "optimizer", "scheduler", "iteration", "rng")


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


def nonfinite_entry(state: dict[str, torch.Tensor]) -> str | None:
    """Name of the first floating tensor of ``state`` holding NaN/inf (None when all finite)."""
    names = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()]
    if not names:
        return None
    norms = torch.stack(torch._foreach_norm([state[k].detach().float() for k in names]))
    bad = (~norms.isfinite()).nonzero()
    return names[int(bad[0])] if len(bad) else None


def _usable(path: Path, cfg: Config) -> dict[str, Any]:
    """The loaded checkpoint, or CheckpointError/ConfigError saying why it cannot be resumed."""
    ckpt = load_checkpoint(path)
    check_checkpoint(ckpt, cfg, path)  # another model: a ConfigError, never skipped
    missing = [k for k in _RESUME_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint (no {', '.join(missing)}); "
                              "eval and demo read it, --resume cannot")  # fmt: skip
    bad = nonfinite_entry(ckpt["model"])
    if bad:
        raise CheckpointError(f"{path}: holds non-finite values ({bad}); resume from an earlier "
                              "checkpoint")  # fmt: skip
    return ckpt


def find_resume(
    out: Path, resume: bool | str | Path, cfg: Config, log=print
) -> tuple[Path | None, dict[str, Any] | None]:
    """``(path, checkpoint)`` to resume from, or ``(None, None)`` to start afresh.

    ``resume``: False (afresh), True (the newest usable one in ``out`` must exist), "auto"
    (the newest usable one if any) or a path (that file, which must load).
    """
    if resume is False:
        return None, None
    if resume not in (True, "auto"):
        path = Path(resume)
        if not path.is_file():
            raise FileNotFoundError(f"--resume {path}: no such checkpoint")
        return path, _usable(path, cfg)
    newest = latest_checkpoint(out)
    candidates = [newest] if newest else []
    candidates += [p for p in reversed(list_checkpoints(out)) if p != newest]
    for k, path in enumerate(candidates):
        try:
            ckpt = _usable(path, cfg)
        except CheckpointError as e:
            if k + 1 == len(candidates):
                raise CheckpointError(f"{e}; no other checkpoint in {out} loads either; "
                                      "--no-resume starts afresh") from e  # fmt: skip
            log(f"warning: skipping {path.name}: {str(e).removeprefix(f'{path}: ')}; "
                f"trying {candidates[k + 1].name}")  # fmt: skip
            continue
        return path, ckpt
    if resume is True:
        raise FileNotFoundError(f"--resume: no checkpoint in {out} (model_*.pth / last_checkpoint)")
    return None, None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    return a == b


def changed_schedule(saved: dict[str, Any], train: TrainConfig) -> list[str]:
    """``["train.lr 0.02 -> 0.0001", ...]``: the schedule settings of ``train`` that differ from
    the checkpoint's saved ``config["train"]`` (keys it does not record count as unchanged)."""
    changes = []
    # The cosine's length is max_iter: extending a cosine run reshapes its remaining lr.
    keys = SCHEDULE_KEYS + (("max_iter",) if train.lr_schedule == "cosine" else ())
    for key in keys:
        if key in saved and not _same(saved[key], getattr(train, key)):
            changes.append(f"train.{key} {saved[key]} -> {getattr(train, key)}")
    return changes


def rebuild_schedule(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    train: TrainConfig,
    iteration: int,
) -> None:
    """Point ``optimizer`` and ``scheduler`` (states loaded from a checkpoint) at ``train``'s
    schedule as of ``iteration``: the lr there is ``train.lr * lr_multiplier(...)(iteration)``,
    as in a run started with these settings; momentum and weight decay become ``train``'s
    (param groups as :func:`~ssdlib.engine.schedule.build_optimizer` makes them)."""
    schedule = lr_multiplier(train.lr_schedule, train.lr_steps, train.gamma, train.warmup_iters,
                             train.warmup_factor, train.max_iter)
    scheduler.lr_lambdas = [schedule] * len(optimizer.param_groups)
    scheduler.base_lrs = [train.lr] * len(optimizer.param_groups)
    scheduler.last_epoch = iteration
    for k, group in enumerate(optimizer.param_groups):
        group["initial_lr"] = train.lr
        group["lr"] = train.lr * schedule(iteration)
        group["momentum"] = train.momentum
        if k == 0:  # build_optimizer's decayed group; the second (biases, norms) keeps 0
            group["weight_decay"] = train.weight_decay
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
