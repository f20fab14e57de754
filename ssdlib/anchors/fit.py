"""A deterministic search over the priors section for a better coverage ("anchors fit").

Scoring a candidate must be cheap: the search tries hundreds. SSD's priors lie on grids, and
for one prior shape ``(pw, ph)`` on one grid the IoU with a box is
``ix * iy / (A + pw ph - ix iy)``, where ``ix`` (``iy``) is the overlap along x (y), a
non-increasing function of the centre distance along that axis. So the best prior of a
shape is the one at the nearest grid centre in x and in y, and the best IoU over all priors
is a max over the few shapes ("families") of the config, O(objects x families) instead of
O(objects x priors) (:func:`fast_best_iou`; a densified min-size square is one family on a
grid ``d`` times finer). Per map results are cached, so a move that changes one map
recomputes one map.

The search (coordinate ascent, fixed order, so deterministic): for each feature map in turn
try scaling its min or max size, another aspect-ratio set, another densification; keep a
move when it covers more objects (ties: higher mean best IoU) and the prior count stays
within the budget. Rounds repeat until none improves. Feature maps and strides stay: they
are the network's.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ssdlib.config import PriorsConfig
from ssdlib.priors import densify_factors, priors_per_map

__all__ = ["FitResult", "RATIO_SETS", "fast_best_iou", "fit_priors", "map_families"]

SIZE_STEPS = (0.6, 0.7, 0.8, 0.9, 1.1, 1.25, 1.4, 1.7)
RATIO_SETS: tuple[tuple[float, ...], ...] = ((), (2,), (3,), (2, 3), (1.5, 3), (2, 4), (2, 3, 4))
DENSIFY = (1, 2, 3, 4)


def map_families(cfg: PriorsConfig, k: int) -> list[tuple[float, float, float, int]]:
    """The prior shapes of map ``k``: ``(pw, ph, spacing, cells)`` relative, ``cells`` grid
    centres per axis at ``(j + 0.5) * spacing`` (widths clipped to 1 as ``clip`` does)."""
    s, f, S = cfg.strides[k], cfg.feature_maps[k], cfg.image_size
    lo, hi = cfg.min_sizes[k], cfg.max_sizes[k]
    d = densify_factors(cfg.densify, len(cfg.feature_maps))[k]
    shapes = [(lo / S, lo / S, s / d / S, f * d), (math.sqrt(lo * hi) / S,) * 2 + (s / S, f)]
    for r in cfg.aspect_ratios[k]:
        q = math.sqrt(r)
        shapes += [(lo * q / S, lo / q / S, s / S, f), (lo / q / S, lo * q / S, s / S, f)]
    if cfg.clip:
        shapes = [(min(w, 1.0), min(h, 1.0), g, n) for w, h, g, n in shapes]
    return shapes


def _axis_overlap(lo: np.ndarray, hi: np.ndarray, size: float, spacing: float, cells: int,
                  clip: bool) -> np.ndarray:  # fmt: skip
    """Largest overlap of [lo, hi] with an interval of ``size`` centred on any grid centre."""
    centre = (lo + hi) / 2
    j = np.floor(centre / spacing - 0.5)
    best = np.zeros_like(lo)
    for jj in (j, j + 1):
        c = (np.clip(jj, 0, cells - 1) + 0.5) * spacing
        if clip:
            c = np.clip(c, 0.0, 1.0)
        ov = np.minimum(hi, c + size / 2) - np.maximum(lo, c - size / 2)
        best = np.maximum(best, ov)
    return np.clip(best, 0.0, None)


def _family_best(boxes: np.ndarray, fam, clip: bool) -> np.ndarray:
    pw, ph, g, n = fam
    ix = _axis_overlap(boxes[:, 0], boxes[:, 2], pw, g, n, clip)
    iy = _axis_overlap(boxes[:, 1], boxes[:, 3], ph, g, n, clip)
    inter = ix * iy
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + pw * ph - inter)


def map_best_iou(boxes: np.ndarray, cfg: PriorsConfig, k: int) -> np.ndarray:
    """``(N, 4)`` xyxy relative -> ``(N,)`` best IoU with the priors of map ``k``."""
    best = np.zeros(len(boxes))
    for fam in map_families(cfg, k):
        best = np.maximum(best, _family_best(boxes, fam, cfg.clip))
    return best


def fast_best_iou(boxes, cfg: PriorsConfig) -> np.ndarray:
    """Best IoU of each box ``(N, 4)`` xyxy relative with the priors of ``cfg``, without
    building them (see the module docstring); equals the brute force to float precision."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.max([map_best_iou(boxes, cfg, k) for k in range(len(cfg.feature_maps))], axis=0)


@dataclass
class FitResult:
    priors: PriorsConfig
    before: tuple[float, float, int]  # coverage, mean best IoU, prior count
    after: tuple[float, float, int]
    budget: int
    evaluations: int
    moves: list[str]


def _candidates(p: PriorsConfig, k: int):
    """Deterministically ordered one-map changes: ``(description, new config)``."""
    dens = densify_factors(p.densify, len(p.feature_maps))
    for step in SIZE_STEPS:
        lo = round(p.min_sizes[k] * step, 1)
        if lo < p.max_sizes[k]:
            yield f"map {k}: min_size {p.min_sizes[k]:g} -> {lo:g}", _with(p, k, min_sizes=lo)
    for step in SIZE_STEPS:
        hi = round(p.max_sizes[k] * step, 1)
        if hi > p.min_sizes[k]:
            yield f"map {k}: max_size {p.max_sizes[k]:g} -> {hi:g}", _with(p, k, max_sizes=hi)
    for ratios in RATIO_SETS:
        if list(ratios) != list(p.aspect_ratios[k]):
            yield (f"map {k}: aspect_ratios {p.aspect_ratios[k]} -> {list(ratios)}",
                   _with(p, k, aspect_ratios=list(ratios)))  # fmt: skip
    for d in DENSIFY:
        if d != dens[k]:
            yield f"map {k}: densify {dens[k]} -> {d}", _with(p, k, densify=d)


def _with(p: PriorsConfig, k: int, **change) -> PriorsConfig:
    new = {}
    for key, value in change.items():
        current = (densify_factors(p.densify, len(p.feature_maps)) if key == "densify"
                   else getattr(p, key))  # fmt: skip
        new[key] = [value if i == k else v for i, v in enumerate(current)]
    return dataclasses.replace(p, **new)


def _better(a: tuple[int, float], b: tuple[int, float]) -> bool:
    """More objects covered; on a tie a higher mean best IoU."""
    return a[0] > b[0] or (a[0] == b[0] and a[1] > b[1] + 1e-9)


def fit_priors(
    boxes,
    cfg: PriorsConfig,
    iou_threshold: float,
    budget: int | None = None,
    max_rounds: int = 6,
) -> FitResult:
    """Search priors for ``boxes`` (``(N, 4)`` xyxy relative, the objects after the test
    resize); ``budget``: most priors allowed (default: the current count + 10 %)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    count = sum(priors_per_map(cfg))
    budget = int(count * 1.1) if budget is None else int(budget)
    per_map = [map_best_iou(boxes, cfg, k) for k in range(len(cfg.feature_maps))]
    n = max(len(boxes), 1)

    def score(maps: list[np.ndarray]) -> tuple[int, float]:
        best = np.max(maps, axis=0) if len(boxes) else np.zeros(0)
        return int((best >= iou_threshold).sum()), float(best.sum() / n)

    current, best_score = cfg, score(per_map)
    before = (best_score[0] / n, best_score[1], count)
    evaluations, moves = 1, []
    # Over budget (a budget below the current count): shrink first, each step the change
    # that removes priors at the least loss.
    while sum(priors_per_map(current)) > budget:
        size = sum(priors_per_map(current))
        pick = None
        for k in range(len(cfg.feature_maps)):
            for what, cand in _candidates(current, k):
                if sum(priors_per_map(cand)) >= size:
                    continue
                best_k = map_best_iou(boxes, cand, k)
                s = score([best_k if i == k else m for i, m in enumerate(per_map)])
                evaluations += 1
                if pick is None or _better(s, pick[0]):
                    pick = (s, what, cand, best_k, k)
        if pick is None:
            raise ValueError(f"priors budget {budget}: cannot get below {size} priors by "
                             "changing aspect ratios and densification")  # fmt: skip
        best_score, what, current, best_k, k = pick
        per_map[k] = best_k
        moves.append(what)
    for _ in range(max_rounds):
        improved = False
        for k in range(len(cfg.feature_maps)):
            # Steepest ascent on map k: the best of all its one-step changes, until none helps.
            while True:
                pick = None
                for what, cand in _candidates(current, k):
                    if sum(priors_per_map(cand)) > budget:
                        continue
                    best_k = map_best_iou(boxes, cand, k)
                    s = score([best_k if i == k else m for i, m in enumerate(per_map)])
                    evaluations += 1
                    if _better(s, best_score if pick is None else pick[0]):
                        pick = (s, what, cand, best_k)
                if pick is None:
                    break
                best_score, what, current, per_map[k] = pick
                moves.append(what)
                improved = True
        if not improved:
            break
    after = (best_score[0] / n, best_score[1], sum(priors_per_map(current)))
    return FitResult(current, before, after, budget, evaluations, moves)
