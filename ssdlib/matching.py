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

import torch
from torchvision.ops import box_iou

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
    device = priors_cxcywh.device
    num_images, num_priors = len(gt_boxes), priors_cxcywh.shape[0]
    counts = torch.tensor([b.shape[0] for b in gt_boxes], device=device)
    g_max = max(int(counts.max()) if num_images else 0, 1)
    if num_images == 0:
        return (torch.zeros(0, num_priors, dtype=torch.int64, device=device),
                torch.zeros(0, num_priors, 4, device=device))  # fmt: skip

    # Padded (B, G, ...) views; padding rows get IoU -1 so they never win anything.
    boxes = torch.zeros(num_images, g_max, 4, device=device, dtype=priors_cxcywh.dtype)
    labels = torch.zeros(num_images, g_max, dtype=torch.int64, device=device)
    for b, (bx, lb) in enumerate(zip(gt_boxes, gt_labels)):
        boxes[b, : bx.shape[0]] = bx
        labels[b, : lb.shape[0]] = lb
    valid = torch.arange(g_max, device=device)[None, :] < counts[:, None]  # (B, G)

    priors_xyxy = cxcywh_to_xyxy(priors_cxcywh)
    iou = box_iou(boxes.reshape(-1, 4), priors_xyxy).reshape(num_images, g_max, num_priors)
    iou = iou.masked_fill(~valid[:, :, None], -1.0)

    best_iou, best_gt = iou.max(dim=1)  # (B, P): each prior's best ground truth
    best_prior = iou.argmax(dim=2)  # (B, G): each ground truth's best prior

    # Force each ground truth onto its best prior. Where several share one, the highest
    # ground-truth index wins ("a later ground truth wins"), made deterministic by amax.
    flat_prior = (best_prior + torch.arange(num_images, device=device)[:, None] * num_priors)
    gt_index = torch.arange(g_max, device=device).expand(num_images, g_max)
    forced = torch.full((num_images * num_priors,), -1, dtype=torch.int64, device=device)
    forced.scatter_reduce_(0, flat_prior[valid], gt_index[valid], reduce="amax")
    forced = forced.view(num_images, num_priors)
    is_forced = forced >= 0
    best_gt = torch.where(is_forced, forced, best_gt)
    best_iou = best_iou.masked_fill(is_forced, _FORCED)

    matched_labels = labels.gather(1, best_gt)
    matched_labels[best_iou < iou_threshold] = 0
    matched_boxes = boxes.gather(1, best_gt[:, :, None].expand(-1, -1, 4))
    return matched_labels, matched_boxes
