"""Start training from a detector trained elsewhere (``train.init_weights``).

Sources: ``torchvision-coco`` (torchvision's SSD300 COCO weights, through the conversion in
:mod:`ssdlib.model.convert`; needs ``model.name: ssd300_vgg16``), ``shapes`` (the shipped Shapes
model, where this ssdlib has one), or a file: an ssdlib checkpoint (``model_*.pth`` of any
run), a torchvision SSD300, lufficc/SSD or amdegroot/ssd.pytorch file (read with
``weights_only=True``: no code runs).

Every tensor whose name and shape fit the model is loaded; the others keep the model's fresh
initialisation, with the reason printed: the class head when the class count differs (its
outputs are ``boxes per location x (classes + 1)``), the box head too when the priors per
location differ (another ``aspect_ratios`` / ``densify``), layers the source does not have.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import torch
from torch import nn

from ssdlib.config import Config, ConfigError

__all__ = ["TransferReport", "apply_init_weights", "load_source_state", "transfer_weights"]

NAMED_SOURCES = ("torchvision-coco", "shapes")


@dataclass
class TransferReport:
    source: str
    loaded: list[str] = field(default_factory=list)
    reinitialised: dict[str, str] = field(default_factory=dict)  # key -> why
    unused: list[str] = field(default_factory=list)  # source keys the model has no place for
    notes: list[str] = field(default_factory=list)

    def format(self) -> str:
        """A few lines: counts, then the re-initialised tensors grouped by module and reason."""
        lines = [f"init_weights {self.source}: loaded {len(self.loaded)} tensors, re-initialised "
                 f"{len(self.reinitialised)}, {len(self.unused)} of the source unused"]  # fmt: skip
        groups: dict[tuple[str, str], list[str]] = {}
        for key, why in self.reinitialised.items():
            module = ".".join(key.split(".")[:2])  # head.cls_heads, backbone.features, ...
            kind, _, detail = why.partition(" | ")
            groups.setdefault((module, kind), []).append(detail)
        for (module, kind), details in groups.items():
            example = f" (e.g. {details[0]})" if details[0] else ""
            lines.append(f"  re-initialised {module}: {len(details)} tensor(s), {kind}{example}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _reason(key: str, want: torch.Size, got: torch.Size, num_classes: int) -> str:
    """``"why | example shapes"``; the part before `` | `` groups tensors in the report."""
    shapes = f"{tuple(got)} in the source, {tuple(want)} here"
    if key.startswith("head.cls_heads."):
        return (f"the config has {num_classes} classes (+ background) or other priors per "
                f"location | {shapes}")  # fmt: skip
    if key.startswith("head.reg_heads."):
        return f"other priors per location (aspect_ratios / densify) | {shapes}"
    return f"another shape | {shapes}"


def transfer_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str = "",
                     num_classes: int | None = None) -> TransferReport:  # fmt: skip
    """Copy every tensor of ``state`` whose name and shape fit ``model`` (in place)."""
    report = TransferReport(source)
    own = model.state_dict()
    fit = {}
    for key, value in own.items():
        if key not in state:
            report.reinitialised[key] = "not in the source"
        elif state[key].shape != value.shape:
            report.reinitialised[key] = _reason(key, value.shape, state[key].shape, num_classes or 0)
        else:
            fit[key] = state[key].to(value.dtype)
            report.loaded.append(key)
    report.unused = [k for k in state if k not in own]
    model.load_state_dict(fit, strict=False)
    return report


def load_source_state(name: str, progress: bool = True) -> tuple[dict[str, torch.Tensor], dict | None]:
    """``(state dict in ssdlib keys, the source's config dict or None)`` of a source name/file."""
    from ssdlib.model.build import TORCHVISION_CONFIG, pretrained_model

    if name == "torchvision-coco":
        model, _ = pretrained_model(name, progress=progress)
        from ssdlib.config import load_config

        return model.state_dict(), load_config(TORCHVISION_CONFIG).to_dict()
    if name == "shapes":
        try:  # the shipped model keeps its config (for the normalisation check below)
            from ssdlib.model import load_shipped

            model, source_cfg, _ = load_shipped(name)
            return model.state_dict(), source_cfg.to_dict()
        except (ValueError, FileNotFoundError) as e:
            raise ConfigError(
                f"train.init_weights 'shapes': no shipped Shapes model in this install ({e}); "
                "train one ('python -m ssdlib train --config shapes') and give its checkpoint file"
            ) from e
    if not os.path.isfile(name):
        raise ConfigError(f"train.init_weights {name!r}: expected one of {list(NAMED_SOURCES)} "
                          "or an existing checkpoint file")  # fmt: skip
    from ssdlib.engine.checkpoint import load_checkpoint

    ckpt = load_checkpoint(name)
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict) and "config" in ckpt:
        return ckpt["model"], ckpt["config"]  # an ssdlib training checkpoint
    model, _ = pretrained_model(name, progress=progress)  # torchvision / lufficc / amdegroot
    return model.state_dict(), None


def apply_init_weights(model: nn.Module, cfg: Config, fresh: bool = True, log=None) -> TransferReport | None:
    """The trainer's hook: when ``fresh`` (not resuming) and ``train.init_weights`` is set,
    load the source into ``model`` and print what was loaded and re-initialised.

    Raises :class:`ConfigError` when no weight tensor fits (another architecture)."""
    name = cfg.train.init_weights
    if not fresh or name in ("", "none"):
        return None
    state, source_cfg = load_source_state(name)
    report = transfer_weights(model, state, name, cfg.model.num_classes)
    if not any(state[k].dim() > 1 for k in report.loaded):  # a few biases are no transfer
        raise ConfigError(f"train.init_weights {name!r}: no tensor fits model.name "
                          f"{cfg.model.name!r} (another architecture or width?)")  # fmt: skip
    if source_cfg:
        src_in = source_cfg.get("input", {})
        for key in ("pixel_mean", "pixel_std"):
            src, here = src_in.get(key), getattr(cfg.input, key)
            if src is not None and any(abs(a - b) > 0.01 * max(abs(a), 1) for a, b in zip(src, here)):
                report.notes.append(f"the source was trained with input.{key} {src_in[key]}, this "
                                    f"config uses {getattr(cfg.input, key)}")  # fmt: skip
    if cfg.model.backbone_weights != "none":
        report.notes.append(f"model.backbone_weights {cfg.model.backbone_weights!r} were loaded "
                            "first and then replaced: set it to none")  # fmt: skip
    print(report.format(), file=log or sys.stderr)
    return report
