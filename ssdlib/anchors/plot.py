"""The ``anchors analyze --plot`` figure: objects' (w, h) over the priors' shapes, and the
coverage by object size."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from ssdlib.anchors.coverage import CoverageResult
from ssdlib.config import PriorsConfig
from ssdlib.priors import densify_factors


def prior_shapes(cfg: PriorsConfig) -> list[tuple[int, float, float]]:
    """``(map, w, h)`` in input pixels of every distinct prior shape (before clipping)."""
    out = []
    for k, (lo, hi, ratios) in enumerate(zip(cfg.min_sizes, cfg.max_sizes, cfg.aspect_ratios)):
        shapes = {(lo, lo), ((lo * hi) ** 0.5,) * 2}
        for r in ratios:
            q = r**0.5
            shapes |= {(lo * q, lo / q), (lo / q, lo * q)}
        out += [(k, w, h) for w, h in sorted(shapes)]
    return out


def draw_objects_vs_priors(ax, wh: torch.Tensor, covered: torch.Tensor, iou_threshold: float,
                           cfg: PriorsConfig, emphasise_map: int | None = None) -> None:  # fmt: skip
    """The objects' (w, h) as points over the priors' shapes (crosses, one colour per map), on
    log axes; the objects without a prior at IoU >= ``iou_threshold`` in red.

    Args:
        wh: (N, 2) objects' width and height in input pixels.
        covered: (N,) bool, best IoU >= ``iou_threshold`` (:class:`CoverageResult.covered`).
        emphasise_map: draw this map's shapes larger (the explorer's chosen map).
    The two point sets carry ``gid`` "covered" and "uncovered", so tests can read them back.
    """
    wh = wh.clamp(min=0.5)  # log axes: a degenerate box still shows
    ax.scatter(wh[covered, 0], wh[covered, 1], s=4, c="tab:blue", alpha=0.35, lw=0, gid="covered",
               label=f"covered ({int(covered.sum())})")  # fmt: skip
    ax.scatter(wh[~covered, 0], wh[~covered, 1], s=7, c="tab:red", alpha=0.7, lw=0, gid="uncovered",
               label=f"best IoU < {iou_threshold:g} ({int((~covered).sum())})")  # fmt: skip
    dens = densify_factors(cfg.densify, len(cfg.feature_maps))
    colours = [f"C{i + 2}" for i in range(len(cfg.feature_maps))]
    for k, w, h in prior_shapes(cfg):
        big = k == emphasise_map
        ax.scatter([w], [h], marker="x", s=110 if big else 60, c=colours[k], lw=3 if big else 2)
    for k in range(len(cfg.feature_maps)):
        ax.scatter([], [], marker="x", c=colours[k],
                   label=f"priors map {k} ({cfg.feature_maps[k]}², densify {dens[k]})")  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel="width (input px)", ylabel="height (input px)")
    # Powers of two in plain numbers: sizes read as pixels, not as 2 x 10^1.
    ticks = [2**e for e in range(1, 12)]
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FixedFormatter([str(t) for t in ticks]))
        axis.set_minor_locator(NullLocator())
    ax.legend(fontsize=7, loc="upper left")


def coverage_figure(result: CoverageResult, report: dict, cfg: PriorsConfig):
    """A two-panel matplotlib figure (Agg)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.6), layout="constrained")
    ax, bx = fig.subplots(1, 2, width_ratios=[1.2, 1])
    draw_objects_vs_priors(ax, result.wh, result.covered, result.iou_threshold, cfg)
    ax.set_title(f"{report['num_objects']} objects vs {report['num_priors']} priors")
    bins = [b for b in report["by_size"] if b["count"]]
    xs = range(len(bins))
    bx.bar(xs, [100 * b["coverage"] for b in bins], color="tab:blue")
    for x, b in zip(xs, bins):
        bx.annotate(f"n={b['count']}", (x, 100 * b["coverage"]), ha="center", va="bottom", fontsize=8)
    bx.set_xticks(list(xs), [b["label"] for b in bins], rotation=30, fontsize=8)
    bx.set(ylim=(0, 110), ylabel=f"% with a prior at IoU >= {result.iou_threshold:g}",
           title=f"coverage by size (all: {100 * report['coverage']:.1f} %)")  # fmt: skip
    return fig


def save_coverage_plot(result: CoverageResult, report: dict, cfg: PriorsConfig,
                       path: str | os.PathLike) -> Path:  # fmt: skip
    """Write the figure to ``path`` (PNG) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad():
        coverage_figure(result, report, cfg).savefig(tmp, format="png", dpi=100)
    os.replace(tmp, path)
    return path
