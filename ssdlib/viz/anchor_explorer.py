"""The anchor explorer: an ipywidgets tool to look at SSD's default boxes and their matches.

Two modes:

* **default boxes** — choose a feature map, a location (row i, column j), the box sizes and
  aspect ratios, and see the boxes of that location over an image, with the map's grid;
* **matching** — choose a ground-truth box and an IoU threshold and see every prior
  :func:`ssdlib.matching.match` assigns to it, coloured by feature map, with their IoUs and
  encoded regression targets.

The widget only wires controls to the pure functions of :mod:`ssdlib.viz.anchors` and draws
their results with matplotlib into an ``ipywidgets.Image``. After every change,
``explorer.state`` (and the ``status`` HTML widget) says what is drawn, so tests and learners can
check it without looking at pixels.

>>> explorer = AnchorExplorer(load_config("ssd300_voc").priors)   # doctest: +SKIP
>>> explorer            # in Jupyter: displays the controls and the drawing   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import html
import io

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ssdlib.config import PriorsConfig
from ssdlib.priors import generate_priors, priors_per_map
from ssdlib.viz.anchors import describe_location, matches_for_box, priors_at, to_pixels

__all__ = ["AnchorExplorer", "MAP_COLOURS", "render_png"]

# One colour per feature map (tab10), shared with the course figures.
MAP_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
RATIO_CHOICES = (1.5, 2.0, 3.0, 4.0)


def render_png(fig: Figure) -> bytes:
    """PNG bytes of a figure, without timestamps (same drawing -> same bytes)."""
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _map_of(index: int, counts: list[int]) -> int:
    """Feature map that prior ``index`` belongs to, given priors per map."""
    return int(np.searchsorted(np.cumsum(counts), index, side="right"))


class AnchorExplorer:
    """Interactive default boxes over an image.

    Args:
        priors_cfg: the priors config to explore (``load_config(name).priors``).
        image: (H, W, 3) uint8 picture drawn under the boxes (resized by extent to the input
            size); None draws a grey canvas.
        gt_boxes: (G, 4) relative xyxy ground-truth boxes for the matching mode.
        variances: box coding variances for the encoded targets.
    """

    def __init__(
        self,
        priors_cfg: PriorsConfig,
        image: np.ndarray | torch.Tensor | None = None,
        gt_boxes: torch.Tensor | None = None,
        variances: tuple[float, float] | None = None,
        figsize: tuple[float, float] = (4.8, 4.8),
    ) -> None:
        import ipywidgets as w

        self.cfg = priors_cfg
        size = priors_cfg.image_size
        if image is None:
            image = np.full((size, size, 3), 200, dtype=np.uint8)
        elif isinstance(image, torch.Tensor):
            image = image.permute(1, 2, 0).numpy() if image.shape[0] == 3 else image.numpy()
        self.image = np.asarray(image)
        self.gt_boxes = (torch.zeros(0, 4) if gt_boxes is None else gt_boxes.float()).reshape(-1, 4)
        self.variances = tuple(variances or priors_cfg.variances)
        self.figsize = figsize
        self.state: dict = {}
        self._busy = False

        maps = priors_cfg.feature_maps
        self.mode = w.ToggleButtons(options=["default boxes", "matching"], description="mode")
        self.map_index = w.Dropdown(
            options=[(f"{k}: {f}x{f}", k) for k, f in enumerate(maps)], value=0, description="map"
        )
        self.row = w.IntSlider(value=maps[0] // 2, min=0, max=maps[0] - 1, description="row i")
        self.col = w.IntSlider(value=maps[0] // 2, min=0, max=maps[0] - 1, description="column j")
        self.min_size = w.FloatSlider(min=4, max=size, step=1, description="min size")
        self.max_size = w.FloatSlider(min=4, max=1.2 * size, step=1, description="max size")
        self.ratios = w.SelectMultiple(options=RATIO_CHOICES, description="ratios", rows=4)
        self.gt_index = w.Dropdown(
            options=[(f"box {g}", g) for g in range(len(self.gt_boxes))] or [("(none)", -1)],
            description="object",
        )
        self.iou = w.FloatSlider(value=0.5, min=0.1, max=0.9, step=0.05, description="IoU ≥")
        self.status = w.HTML()
        self.picture = w.Image(format="png")
        self._reset_sizes()

        for control in (self.mode, self.row, self.col, self.min_size, self.max_size, self.ratios,
                        self.gt_index, self.iou):  # fmt: skip
            control.observe(self._on_change, names="value")
        self.map_index.observe(self._on_map, names="value")

        boxes_box = w.VBox([self.map_index, self.row, self.col, self.min_size, self.max_size,
                            self.ratios])  # fmt: skip
        match_box = w.VBox([self.gt_index, self.iou])
        self.widget = w.VBox([self.mode, w.HBox([w.VBox([boxes_box, match_box]), self.picture]),
                              self.status])  # fmt: skip
        self.update()

    # --- wiring ------------------------------------------------------------------------

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _reset_sizes(self) -> None:
        """Put the size and ratio controls back to the config's values for the chosen map."""
        k = self.map_index.value
        self.min_size.value = float(self.cfg.min_sizes[k])
        self.max_size.value = float(self.cfg.max_sizes[k])
        options = sorted({*RATIO_CHOICES, *map(float, self.cfg.aspect_ratios[k])})
        self.ratios.options = tuple(options)
        self.ratios.value = tuple(float(r) for r in self.cfg.aspect_ratios[k])

    def _on_map(self, _change) -> None:
        self._busy = True  # one redraw for the whole batch of control changes
        try:
            f = self.cfg.feature_maps[self.map_index.value]
            for slider in (self.row, self.col):
                slider.value = min(slider.value, f - 1)
                slider.max = f - 1
            self._reset_sizes()
        finally:
            self._busy = False
        self.update()

    def _on_change(self, _change) -> None:
        if not self._busy:
            self.update()

    # --- what is drawn -----------------------------------------------------------------

    def current_config(self) -> PriorsConfig:
        """The priors config with the chosen map's sizes and ratios replaced by the controls'."""
        k = self.map_index.value
        mins, maxs = list(self.cfg.min_sizes), list(self.cfg.max_sizes)
        ratios = [list(r) for r in self.cfg.aspect_ratios]
        mins[k], maxs[k] = float(self.min_size.value), float(self.max_size.value)
        ratios[k] = sorted(float(r) for r in self.ratios.value)
        return dataclasses.replace(self.cfg, min_sizes=mins, max_sizes=maxs, aspect_ratios=ratios)

    def update(self) -> None:
        """Recompute, redraw and refresh ``state`` / ``status`` from the controls."""
        cfg = self.current_config()
        if self.mode.value == "matching" and len(self.gt_boxes):
            self.state = self._matching_state(cfg)
        else:
            self.state = self._boxes_state(cfg)
        self.status.value = f"<pre>{html.escape(self.state['text'])}</pre>"
        self.picture.value = self.draw()

    def _boxes_state(self, cfg: PriorsConfig) -> dict:
        k, i, j = self.map_index.value, self.row.value, self.col.value
        boxes = priors_at(cfg, k, i, j)
        total = sum(priors_per_map(cfg))
        text = describe_location(cfg, k, i, j, boxes) + f"\n{total} priors in all"
        return {"mode": "default boxes", "map": k, "location": (i, j), "num_boxes": len(boxes),
                "boxes_px": to_pixels(boxes, cfg.image_size), "total_priors": total,
                "text": text}  # fmt: skip

    def _matching_state(self, cfg: PriorsConfig) -> dict:
        g = max(self.gt_index.value, 0)
        priors = generate_priors(cfg)
        result = matches_for_box(self.gt_boxes[g], priors, self.iou.value, self.variances)
        counts = priors_per_map(cfg)
        maps = [_map_of(int(p), counts) for p in result.indices]
        per_map = [maps.count(k) for k in range(len(counts))]
        lines = [f"object {g}: {len(result.indices)} matched priors at IoU >= {self.iou.value:.2f} "
                 f"({int(result.forced.sum())} forced); per map {per_map}"]  # fmt: skip
        for p, iou, t in list(zip(result.indices, result.ious, result.targets))[:6]:
            lines.append(f"  prior {int(p):5d} (map {_map_of(int(p), counts)}) IoU {iou:.3f} "
                         f"targets {[round(v, 2) for v in t.tolist()]}")  # fmt: skip
        return {"mode": "matching", "object": g, "iou_threshold": self.iou.value,
                "indices": result.indices, "per_map": per_map,
                "boxes_px": to_pixels(priors[result.indices], cfg.image_size),
                "maps_of_boxes": maps, "text": "\n".join(lines)}  # fmt: skip

    def draw(self) -> bytes:
        """PNG of the current state: image, grid of the chosen map, boxes."""
        size = self.cfg.image_size
        fig = Figure(figsize=self.figsize, dpi=80)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.imshow(self.image, extent=(0, size, size, 0))
        ax.set_xlim(-0.1 * size, 1.1 * size)
        ax.set_ylim(1.1 * size, -0.1 * size)
        ax.axis("off")
        state = self.state
        if state["mode"] == "default boxes":
            k = state["map"]
            f, stride = self.cfg.feature_maps[k], size / self.cfg.feature_maps[k]
            for t in range(f + 1):  # the map's cells: one location each
                ax.plot([t * stride] * 2, [0, size], color="white", lw=0.4, alpha=0.6)
                ax.plot([0, size], [t * stride] * 2, color="white", lw=0.4, alpha=0.6)
            i, j = state["location"]
            ax.add_patch(Rectangle((j * stride, i * stride), stride, stride, color="yellow",
                                   alpha=0.5))  # fmt: skip
            colours = [MAP_COLOURS[k % len(MAP_COLOURS)]] * state["num_boxes"]
        else:
            x1, y1, x2, y2 = (self.gt_boxes[state["object"]] * size).tolist()
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="lime", lw=3))
            colours = [MAP_COLOURS[m % len(MAP_COLOURS)] for m in state["maps_of_boxes"]]
        for (x1, y1, x2, y2), c in zip(state["boxes_px"].tolist(), colours):
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=c, lw=1.5))
        return render_png(fig)
