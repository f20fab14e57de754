"""The course's figures, computed from ssdlib: ``python -m ssdlib figures --out figures``.

Each ``fig_*`` function returns a matplotlib ``Figure`` built from ssdlib's own functions (the
notebooks call the same functions, so README and notebooks show the same pictures). Output is
deterministic: fixed seeds, the Agg canvas, and PNGs written without a "Software" or date entry.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle

from ssdlib.boxes import cxcywh_to_xyxy, encode
from ssdlib.config import load_config
from ssdlib.data import SHAPES_CLASSES, ShapesDataset, build_train_transform, denormalize
from ssdlib.matching import match, match_batch
from ssdlib.priors import generate_priors
from ssdlib.viz.anchor_explorer import MAP_COLOURS, render_png
from ssdlib.viz.anchors import matches_for_box, paper_scales, priors_at, receptive_fields, to_pixels

__all__ = [
    "FIGURES", "draw_boxes", "fig_augmentation", "fig_dataset_samples", "fig_encoding",
    "fig_hard_negatives", "fig_matching", "fig_priors_per_map", "fig_receptive_fields",
    "fig_scales", "sample_image", "save_figure",
]  # fmt: skip

CLASS_COLOURS = ("#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00")
# Test-split Shapes images chosen for several medium objects (index -> a readable picture).
EXAMPLE_INDEX = 7


def sample_image(size: int = 300, index: int = EXAMPLE_INDEX, split: str = "test"):
    """A Shapes image: ((3, S, S) uint8, target with pixel xyxy boxes, labels)."""
    return ShapesDataset(split, index + 1, image_size=size)[index]


def show(ax, image: torch.Tensor, size: float | None = None) -> None:
    """Draw a (3, H, W) uint8 image with pixel coordinates (or stretched to ``size``)."""
    h, w = image.shape[-2:]
    extent = (0, size or w, size or h, 0)
    ax.imshow(image.permute(1, 2, 0).numpy(), extent=extent)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_boxes(ax, boxes_xyxy: torch.Tensor, colours, labels: Sequence[str] | None = None,
               lw: float = 1.5, ls: str = "-") -> None:  # fmt: skip
    """Rectangles for (N, 4) pixel xyxy boxes; ``colours`` one per box or a single colour."""
    boxes = boxes_xyxy.reshape(-1, 4).tolist()
    if isinstance(colours, str):
        colours = [colours] * len(boxes)
    for n, ((x1, y1, x2, y2), c) in enumerate(zip(boxes, colours)):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=c, lw=lw, ls=ls))
        if labels is not None:  # inside the box: a label above it would run into the title
            right = x1 > 0.75 * max(ax.get_xlim())  # near the right edge: align on x2 instead
            ax.text(x2 if right else x1, y1, labels[n], color="white", fontsize=7, va="top",
                    ha="right" if right else "left", clip_on=True,
                    bbox={"facecolor": c, "pad": 1, "lw": 0})  # fmt: skip


def fig_dataset_samples(count: int = 6, size: int = 256) -> Figure:
    """Shapes samples with their ground-truth boxes and class names."""
    ds = ShapesDataset("train", count, image_size=size)
    # Constrained layout keeps the titles off the panels (tight_layout let them overlap).
    fig = Figure(figsize=(3 * count / 2, 6.4), layout="constrained")
    for n in range(count):
        image, target = ds[n]
        ax = fig.add_subplot(2, count // 2, n + 1)
        show(ax, image)
        labels = target["labels"].tolist()
        names = [SHAPES_CLASSES[lb - 1] + ("*" if d else "")
                 for lb, d in zip(labels, target["difficult"].tolist())]  # fmt: skip
        draw_boxes(ax, target["boxes"], [CLASS_COLOURS[lb - 1] for lb in labels], names)
        ax.set_title(f"train_{n:06d}: {len(labels)} objects", fontsize=9)
    fig.suptitle("Shapes (generated, no download); * = difficult", fontsize=10)
    return fig


def fig_augmentation(draws: int = 7, seed: int = 0, size: int = 300) -> Figure:
    """One image and ``draws`` outputs of SSD's training augmentation (zoom-out, IoU crop, flip,
    photometric distortion), boxes redrawn from the transformed targets."""
    image, target = sample_image(size)
    transform = build_train_transform(size)
    torch.manual_seed(seed)
    fig = Figure(figsize=(12, 6.6), layout="constrained")
    ax = fig.add_subplot(2, 4, 1)
    show(ax, image)
    draw_boxes(ax, target["boxes"], "yellow")
    ax.set_title("original", fontsize=9)
    for n in range(draws):
        out, tgt = transform(image, target)
        ax = fig.add_subplot(2, 4, n + 2)
        show(ax, denormalize(out))
        draw_boxes(ax, tgt["boxes"] * size, "yellow")
        ax.set_title(f"draw {n + 1}: {len(tgt['boxes'])} boxes", fontsize=9)
    fig.suptitle(f"build_train_transform({size}), torch.manual_seed({seed})", fontsize=10)
    return fig


def fig_priors_per_map(config: str = "ssd300_voc", image: torch.Tensor | None = None) -> Figure:
    """One panel per feature map: its grid, and the default boxes of its centre location."""
    cfg = load_config(config).priors
    size = cfg.image_size
    if image is None:
        image = sample_image(size)[0]
    maps = cfg.feature_maps
    cols = 3 if len(maps) <= 6 else 4
    rows = -(-len(maps) // cols)
    fig = Figure(figsize=(3.4 * cols, 3.5 * rows))
    for k, f in enumerate(maps):
        ax = fig.add_subplot(rows, cols, k + 1)
        show(ax, image, size)
        step = size / f
        for t in range(1, f):
            ax.axhline(t * step, color="white", lw=0.3, alpha=0.7)
            ax.axvline(t * step, color="white", lw=0.3, alpha=0.7)
        c = f // 2
        boxes = priors_at(cfg, k, c, c)
        colour = MAP_COLOURS[k % len(MAP_COLOURS)]
        ax.add_patch(Rectangle((c * step, c * step), step, step, color="yellow", alpha=0.6))
        px = to_pixels(boxes, size)
        draw_boxes(ax, px, colour, lw=2)
        # Limits that hold the whole image and every box drawn (boxes may reach past the image).
        lo = min(0.0, float(px.min())) - 0.04 * size
        hi = max(float(size), float(px.max())) + 0.04 * size
        ax.set_xlim(lo, hi)
        ax.set_ylim(hi, lo)
        ax.set_title(f"map {k}: {f}x{f}, {len(boxes)} boxes/location, "
                     f"{f * f * len(boxes)} priors", fontsize=9)  # fmt: skip
    total = generate_priors(cfg).shape[0]
    fig.suptitle(f"{config}: default boxes at the centre location of each map ({total} in all)",
                 fontsize=11)  # fmt: skip
    fig.tight_layout()
    return fig


def fig_scales() -> Figure:
    """The paper's scale rule against the min/max sizes of the shipped configs."""
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot(1, 1, 1)
    k = np.arange(1, 7)
    rule = np.array(paper_scales(6)) * 300
    ax.plot(k, rule, "ko--", label="paper: s_k = 0.2 + 0.7 (k-1)/5, x 300 px")
    for name, marker in (("ssd300_voc", "s"), ("ssd300_coco", "^")):
        p = load_config(name).priors
        ax.plot(k, p.min_sizes, marker + "-", label=f"{name} min_sizes (s_k)")
    p = load_config("ssd300_voc").priors
    ax.plot(k, np.sqrt(np.array(p.min_sizes) * np.array(p.max_sizes)), "s:",
            label="ssd300_voc sqrt(min x max) (s'_k)")  # fmt: skip
    ax.set_xlabel("feature map k (38, 19, 10, 5, 3, 1)")
    ax.set_ylabel("box side (px)")
    ax.set_title("Default box scales: the formula vs the configs")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def fig_receptive_fields() -> Figure:
    """Theoretical receptive field of each SSD300 map vs its default box sizes (log scale)."""
    from ssdlib.model import VGG16Backbone

    p = load_config("ssd300_voc").priors
    rf = receptive_fields(VGG16Backbone(300), 300)
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot(1, 1, 1)
    k = np.arange(len(rf))
    ax.bar(k - 0.2, [r.size for r in rf], 0.4, label="receptive field (px)", color="#9ecae1")
    ax.bar(k + 0.2, p.max_sizes, 0.4, label="max size (px)",
           color="#fdae6b")  # fmt: skip
    ax.plot(k + 0.2, p.min_sizes, "k_", ms=18, mew=2, label="min size (px)")
    ax.axhline(300, color="grey", ls=":", lw=1)
    ax.text(len(rf) - 0.6, 310, "image side", fontsize=8, color="grey")
    names = ["conv4_3", "conv7", "conv8_2", "conv9_2", "conv10_2", "conv11_2"]
    ax.set_xticks(k, [f"{n}\n{f}x{f}" for n, f in zip(names, p.feature_maps)], fontsize=8)
    ax.set_ylabel("pixels")
    ax.set_title("SSD300: every map sees more than its boxes")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def fig_matching(threshold: float = 0.5, config: str = "ssd300_voc") -> Figure:
    """Matched priors of one image (coloured per object) and how the threshold changes them."""
    cfg = load_config(config).priors
    size = cfg.image_size
    image, target = sample_image(size)
    gt = target["boxes"] / size
    priors = generate_priors(cfg)
    labels, boxes = match(gt, target["labels"], priors, threshold)
    fig = Figure(figsize=(11, 4.6))
    ax = fig.add_subplot(1, 2, 1)
    show(ax, image)
    # which object each positive prior took: compare matched boxes with the ground truths
    owner = (boxes[:, None, :] == gt[None]).all(-1).float().argmax(1)
    pos = torch.nonzero(labels).flatten()
    colours = [CLASS_COLOURS[int(owner[p]) % 5] for p in pos]
    draw_boxes(ax, to_pixels(priors[pos], size), colours, lw=0.8)
    draw_boxes(ax, target["boxes"], "white", lw=2.5, ls="--")
    ax.set_title(f"{len(pos)} positive priors of {len(priors)} at IoU >= {threshold}", fontsize=9)
    ax2 = fig.add_subplot(1, 2, 2)
    thresholds = [0.3, 0.4, 0.5, 0.6, 0.7]
    width = 0.8 / len(gt)
    for g in range(len(gt)):
        counts = [len(matches_for_box(gt[g], priors, t).indices) for t in thresholds]
        side = (gt[g, 2:] - gt[g, :2]).mul(size).tolist()
        ax2.bar(np.arange(len(thresholds)) + g * width, counts, width, color=CLASS_COLOURS[g % 5],
                label=f"object {g}: {side[0]:.0f}x{side[1]:.0f} px")  # fmt: skip
    ax2.set_xticks(np.arange(len(thresholds)) + 0.4 - width / 2, [str(t) for t in thresholds])
    ax2.set_xlabel("IoU threshold")
    ax2.set_ylabel("matched priors (>= 1: best prior forced)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


def fig_encoding() -> Figure:
    """A worked example of the box coding: prior d, ground truth g, and the four targets."""
    prior = torch.tensor([[0.50, 0.50, 0.30, 0.30]])
    gt = torch.tensor([[0.38, 0.30, 0.72, 0.62]])
    t = encode(gt, prior)[0].tolist()
    fig = Figure(figsize=(5.6, 5))
    ax = fig.add_subplot(1, 1, 1)
    draw_boxes(ax, cxcywh_to_xyxy(prior), "#1f77b4", ["prior d"], lw=2, ls="--")
    draw_boxes(ax, gt, "#d62728", ["ground truth g"], lw=2)
    g_c = ((gt[0, :2] + gt[0, 2:]) / 2).tolist()
    ax.plot(*prior[0, :2].tolist(), "o", color="#1f77b4")
    ax.plot(*g_c, "o", color="#d62728")
    ax.add_patch(FancyArrowPatch(prior[0, :2].tolist(), g_c, arrowstyle="->", mutation_scale=12))
    ax.text(0.03, 0.97, "t_cx = (g_cx - d_cx) / (0.1 d_w) = {:.3f}\n"
            "t_cy = (g_cy - d_cy) / (0.1 d_h) = {:.3f}\n"
            "t_w = log(g_w / d_w) / 0.2 = {:.3f}\n"
            "t_h = log(g_h / d_h) / 0.2 = {:.3f}".format(*t),
            transform=ax.transAxes, va="top", family="monospace", fontsize=8)  # fmt: skip
    ax.set_xlim(0.1, 0.9)
    ax.set_ylim(0.9, 0.1)
    ax.set_aspect("equal")
    ax.set_title("encode(g, d, variances=(0.1, 0.2))", fontsize=10)
    fig.tight_layout()
    return fig


def background_losses(batch_size: int = 8, seed: int = 0):
    """Background losses of an untrained light SSD on a Shapes batch, for the mining figure.

    Returns (background_loss (B, P), labels (B, P)) from the shapes config's model and priors.
    """
    import torch.nn.functional as F

    from ssdlib.data import build_test_transform, collate
    from ssdlib.model import build_model

    cfg = load_config("shapes")
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    s = cfg.input.image_size
    transform = build_test_transform(s, cfg.input.pixel_mean, cfg.input.pixel_std)
    ds = ShapesDataset("test", batch_size, image_size=cfg.data.source_size, transform=transform)
    images, targets = collate([ds[i] for i in range(batch_size)])
    labels, _ = match_batch([t["boxes"] for t in targets], [t["labels"] for t in targets],
                            model.priors, cfg.train.iou_threshold)  # fmt: skip
    with torch.no_grad():
        logits, _ = model(images)
    return -F.log_softmax(logits, dim=-1)[..., 0], labels


def fig_hard_negatives(neg_pos_ratio: int = 3) -> Figure:
    """Histogram of the background losses of negative priors, and the 3:1 hardest kept."""
    from ssdlib.loss import hard_negative_mining

    bg, labels = background_losses()
    mask = hard_negative_mining(bg, labels, neg_pos_ratio)
    neg = labels == 0
    kept, dropped = bg[mask & neg].numpy(), bg[~mask & neg].numpy()
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot(1, 1, 1)
    bins = np.linspace(float(bg[neg].min()), float(bg[neg].max()), 50)
    ax.hist(dropped, bins, color="#bdbdbd", label=f"ignored negatives ({dropped.size})")
    ax.hist(kept, bins, color="#d62728", label=f"hard negatives kept ({kept.size})")
    ax.set_yscale("log")
    ax.set_xlabel("background loss -log p(background)")
    ax.set_ylabel("priors")
    ax.set_title(f"Hard negative mining, 8 Shapes images, untrained model: "
                 f"{int((labels > 0).sum())} positives -> {kept.size} negatives", fontsize=9)  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig_architecture(config: str = "ssd300_voc") -> Figure:
    """SSD's architecture diagram (:func:`ssdlib.viz.architecture.plot_architecture`), random
    weights: only the shapes are drawn."""
    from ssdlib.model import build_model
    from ssdlib.viz.architecture import plot_architecture

    cfg = load_config(config, ["model.backbone_weights=none"])
    return plot_architecture(build_model(cfg), cfg)


FIGURES: dict[str, Callable[[], Figure]] = {
    "architecture": fig_architecture,
    "dataset_samples": fig_dataset_samples,
    "augmentation": fig_augmentation,
    "priors_per_map": fig_priors_per_map,
    "priors_per_map_ssd512": lambda: fig_priors_per_map("ssd512_voc"),
    "scales": fig_scales,
    "receptive_fields": fig_receptive_fields,
    "matching": fig_matching,
    "encoding": fig_encoding,
    "hard_negatives": fig_hard_negatives,
}


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write a PNG without metadata that changes between runs."""
    path = Path(path)
    path.write_bytes(render_png_dpi(fig, dpi))
    return path


def render_png_dpi(fig: Figure, dpi: int) -> bytes:
    fig.set_dpi(dpi)
    return render_png(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("figures"), help="output folder")
    parser.add_argument("--only", nargs="*", choices=sorted(FIGURES), default=None,
                        help="figure names (default: all)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or list(FIGURES):
        t = time.perf_counter()
        path = save_figure(FIGURES[name](), args.out / f"{name}.png")
        print(f"{path} ({time.perf_counter() - t:.1f} s)")
    return 0
