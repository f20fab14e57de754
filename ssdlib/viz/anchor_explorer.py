"""The anchor explorer: an ipywidgets tool to look at SSD's default boxes and their matches.

Two modes:

* **default boxes** — choose a feature map, a location (row i, column j), the box sizes and
  aspect ratios, and see the boxes of that location over an image, with the map's grid;
* **matching** — choose a ground-truth box and an IoU threshold and see every prior
  :func:`ssdlib.matching.match` assigns to it, coloured by feature map, with their IoUs and
  encoded regression targets.

Given a dataset's objects (``objects=``), a second picture shows them as points in the (w, h)
plane (input pixels, after the test resize) over the priors' shapes, the objects whose best IoU
with any prior is below ``iou_threshold`` (``train.iou_threshold``) in red. The best IoUs come
from :func:`ssdlib.anchors.coverage.best_iou_per_object`, the code behind ``ssdlib anchors
analyze``, and follow the controls: a smaller min size on map 0 covers more small objects.

:meth:`AnchorExplorer.grid` draws chosen states side by side into one static figure, for the
places where no kernel runs (GitHub shows no widgets).

The widget only wires controls to the pure functions of :mod:`ssdlib.viz.anchors` and draws
their results with matplotlib into an ``ipywidgets.Image``. After every change,
``explorer.state`` (and the ``status`` HTML widget) says what is drawn, so tests and learners can
check it without looking at pixels.

>>> explorer = AnchorExplorer(load_config("ssd300_voc").priors)   # doctest: +SKIP
>>> explorer            # in Jupyter: displays the controls and the drawing   # doctest: +SKIP
>>> explorer.grid([{"map_index": 0}, {"map_index": 4, "row": 0, "col": 0}])   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import io
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ssdlib.anchors.coverage import best_iou_per_object
from ssdlib.anchors.plot import draw_objects_vs_priors
from ssdlib.config import PriorsConfig
from ssdlib.priors import generate_priors, priors_per_map
from ssdlib.viz.anchors import describe_location, matches_for_box, priors_at, to_pixels

__all__ = ["AnchorExplorer", "MAP_COLOURS", "render_png"]

# One colour per feature map (tab10), shared with the course figures.
MAP_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
RATIO_CHOICES = (1.5, 2.0, 3.0, 4.0)
# Controls in the order a saved state is applied: the map first, since choosing a map resets
# the sizes, ratios and slider ranges that follow.
CONTROLS = ("map_index", "mode", "row", "col", "min_size", "max_size", "ratios", "gt_index", "iou")


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
        objects: a dataset's objects, one (G_i, 4) relative xyxy tensor per image (as
            :func:`ssdlib.anchors.coverage.dataset_objects` returns them), for the (w, h)
            overlay; None: no overlay.
        iou_threshold: the overlay's coverage threshold (the config's ``train.iou_threshold``).
    """

    def __init__(
        self,
        priors_cfg: PriorsConfig,
        image: np.ndarray | torch.Tensor | None = None,
        gt_boxes: torch.Tensor | None = None,
        variances: tuple[float, float] | None = None,
        figsize: tuple[float, float] = (4.8, 4.8),
        objects: Sequence[torch.Tensor] | None = None,
        iou_threshold: float = 0.5,
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
        self._depth = 0  # > 0 while a batch of control changes runs: one redraw at its end
        self.objects = None
        if objects is not None:
            kept = [b.to(torch.float32).reshape(-1, 4) for b in objects]
            self.objects = torch.cat(kept) if kept else torch.zeros(0, 4)
        self.iou_threshold = float(iou_threshold)
        self._best_iou_for: tuple[str, torch.Tensor] | None = None  # (config repr, best IoUs)
        self._objects_drawn_for: tuple | None = None  # what the overlay picture shows now

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
        self.objects_picture = w.Image(format="png")
        self._reset_sizes()

        for control in (self.mode, self.row, self.col, self.min_size, self.max_size, self.ratios,
                        self.gt_index, self.iou):  # fmt: skip
            control.observe(self._on_change, names="value")
        self.map_index.observe(self._on_map, names="value")

        boxes_box = w.VBox([self.map_index, self.row, self.col, self.min_size, self.max_size,
                            self.ratios])  # fmt: skip
        match_box = w.VBox([self.gt_index, self.iou])
        pictures = [self.picture] + ([self.objects_picture] if self.objects is not None else [])
        self.widget = w.VBox([self.mode, w.HBox([w.VBox([boxes_box, match_box]), *pictures]),
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

    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        """Control changes inside redraw once, at the end of the outermost batch."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if self._depth == 0:
            self.update()

    def _on_map(self, _change) -> None:
        with self._batch():
            f = self.cfg.feature_maps[self.map_index.value]
            for slider in (self.row, self.col):
                slider.value = min(slider.value, f - 1)
                slider.max = f - 1
            self._reset_sizes()

    def _on_change(self, _change) -> None:
        if self._depth == 0:
            self.update()

    def controls(self) -> dict:
        """The controls' values, by name (:data:`CONTROLS`); :meth:`set_controls` takes them."""
        return {name: getattr(self, name).value for name in CONTROLS}

    def set_controls(self, values: dict) -> None:
        """Set several controls (names from :data:`CONTROLS`) with one redraw; the map first."""
        unknown = set(values) - set(CONTROLS)
        if unknown:
            raise KeyError(f"unknown controls {sorted(unknown)}; known: {CONTROLS}")
        with self._batch():
            for name in CONTROLS:
                if name in values:
                    getattr(self, name).value = values[name]

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
        if self.objects is not None:
            self.state["objects"] = self._objects_state(cfg)
            self.state["text"] += "\n" + self.state["objects"]["text"]
        self.status.value = f"<pre>{html.escape(self.state['text'])}</pre>"
        self.picture.value = self.draw()
        # The overlay depends on the priors and the chosen map only: a new location keeps it.
        key = (repr(cfg), self.map_index.value)
        if self.objects is not None and key != self._objects_drawn_for:
            self.objects_picture.value = self.draw_objects()
            self._objects_drawn_for = key

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

    def _objects_state(self, cfg: PriorsConfig) -> dict:
        """Which objects the current priors cover; best IoUs recomputed only when the priors
        change (moving the location or the matching controls keeps them)."""
        key = repr(cfg)
        if self._best_iou_for is None or self._best_iou_for[0] != key:
            self._best_iou_for = (key, best_iou_per_object(self.objects, generate_priors(cfg)))
        best = self._best_iou_for[1]
        uncovered = torch.nonzero(best < self.iou_threshold).flatten()
        n = len(best)
        text = (f"data: {n} objects, {len(uncovered)} with no prior at IoU >= "
                f"{self.iou_threshold:g}" + (f" (coverage {1 - len(uncovered) / n:.1%})" if n else ""))
        return {"wh": (self.objects[:, 2:] - self.objects[:, :2]) * cfg.image_size,
                "best_iou": best, "uncovered": uncovered, "text": text}  # fmt: skip

    def draw(self) -> bytes:
        """PNG of the current state: image, grid of the chosen map, boxes."""
        fig = Figure(figsize=self.figsize, dpi=80)
        self.draw_on(fig.add_axes((0, 0, 1, 1)), self.state)
        return render_png(fig)

    def draw_objects(self) -> bytes:
        """PNG of the (w, h) overlay: the objects over the current priors' shapes."""
        fig = Figure(figsize=self.figsize, dpi=80, layout="constrained")
        self.draw_objects_on(fig.add_subplot(), self.state)
        return render_png(fig)

    def draw_objects_on(self, ax, state: dict) -> None:
        """The (w, h) overlay of ``state`` into a matplotlib axes (the chosen map's priors bold)."""
        objects = state["objects"]
        covered = torch.ones(len(objects["best_iou"]), dtype=torch.bool)
        covered[objects["uncovered"]] = False
        draw_objects_vs_priors(ax, objects["wh"], covered, self.iou_threshold,
                               self.current_config(), emphasise_map=self.map_index.value)  # fmt: skip
        ax.set_title(f"{len(covered)} objects, {len(objects['uncovered'])} below IoU "
                     f"{self.iou_threshold:g}{self._sizes_note()}", fontsize=9)  # fmt: skip

    def draw_on(self, ax, state: dict) -> None:
        """Draw ``state`` (image, grid of the chosen map, boxes) into a matplotlib axes."""
        size = self.cfg.image_size
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

    # --- a static picture ---------------------------------------------------------------

    def grid(self, settings: Sequence[dict], ncols: int = 3, panel: float = 3.4) -> Figure:
        """One figure with a panel per setting, for where no kernel runs the widget.

        Args:
            settings: control values per panel (names from :data:`CONTROLS`; the others as
                the explorer has them when ``grid`` is called), plus ``"show": "objects"`` for the (w, h)
                overlay instead of the boxes over the image.
            ncols: panels per row; ``panel``: side of one panel, inches.
        Returns:
            the figure; each panel's title says what it shows (from the state, as the status
            line). The explorer's controls are put back afterwards.
        """
        nrows = math.ceil(len(settings) / ncols)
        fig = Figure(figsize=(ncols * panel, nrows * (panel + 0.3)), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).flatten()
        saved = self.controls()
        try:
            for ax, setting in zip(axes, settings):
                setting = dict(setting)
                show = setting.pop("show", "boxes")
                with self._batch():  # each panel starts from the explorer's state: one redraw
                    self.set_controls(saved)
                    self.set_controls(setting)
                if show == "objects":
                    self.draw_objects_on(ax, self.state)
                    continue
                self.draw_on(ax, self.state)
                ax.set_title(self._caption(), fontsize=9)
        finally:
            self.set_controls(saved)
        for ax in axes[len(settings) :]:
            ax.axis("off")
        return fig

    def _caption(self) -> str:
        """A short title for the current state (the first words of the status line)."""
        s = self.state
        if s["mode"] == "matching":
            return f"object {s['object']}: {len(s['indices'])} priors at IoU ≥ {s['iou_threshold']:.2f}"
        k, (i, j) = s["map"], s["location"]
        f = self.cfg.feature_maps[k]
        return f"map {k} ({f}x{f}) at ({i}, {j}): {s['num_boxes']} boxes{self._sizes_note()}"

    def _sizes_note(self) -> str:
        """A second title line when the controls changed the chosen map's sizes or ratios."""
        if self.current_config() == self.cfg:
            return ""
        return (f"\nmap {self.map_index.value}: min {self.min_size.value:g}, max "
                f"{self.max_size.value:g}, ratios {list(self.ratios.value)}")
