"""Matching ground-truth boxes to default boxes (Liu et al. 2016, section 2.2, "Matching strategy").

1. every prior takes the ground truth it overlaps most (its best IoU);
2. every ground truth takes its own best prior, whatever the IoU, so no object is left without a
   positive (when two ground truths share a best prior, the later one wins, as in the reference
   implementations' loop);
3. priors whose best IoU is below the threshold (0.5) become background (label 0).

:func:`match` is the one-image form the lesson steps through; :func:`match_batch` does a whole
batch in a few tensor operations and is what training uses.
"""

from __future__ import annotations

import weakref

import torch

from ssdlib.boxes import cxcywh_to_xyxy

# Larger than any IoU, so a forced match always clears the threshold.
_FORCED = 2.0


def match(
    gt_boxes_xyxy: torch.Tensor,
    gt_labels: torch.Tensor,
    priors_cxcywh: torch.Tensor,
    iou_threshold: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Assign a label and a box to every prior of one image.

    Args:
        gt_boxes_xyxy: (G, 4) ground-truth boxes, xyxy, relative.
        gt_labels: (G,) int64 labels in 1..C.
        priors_cxcywh: (P, 4) default boxes, cx, cy, w, h, relative.
    Returns:
        labels: (P,) int64, 0 for background.
        boxes: (P, 4) xyxy, the matched ground truth of each prior (zeros when G == 0).
    """
    labels, boxes = match_batch([gt_boxes_xyxy], [gt_labels], priors_cxcywh, iou_threshold)
    return labels[0], boxes[0]


def match_batch(
    gt_boxes: list[torch.Tensor],
    gt_labels: list[torch.Tensor],
    priors_cxcywh: torch.Tensor,
    iou_threshold: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`match` for a batch, without a Python loop over images.

    Args:
        gt_boxes: B tensors (G_b, 4) xyxy, relative (G_b may be 0).
        gt_labels: B tensors (G_b,) int64 in 1..C.
        priors_cxcywh: (P, 4) default boxes.
    Returns:
        labels: (B, P) int64; boxes: (B, P, 4) xyxy.
    """
    device, dtype = priors_cxcywh.device, priors_cxcywh.dtype
    num_images, num_priors = len(gt_boxes), priors_cxcywh.shape[0]
    if num_images == 0:
        return (torch.zeros(0, num_priors, dtype=torch.int64, device=device),
                torch.zeros(0, num_priors, 4, device=device))  # fmt: skip
    counts = [int(b.shape[0]) for b in gt_boxes]
    g_max = max(max(counts), 1)

    # Padded (B, G, ...) copies; padding rows are never read as a match (see below).
    boxes = torch.zeros(num_images, g_max, 4, device=device, dtype=dtype)
    labels = torch.zeros(num_images, g_max, dtype=torch.int64, device=device)
    for b, (bx, lb) in enumerate(zip(gt_boxes, gt_labels)):
        boxes[b, : bx.shape[0]] = bx
        labels[b, : lb.shape[0]] = lb

    axes = PriorAxes.from_priors(priors_cxcywh)
    best_iou, best_gt, best_prior = _best_matches(boxes, counts, axes)

    # Force each ground truth onto its best prior. Where several share one, the highest
    # ground-truth index wins ("a later ground truth wins"), made deterministic by amax.
    counts_t = torch.tensor(counts, device=device)
    valid = torch.arange(g_max, device=device)[None, :] < counts_t[:, None]  # (B, G)
    image_offset = torch.arange(num_images, device=device)[:, None]
    flat_prior = best_prior + image_offset * num_priors
    gt_index = torch.arange(g_max, device=device).expand(num_images, g_max)
    forced = torch.full((num_images * num_priors,), -1, dtype=torch.int64, device=device)
    forced.scatter_reduce_(0, flat_prior[valid], gt_index[valid], reduce="amax")
    forced = forced.view(num_images, num_priors)
    is_forced = forced >= 0
    best_gt = torch.where(is_forced, forced, best_gt)
    best_iou = best_iou.masked_fill(is_forced, _FORCED)

    # Row gathers on the flattened (B * G, ...) tables: much faster on CPU than
    # ``gather`` with an expanded (B, P, 4) index.
    flat_gt = (best_gt + image_offset * g_max).view(-1)
    matched_labels = labels.view(-1).index_select(0, flat_gt).view(num_images, num_priors)
    matched_labels[best_iou < iou_threshold] = 0
    matched_boxes = boxes.view(-1, 4).index_select(0, flat_gt).view(num_images, num_priors, 4)
    return matched_labels, matched_boxes


class PriorAxes:
    """The priors' x and y intervals, each stored once.

    SSD's priors lie on grids: the 8732 priors of SSD300 have only ~370 distinct x intervals
    (and as many y intervals), so the per-axis overlaps of a box are computed against those and
    spread to all priors by an index gather: a few cheap passes over (boxes x priors) instead of
    the (boxes x priors x 2) broadcasts of a textbook IoU, with bit-identical values.
    """

    def __init__(self, priors_xyxy: torch.Tensor) -> None:
        x1, y1, x2, y2 = priors_xyxy.unbind(1)
        self.area = (x2 - x1) * (y2 - y1)
        self.x_lo, self.x_hi, self.x_index = _unique_intervals(x1, x2)
        self.y_lo, self.y_hi, self.y_index = _unique_intervals(y1, y2)

    @classmethod
    def from_priors(cls, priors_cxcywh: torch.Tensor) -> PriorAxes:
        """The axes of a priors tensor, cached while that tensor lives unmodified: building
        them sorts the priors twice, which would dominate matching one image at a time."""
        key = id(priors_cxcywh)
        hit = _AXES_CACHE.get(key)
        # The weak reference proves it is the same object (ids are reused after death),
        # the version counter that it was not modified in place since.
        if hit is not None and hit[0]() is priors_cxcywh and hit[1] == priors_cxcywh._version:
            return hit[2]
        axes = cls(cxcywh_to_xyxy(priors_cxcywh))
        if len(_AXES_CACHE) >= _AXES_CACHE_SIZE:
            _AXES_CACHE.pop(next(iter(_AXES_CACHE)))
        _AXES_CACHE[key] = (weakref.ref(priors_cxcywh), priors_cxcywh._version, axes)
        return axes

    def iou(self, boxes_xyxy: torch.Tensor) -> torch.Tensor:
        """(N, 4) xyxy boxes -> (N, P) IoU with the priors (same values as ``box_iou``)."""
        x1, y1, x2, y2 = boxes_xyxy.unbind(1)
        inter = _overlaps(x1, x2, self.x_lo, self.x_hi).index_select(1, self.x_index)
        inter.mul_(_overlaps(y1, y2, self.y_lo, self.y_hi).index_select(1, self.y_index))
        union = torch.add(((x2 - x1) * (y2 - y1))[:, None], self.area).sub_(inter)
        return inter.div_(union)


# id(priors) -> (weak reference, version, PriorAxes); a few entries (one per model/device).
_AXES_CACHE: dict[int, tuple[weakref.ref, int, PriorAxes]] = {}
_AXES_CACHE_SIZE = 8


def _unique_intervals(lo: torch.Tensor, hi: torch.Tensor):
    """Distinct (lo, hi) pairs and, per element, the index of its pair.

    Pairs are deduplicated through their bit patterns (one int64 per float32 pair), which is
    exact and a plain 1-D sort; ``unique(dim=0)`` is ~100x slower on CPU.
    """
    if lo.dtype != torch.float32:  # the bit trick needs two 32-bit halves
        pairs, index = torch.unique(torch.stack([lo, hi], 1), dim=0, return_inverse=True)
        return pairs[:, 0].contiguous(), pairs[:, 1].contiguous(), index
    keys = torch.stack([lo, hi], 1).view(torch.int64).squeeze(1)
    unique_keys, index = torch.unique(keys, return_inverse=True)
    pairs = unique_keys[:, None].view(torch.float32)
    return pairs[:, 0].contiguous(), pairs[:, 1].contiguous(), index


def _overlaps(lo: torch.Tensor, hi: torch.Tensor, p_lo: torch.Tensor, p_hi: torch.Tensor):
    """(N,) and (U,) intervals -> (N, U) lengths of their intersections (0 when disjoint)."""
    return (torch.minimum(hi[:, None], p_hi) - torch.maximum(lo[:, None], p_lo)).clamp_(min=0)


def _best_matches(
    boxes: torch.Tensor, counts: list[int], axes: PriorAxes
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best IoU and ground truth per prior, best prior per ground truth.

    Args:
        boxes: (B, G, 4) padded ground truths; image b has ``counts[b]`` real rows.
    Returns:
        best_iou (B, P) (-1 for an image without boxes), best_gt (B, P) (the first index
        among equal IoUs, like ``max``), best_prior (B, G) (0 on padding rows).
    """
    num_images, g_max = boxes.shape[:2]
    num_priors = axes.area.shape[0]
    device = boxes.device
    if num_images == 1:
        # One image: all its boxes at once; ``max``/``argmax`` keep the first of equal values.
        iou = axes.iou(boxes[0, : counts[0]])
        best_prior = torch.zeros(1, g_max, dtype=torch.int64, device=device)
        if counts[0] == 0:
            return (torch.full((1, num_priors), -1.0, device=device, dtype=boxes.dtype),
                    torch.zeros(1, num_priors, dtype=torch.int64, device=device), best_prior)  # fmt: skip
        best_iou, best_gt = iou.max(dim=0)
        best_prior[0, : counts[0]] = iou.argmax(dim=1)
        return best_iou[None], best_gt[None], best_prior

    # Many images: loop over the box index g, not over images. With the images sorted by
    # decreasing box count, those that have a g-th box are a prefix, so each step works on
    # an (n, P) slab that stays in cache and no padding row is ever computed.
    order = sorted(range(num_images), key=lambda b: -counts[b])
    order_t = torch.tensor(order, device=device)
    sorted_boxes = boxes.index_select(0, order_t)
    best_iou = torch.full((num_images, num_priors), -1.0, device=device, dtype=boxes.dtype)
    best_gt = torch.zeros(num_images, num_priors, dtype=torch.int64, device=device)
    best_prior = torch.zeros(num_images, g_max, dtype=torch.int64, device=device)
    n = num_images
    for g in range(max(counts)):
        while counts[order[n - 1]] <= g:
            n -= 1
        iou = axes.iou(sorted_boxes[:n, g])
        # Strictly better only: on ties the earlier ground truth stays, as ``max`` does.
        better = iou > best_iou[:n]
        torch.maximum(iou, best_iou[:n], out=best_iou[:n])
        best_gt[:n].masked_fill_(better, g)
        best_prior[:n, g] = iou.argmax(dim=1)
    restore = torch.empty_like(order_t)
    restore[order_t] = torch.arange(num_images, device=device)
    return best_iou[restore], best_gt[restore], best_prior[restore]
