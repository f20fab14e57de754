"""Pictures: detections drawn on images, and the training loss curves of a run."""

from __future__ import annotations

import colorsys
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F
from torchvision.utils import draw_bounding_boxes

from ssdlib.metrics.common import class_name

__all__ = ["class_colour", "draw_detections", "plot_losses"]


def class_colour(label: int) -> tuple[int, int, int]:
    """A distinct, stable colour per label (golden-ratio hue steps)."""
    h = (label * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(
    image: torch.Tensor | np.ndarray | Image.Image,
    boxes: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    scores: torch.Tensor | np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    width: int = 2,
) -> Image.Image:
    """Boxes in their class colour with ``name score`` captions (black on the class colour, in
    the box's top-left corner), drawn by ``torchvision.utils.draw_bounding_boxes`` on a copy.

    Args:
        image: (3, H, W) uint8 tensor, (H, W, 3) uint8 array or a PIL image.
        boxes: (N, 4) xyxy in pixels of ``image``; labels: (N,) in 1..C; scores: (N,) or None.
        class_names: names of labels 1..C (``class_names[label - 1]``).
    """
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, torch.Tensor):
        image = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)  # a copy: writable
    image = image.detach().cpu()
    boxes = torch.as_tensor(boxes).detach().cpu().to(torch.float64).reshape(-1, 4)
    labels = torch.as_tensor(labels).detach().cpu().reshape(-1).tolist()
    if not labels:  # draw_bounding_boxes warns on an empty set
        return F.to_pil_image(image)
    names = [class_name(int(label), class_names) for label in labels]
    if scores is not None:
        score_list = torch.as_tensor(scores).detach().cpu().reshape(-1).tolist()
        names = [f"{n} {s:.2f}" for n, s in zip(names, score_list, strict=True)]
    drawn = draw_bounding_boxes(image, boxes, names, [class_colour(int(c)) for c in labels],
                                width=width, fill_labels=True)  # fmt: skip
    return F.to_pil_image(drawn)


def plot_losses(
    log_path: str | os.PathLike, out_path: str | os.PathLike | None = None, ax: Any = None
) -> Any:
    """Loss curves (total, localisation, confidence) and the LR of a training run.

    Args:
        log_path: a ``metrics.jsonl`` file or the output folder holding it.
        out_path: where to save a PNG (optional).
        ax: a matplotlib ``Axes`` to draw the loss curves into, without the LR panel (e.g. a
            plot redrawn while training runs); None: a new figure with both panels.
    Returns:
        The matplotlib figure (``ax``'s when given).
    """
    import matplotlib.pyplot as plt

    from ssdlib.engine.run_log import read_metrics

    rows = [r for r in read_metrics(log_path) if "loss" in r]
    if not rows:
        raise ValueError(f"{log_path}: no training metrics to plot")
    it = [r["iteration"] for r in rows]
    if ax is not None:
        _loss_curves(ax, it, rows)
        ax.set(xlabel="iteration")
        fig = ax.figure
    else:
        fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(7, 5), sharex=True,
                                        gridspec_kw={"height_ratios": [3, 1]})  # fmt: skip
        _loss_curves(ax, it, rows)
        ax.set(title=f"training loss ({Path(log_path).name})")
        ax_lr.plot(it, [r["lr"] for r in rows], color="tab:gray")
        ax_lr.set(xlabel="iteration", ylabel="lr")
        ax_lr.grid(alpha=0.3)
        fig.tight_layout()
    if out_path is not None:
        fig.savefig(out_path, dpi=100)
    return fig


def _loss_curves(ax: Any, iterations: list[int], rows: list[dict[str, float]]) -> None:
    """The three loss curves of the metrics ``rows`` (each the mean of its logging window)."""
    for key, name in (("loss", "total"), ("loc_loss", "localisation"), ("cls_loss", "confidence")):
        ax.plot(iterations, [r[key] for r in rows], label=name)
    ax.set(ylabel="loss", yscale="log")
    ax.legend()
    ax.grid(alpha=0.3)
