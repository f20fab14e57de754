"""Pure functions behind the anchor explorer and the course's default-box figures.

Everything here computes numbers (boxes, indices, IoUs, receptive fields); nothing draws. The
widget in :mod:`ssdlib.viz.anchor_explorer` and the figures in :mod:`ssdlib.viz.figures` only
render what these return, so what the learner sees is what the tests check.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ssdlib.boxes import box_iou, cxcywh_to_xyxy, encode
from ssdlib.config import PriorsConfig
from ssdlib.matching import match
from ssdlib.priors import boxes_per_location, densify_factors, location_priors

__all__ = [
    "MatchResult",
    "ReceptiveField",
    "describe_location",
    "matches_for_box",
    "paper_scales",
    "prior_index",
    "priors_at",
    "receptive_fields",
    "to_pixels",
]


def paper_scales(num_maps: int, s_min: float = 0.2, s_max: float = 0.9) -> list[float]:
    """The paper's scale rule (eq. 4): s_k = s_min + (s_max - s_min)(k - 1)/(m - 1), k = 1..m.

    Returns m scales as fractions of the image side. The shipped configs use this rule for maps
    2..m and a smaller first scale (0.1 for VOC, 0.07 for COCO) in pixels; see notebook 01.
    """
    if num_maps < 2:
        raise ValueError(f"the scale rule needs at least 2 maps, got {num_maps}")
    step = (s_max - s_min) / (num_maps - 1)
    return [s_min + step * k for k in range(num_maps)]


def prior_index(cfg: PriorsConfig, map_index: int, i: int, j: int) -> int:
    """Position in :func:`ssdlib.priors.generate_priors` of the first box at (map, row i, col j)."""
    f = cfg.feature_maps[map_index]
    if not (0 <= i < f and 0 <= j < f):
        raise IndexError(f"location ({i}, {j}) outside map {map_index} of size {f}x{f}")
    per_loc = boxes_per_location(cfg.aspect_ratios, cfg.densify)
    start = sum(fk * fk * n for fk, n in zip(cfg.feature_maps[:map_index], per_loc[:map_index]))
    return start + (i * f + j) * per_loc[map_index]


def priors_at(
    cfg: PriorsConfig,
    map_index: int,
    i: int,
    j: int,
    min_size: float | None = None,
    max_size: float | None = None,
    aspect_ratios: list[float] | None = None,
) -> torch.Tensor:
    """Default boxes of one location, optionally with other sizes/ratios than the config's.

    Args:
        cfg: the priors config (feature maps, strides, sizes, ratios, clip).
        map_index: feature map k (0-based); i, j: row and column on that map.
        min_size, max_size, aspect_ratios: replace the config's values for map k (explorer).
    Returns:
        (n, 4) float32 cx, cy, w, h relative, n = d² + 1 + 2 len(ratios) (d: the map's
        ``densify``, 1 when unset); with the config's values
        it equals ``generate_priors(cfg)[prior_index(...) : prior_index(...) + n]``.
    """
    prior_index(cfg, map_index, i, j)  # bounds check with a clear message
    stride = cfg.strides[map_index]
    lo = cfg.min_sizes[map_index] if min_size is None else min_size
    hi = cfg.max_sizes[map_index] if max_size is None else max_size
    ratios = cfg.aspect_ratios[map_index] if aspect_ratios is None else aspect_ratios
    # Same arithmetic as generate_priors_from (float64, centres from the stride), rounded once.
    scale = cfg.image_size / stride
    cx, cy = (j + 0.5) / scale, (i + 0.5) / scale
    d = densify_factors(cfg.densify, len(cfg.feature_maps))[map_index]
    boxes = torch.tensor(location_priors(cx, cy, lo, hi, ratios, cfg.image_size, d, stride),
                         dtype=torch.float64)  # fmt: skip
    boxes = boxes.to(torch.float32)
    return boxes.clamp_(0.0, 1.0) if cfg.clip else boxes


def to_pixels(boxes_cxcywh: torch.Tensor, image_size: float) -> torch.Tensor:
    """(n, 4) relative cx, cy, w, h -> (n, 4) x1, y1, x2, y2 in pixels of an image_size² image."""
    return cxcywh_to_xyxy(boxes_cxcywh) * image_size


def describe_location(cfg: PriorsConfig, map_index: int, i: int, j: int, boxes: torch.Tensor) -> str:
    """One line for the explorer's label: map, location, box count and the boxes in pixels."""
    f = cfg.feature_maps[map_index]
    px = to_pixels(boxes, cfg.image_size).round().to(torch.int64).tolist()
    return (f"map {map_index} ({f}x{f}), location ({i}, {j}): {len(px)} boxes; "
            f"xyxy px: {px}")  # fmt: skip


@dataclass
class MatchResult:
    """Priors that match one ground-truth box (the explorer's second mode).

    indices: (M,) int64 positions in the priors; ious: (M,) their IoU with the box;
    targets: (M, 4) encoded regression targets t_cx, t_cy, t_w, t_h; forced: (M,) bool, True
    for the best prior that matched only because every object must get one.
    """

    indices: torch.Tensor
    ious: torch.Tensor
    targets: torch.Tensor
    forced: torch.Tensor


def matches_for_box(
    gt_box_xyxy: torch.Tensor,
    priors_cxcywh: torch.Tensor,
    iou_threshold: float = 0.5,
    variances: tuple[float, float] = (0.1, 0.2),
) -> MatchResult:
    """Which priors :func:`ssdlib.matching.match` assigns to a single box, and their targets.

    Args:
        gt_box_xyxy: (4,) relative xyxy box.
        priors_cxcywh: (P, 4) default boxes.
    Returns:
        :class:`MatchResult`, sorted by decreasing IoU (never empty: the best prior is forced).
    """
    gt = gt_box_xyxy.reshape(1, 4).to(priors_cxcywh.dtype)
    labels, _ = match(gt, torch.ones(1, dtype=torch.int64), priors_cxcywh, iou_threshold)
    ious = box_iou(gt, cxcywh_to_xyxy(priors_cxcywh))[0]
    idx = torch.nonzero(labels > 0).flatten()
    order = torch.argsort(ious[idx], descending=True, stable=True)
    idx = idx[order]
    targets = encode(gt.expand(len(idx), 4), priors_cxcywh[idx], variances)
    return MatchResult(idx, ious[idx], targets, ious[idx] < iou_threshold)


@dataclass
class ReceptiveField:
    """Theoretical receptive field of one output map: ``size`` px seen by one cell, ``jump`` px
    between neighbouring cells (the effective stride), ``start`` centre of cell 0 in px."""

    size: int
    jump: int
    start: float


def _geometry(m: nn.Module) -> tuple[int, int, int, int] | None:
    """(kernel, stride, padding, dilation) of a conv/pool leaf, None for pointwise layers."""
    if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):

        def first(v):
            return v[0] if isinstance(v, tuple) else v

        dil = first(getattr(m, "dilation", 1))
        return first(m.kernel_size), first(m.stride), first(m.padding), dil
    return None


def receptive_fields(backbone: nn.Module, image_size: int) -> list[ReceptiveField]:
    """Receptive field of every map a backbone returns, from its layers' kernels and strides.

    Runs the backbone once on the meta device (no compute), recording each leaf module in call
    order; a returned map is identified as the output of the last leaf that produced it. The
    recurrence per layer (kernel k, stride s, dilation d, padding p) is

        size += (d (k - 1)) * jump;   start += ((d (k - 1)) / 2 - p) * jump;   jump *= s.

    Returns one :class:`ReceptiveField` per returned map.
    """
    calls: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [
        m.register_forward_hook(lambda mod, _inp, out: calls.append((mod, out)))
        for m in backbone.modules()
        if len(list(m.children())) == 0
    ]
    state = {n: torch.empty_like(t, device="meta")
             for n, t in [*backbone.named_parameters(), *backbone.named_buffers()]}  # fmt: skip
    # Batch of 2: BatchNorm in training mode refuses one value per channel on a 1x1 map.
    x = torch.empty(2, 3, image_size, image_size, device="meta")
    try:
        with torch.no_grad():
            maps = torch.func.functional_call(backbone, state, (x,))
    finally:
        for h in hooks:
            h.remove()
    # Running geometry after each call.
    size, jump, start = 1, 1, 0.5
    after: list[ReceptiveField] = []
    for mod, _ in calls:
        g = _geometry(mod)
        if g is not None:
            k, s, p, d = g
            span = d * (k - 1)
            size += span * jump
            start += (span / 2 - p) * jump
            jump *= s
        after.append(ReceptiveField(size, jump, start))
    fields = []
    for fmap in maps:
        last = max(n for n, (_, out) in enumerate(calls) if out is fmap)
        fields.append(after[last])
    return fields
