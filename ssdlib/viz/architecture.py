"""SSD's architecture, read off a built model: feature maps, channels, boxes per location, priors.

:func:`architecture_rows` measures every number from the model itself (map sizes from a
meta-device forward pass, channels and boxes per location from the heads' convolutions) and
checks them against the config's priors, so the diagram of :func:`plot_architecture` cannot
drift from the code that runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle

from ssdlib.config import Config
from ssdlib.model import feature_map_sizes
from ssdlib.model.ssd import SSD
from ssdlib.priors import boxes_per_location
from ssdlib.viz.anchor_explorer import MAP_COLOURS

__all__ = ["MapRow", "architecture_rows", "map_names", "plot_architecture"]

# The paper's layer names of the prediction maps (figure 2), by number of maps of the VGG model.
VGG_MAP_NAMES = {
    6: ["conv4_3", "conv7", "conv8_2", "conv9_2", "conv10_2", "conv11_2"],
    7: ["conv4_3", "conv7", "conv8_2", "conv9_2", "conv10_2", "conv11_2", "conv12_2"],
}


@dataclass(frozen=True)
class MapRow:
    """One prediction map: ``size`` x ``size`` x ``channels``, ``boxes`` default boxes per
    location, ``priors`` = size² · boxes, placed every ``stride`` input pixels."""

    name: str
    size: int
    channels: int
    boxes: int
    priors: int
    stride: float
    min_size: float
    max_size: float


def map_names(cfg: Config) -> list[str]:
    """The paper's names for a VGG16 model's maps, else ``map 0``, ``map 1`` ..."""
    n = len(cfg.priors.feature_maps)
    if cfg.model.name.endswith("_vgg16") and n in VGG_MAP_NAMES:
        return list(VGG_MAP_NAMES[n])
    return [f"map {k}" for k in range(n)]


def architecture_rows(model: SSD, cfg: Config) -> list[MapRow]:
    """The prediction maps of ``model`` (built from ``cfg``), one :class:`MapRow` each.

    Raises ValueError when the model disagrees with ``cfg.priors`` (map sizes, boxes per
    location, total priors): the diagram then would not describe the network.
    """
    p = cfg.priors
    sizes = feature_map_sizes(model.backbone, p.image_size)
    if sizes != list(p.feature_maps):
        raise ValueError(f"priors.feature_maps {list(p.feature_maps)} != the backbone's map sizes {sizes}")
    logits = model.head.num_logits
    from_heads = [h.out_channels // logits for h in model.head.cls_heads]
    expected = boxes_per_location(p.aspect_ratios, p.densify)
    if from_heads != expected:
        raise ValueError(f"boxes per location: heads have {from_heads}, priors config {expected}")
    rows = [
        MapRow(name, f, h.in_channels, n, f * f * n, float(s), float(lo), float(hi))
        for name, f, h, n, s, lo, hi in zip(map_names(cfg), sizes, model.head.cls_heads, from_heads,
                                            p.strides, p.min_sizes, p.max_sizes, strict=True)
    ]  # fmt: skip
    total = sum(r.priors for r in rows)
    if total != model.priors.shape[0]:
        raise ValueError(f"{total} priors from the maps, but the model holds {model.priors.shape[0]}")
    return rows


def plot_architecture(model: SSD, cfg: Config, title: str | None = None) -> Figure:
    """A diagram of the detector: input -> backbone -> one square per prediction map (drawn with
    its grid, side growing with the map size) -> heads -> all priors -> NMS.

    Every number on it comes from :func:`architecture_rows`.
    """
    rows = architecture_rows(model, cfg)
    size = cfg.priors.image_size
    total = sum(r.priors for r in rows)
    k_logits = model.head.num_logits
    n = len(rows)
    width, height = 1.9 * n + 3.2, 5.6
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")

    def box(x, y, w, h, text, colour="#dddddd", fontsize=8):
        ax.add_patch(Rectangle((x, y), w, h, fc=colour, ec="black", lw=0.8))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize)

    def arrow(x0, y0, x1, y1):
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=9,
                                     lw=0.8, color="black"))  # fmt: skip

    backbone = type(model.backbone).__name__
    box(0.15, 3.35, 1.25, 1.1, f"input\n{size}x{size}x3", "#ffffff", 9)
    box(0.15, 1.75, 1.25, 1.1, f"{backbone}\n(backbone)", "#cfe2f3", 7.5)
    arrow(0.775, 3.35, 0.775, 2.85)
    largest = max(r.size for r in rows)
    x_prev = 1.4
    for k, r in enumerate(rows):
        x0 = 1.6 + 1.9 * k
        side = 0.35 + 0.95 * (r.size / largest) ** 0.5      # square: bigger for finer maps
        y0 = 3.9 - side / 2
        colour = MAP_COLOURS[k % len(MAP_COLOURS)]
        ax.add_patch(Rectangle((x0 + 0.8 - side / 2, y0), side, side, fc=colour, alpha=0.35,
                               ec=colour, lw=1.2))  # fmt: skip
        for t in range(1, r.size):
            step = side / r.size
            ax.plot([x0 + 0.8 - side / 2 + t * step] * 2, [y0, y0 + side], color=colour, lw=0.3)
            ax.plot([x0 + 0.8 - side / 2, x0 + 0.8 + side / 2], [y0 + t * step] * 2, color=colour,
                    lw=0.3)  # fmt: skip
        ax.text(x0 + 0.8, 4.75, r.name, ha="center", fontsize=9, weight="bold")
        ax.text(x0 + 0.8, 2.95, f"{r.size}x{r.size}x{r.channels}\nstride {r.stride:g} px",
                ha="center", va="top", fontsize=7.5)  # fmt: skip
        box(x0 + 0.1, 1.55, 1.4, 0.7, f"3x3 convs:\n{r.boxes}·{k_logits} scores, {r.boxes}·4 offsets",
            "#fce5cd", 6.5)  # fmt: skip
        arrow(x0 + 0.8, 2.55, x0 + 0.8, 2.25)
        ax.text(x0 + 0.8, 1.15, f"{r.boxes} boxes/location\n{r.size}²·{r.boxes} = {r.priors} priors\n"
                f"{r.min_size:g}-{r.max_size:g} px", ha="center", va="top", fontsize=7.5)  # fmt: skip
        # Each map feeds the next one (the backbone continues) and its own head.
        arrow(x_prev, 3.9 if k else 2.3, x0 + 0.8 - side / 2, 3.9)
        x_prev = x0 + 0.8 + side / 2
    xr = 1.6 + 1.9 * n
    box(xr, 1.55, 1.45, 0.7, f"concat:\n{total} priors", "#d9ead3", 8)
    box(xr, 0.25, 1.45, 0.8, "softmax, decode,\nthreshold, NMS\n-> detections", "#ffffff", 7.5)
    arrow(xr + 0.725, 1.55, xr + 0.725, 1.05)
    arrow(xr - 0.4, 1.9, xr, 1.9)
    ax.text(width / 2, 0.05, " + ".join(str(r.priors) for r in rows) + f" = {total}",
            ha="center", va="bottom", fontsize=8)  # fmt: skip
    ax.text(0.15, 5.5, title or f"{cfg.model.name}: {n} prediction maps, {total} default boxes",
            fontsize=11, va="top")  # fmt: skip
    return fig
