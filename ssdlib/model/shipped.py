"""Trained detectors that ship inside the package: loaded offline, no download.

``shapes``: the light SSD trained by ``make demo`` on the synthetic Shapes data (5 classes).
The file ``ssdlib/weights/shapes.pth`` holds the weights in float16 (half the size; the
network runs in float32 after loading), the full config it was trained with (so later edits of
``shapes.yaml`` cannot change what it builds) and how it was made; ``shapes.md`` beside it says
the same for a reader. ``python -m ssdlib eval --weights shapes`` re-measures its test mAP.

Packing a trained checkpoint (what was run to make the shipped file)::

    python -m ssdlib.model.shipped CKPT --metrics METRICS_JSON --command "..." --out ssdlib/weights/shapes.pth
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from ssdlib.config import Config, config_from_dict
from ssdlib.io import atomic_write, load_checkpoint_file

__all__ = ["SHIPPED", "pack_checkpoint", "read_shipped", "shipped_path"]

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
SHIPPED = {"shapes": "shapes.pth"}


def shipped_path(name: str) -> Path:
    if name not in SHIPPED:
        raise ValueError(f"weights {name!r}: shipped models are {sorted(SHIPPED)}")
    path = WEIGHTS_DIR / SHIPPED[name]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the shipped {name!r} weights are missing from this install")
    return path


def read_shipped(name: str) -> tuple[Config, dict[str, torch.Tensor], dict[str, Any]]:
    """``(config, float32 state dict, meta)`` of a shipped detector (the model is built by
    :func:`ssdlib.model.load_shipped`). ``meta`` says how it was made (command, commit, CPU,
    its measured test metrics)."""
    path = shipped_path(name)
    blob = load_checkpoint_file(path)
    cfg = config_from_dict(blob["config"], source=str(path))
    state = {k: v.float() if v.is_floating_point() else v for k, v in blob["model"].items()}
    return cfg, state, dict(blob["meta"])


def _git_commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, timeout=10)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pack_checkpoint(ckpt_path: str | os.PathLike, out: str | os.PathLike, metrics: dict[str, Any],
                    command: str, overrides: list[str] | None = None, note: str = "") -> Path:  # fmt: skip
    """Write a training checkpoint as a shipped file (float16 weights + config + meta) and its
    ``.md`` description beside it. ``overrides`` change the stored config's evaluation settings
    (``test.*``), recorded in the meta. Refuses weights that are not finite."""
    ckpt = load_checkpoint_file(ckpt_path)
    state = ckpt["model"]
    for key, value in state.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError(f"{ckpt_path}: {key} is not finite; refusing to ship it")
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    config = ckpt["config"]
    if overrides:
        from ssdlib.config import apply_overrides

        if any(not o.startswith("test.") for o in overrides):
            raise ValueError(f"overrides {overrides}: only test.* settings may differ from training")
        config = apply_overrides(config_from_dict(config, str(ckpt_path)), overrides).to_dict()
    for key, value in half.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError(f"{ckpt_path}: {key} overflows float16")
    meta = {
        "iteration": int(ckpt.get("iteration", -1)),
        "command": command,
        "commit": _git_commit(),
        "cpu": _cpu_name(),
        "torch": str(torch.__version__),
        "metrics": metrics,
        "overrides": list(overrides or []),
        "note": note,
    }
    buffer = io.BytesIO()
    torch.save({"model": half, "config": config, "meta": meta}, buffer)
    out = Path(out)
    atomic_write(out, buffer.getvalue())
    atomic_write(out.with_suffix(".md"), describe(meta, config).encode())
    return out


def describe(meta: dict[str, Any], config: dict[str, Any]) -> str:
    m = meta["metrics"]
    lines = [
        "# The shipped Shapes model",
        "",
        f"- made with: `{meta['command']}`",
        f"- recipe: config `shapes` as of commit {meta['commit']} "
        f"({config['train']['max_iter']} iterations of batch {config['train']['batch_size']}, "
        f"{config['priors']['image_size']} px, amp {config['train']['amp']}); the full config is "
        "stored in shapes.pth",
        f"- trained on: {meta['cpu']}, torch {meta['torch']}",
        f"- test split (500 images): VOC07 mAP@0.5 {m['voc07_map']:.4f}, COCO AP {m['coco_ap']:.4f}, "
        f"AP50 {m['coco_ap50']:.4f}, AP75 {m['coco_ap75']:.4f} (float32 weights, before the float16 "
        "packing)",
        "- stored: float16 state dict (the network runs in float32 after loading)",
        *([f"- evaluation settings changed from the training config: {', '.join(meta['overrides'])}"
           + (f"; {meta['note']}" if meta.get("note") else "")] if meta.get("overrides") else []),
        "",
        "Re-measure: `python -m ssdlib eval --weights shapes --metric both`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ssdlib.model.shipped", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("ckpt", type=Path)
    p.add_argument("--metrics", type=Path, required=True, help="metrics.json of make demo / eval")
    p.add_argument("--command", required=True, help="the command that trained it")
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR / SHIPPED["shapes"])
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   help="test.* override stored with the model (repeatable)")
    p.add_argument("--note", default="", help="a sentence on the overrides, stored in the meta")
    args = p.parse_args(argv)
    raw = json.loads(args.metrics.read_text())
    metrics = {"voc07_map": raw["voc"]["map"], "coco_ap": raw["coco"]["AP"],
               "coco_ap50": raw["coco"]["AP50"], "coco_ap75": raw["coco"]["AP75"]}  # fmt: skip
    print(pack_checkpoint(args.ckpt, args.out, metrics, args.command, args.overrides, args.note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
