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

from ssdlib.prior_grid import PriorAxes

__all__ = ["PriorAxes", "match", "match_batch"]

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
    return_index: bool = False,
) -> tuple[torch.Tensor, ...]:
    """:func:`match` for a batch, without a Python loop over images.

    Args:
        gt_boxes: B tensors (G_b, 4) xyxy, relative (G_b may be 0).
        gt_labels: B tensors (G_b,) int64 in 1..C.
        priors_cxcywh: (P, 4) default boxes.
        return_index: also return which ground truth each positive prior matched.
    Returns:
        labels: (B, P) int64; boxes: (B, P, 4) xyxy; with ``return_index`` also
        gt_index: (B, P) int64, the matched box's row in ``torch.cat(gt_boxes)``, -1 for background.
    """
    device, dtype = priors_cxcywh.device, priors_cxcywh.dtype
    num_images, num_priors = len(gt_boxes), priors_cxcywh.shape[0]
    if num_images == 0:
        empty = (torch.zeros(0, num_priors, dtype=torch.int64, device=device),
                 torch.zeros(0, num_priors, 4, device=device))  # fmt: skip
        return (*empty, empty[0].clone()) if return_index else empty
    counts = [int(b.shape[0]) for b in gt_boxes]
    total = sum(counts)
    # Every ground truth in image order (row ``starts[b] + g``), then one zero row: what an
    # image without boxes "matches" (label 0, box 0, as the one-image reference gives).
    zero_row = torch.zeros(1, 4, device=device, dtype=dtype)
    table = torch.cat([b.to(device, dtype) for b in gt_boxes] + [zero_row])
    label_table = torch.cat([lb.to(device, torch.int64) for lb in gt_labels]
                            + [torch.zeros(1, dtype=torch.int64, device=device)])  # fmt: skip
    starts = [0]
    for c in counts[:-1]:
        starts.append(starts[-1] + c)

    axes = PriorAxes.from_priors(priors_cxcywh)
    best_iou, best_gt, best_prior = _best_matches(table, counts, starts, axes)

    # Force each ground truth onto its best prior. Where several share one, the highest
    # ground-truth index wins ("a later ground truth wins"), made deterministic by amax
    # (rows of one image are numbered in its order).
    # Only the N forced positions are touched (masks over all B x P priors cost more).
    counts_t = torch.tensor(counts, device=device)
    image_of_row = torch.arange(num_images, device=device).repeat_interleave(counts_t, output_size=total)
    positions, slot = torch.unique(best_prior + image_of_row * num_priors, return_inverse=True)
    winner = torch.full_like(positions, -1).scatter_reduce_(0, slot, torch.arange(total, device=device),
                                                            reduce="amax")  # fmt: skip
    best_gt.view(-1).index_copy_(0, positions, winner)
    best_iou.view(-1).index_fill_(0, positions, _FORCED)

    # Row gathers on the flat tables: much faster on CPU than ``gather`` with an expanded
    # (B, P, 4) index.
    flat_gt = best_gt.view(-1)
    matched_labels = label_table.index_select(0, flat_gt).view(num_images, num_priors)
    matched_labels.masked_fill_(best_iou < iou_threshold, 0)
    matched_boxes = table.index_select(0, flat_gt).view(num_images, num_priors, 4)
    if return_index:
        return matched_labels, matched_boxes, best_gt.masked_fill_(matched_labels == 0, -1)
    return matched_labels, matched_boxes


# Rows (boxes x images) of IoU computed at once: (rows, P) float32 for SSD300's 8732 priors is
# ~1 MiB at 32 rows, so each pass over it stays in a core's L2 cache.
_ROWS_PER_SLAB = 32


def _best_matches(
    table: torch.Tensor, counts: list[int], starts: list[int], axes: PriorAxes
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best IoU and ground truth per prior, best prior per ground truth.

    Images are taken in decreasing box count, in slabs of similar counts padded to the
    slab's largest; each slab is one (images, G, P) IoU. Padding rows are a box far outside
    the image (IoU exactly 0), so they never beat a real ground truth: on equal IoU the first
    index wins, as with ``max``.

    Args:
        table: (N + 1, 4) all ground truths, image by image, then a zero row.
        counts, starts: image b owns rows ``starts[b] .. starts[b] + counts[b] - 1``.
    Returns:
        best_iou (B, P) (-1 for an image without boxes), best_gt (B, P) rows of ``table``
        (the first among equal IoUs, like ``max``; the zero row N for an image without
        boxes), best_prior (N,) per ground truth (the first among equal IoUs).
    """
    num_images, num_priors, total = len(counts), axes.num_priors, table.shape[0] - 1
    device, dtype = table.device, table.dtype
    # Rows of images with boxes are all written below; only the others need their values.
    best_iou = torch.empty(num_images, num_priors, device=device, dtype=dtype)
    best_gt = torch.empty(num_images, num_priors, dtype=torch.int64, device=device)
    empty = [b for b in range(num_images) if not counts[b]]
    if empty:
        best_iou[empty] = -1.0
        best_gt[empty] = total
    best_prior = torch.empty(total + 2, dtype=torch.int64, device=device)
    boxes = torch.cat([table, table.new_tensor([[-3.0, -3.0, -2.0, -2.0]])])  # row N + 1: far box
    prior_bits = num_priors.bit_length()
    # Larger for earlier priors: ties in a key's IoU part go to the first prior.
    prior_rank = (num_priors - 1 - axes.order).view(1, 1, -1).to(torch.float64)
    order = sorted((b for b in range(num_images) if counts[b]), key=lambda b: -counts[b])
    i = 0
    while i < len(order):
        g = counts[order[i]]  # the slab's largest count
        slab = order[i : i + max(1, _ROWS_PER_SLAB // g)]
        i += len(slab)
        rows = [starts[b] + k if k < counts[b] else total + 1 for b in slab for k in range(g)]
        rows = torch.tensor(rows, device=device)
        iou = axes.iou_grid_order(boxes.index_select(0, rows)).view(len(slab), g, num_priors)
        slab_iou, slab_gt, slab_prior = _first_max(iou, prior_rank, prior_bits)
        ids = torch.tensor(slab, device=device)
        best_iou.index_copy_(0, ids, slab_iou)
        first_row = torch.tensor([starts[b] for b in slab], device=device)
        best_gt.index_copy_(0, ids, slab_gt.add_(first_row[:, None]))
        best_prior.index_copy_(0, rows, slab_prior.view(-1))  # padding rows land on N + 1
    # Back from grid order to prior order.
    return (best_iou.index_select(1, axes.inverse), best_gt.index_select(1, axes.inverse),
            best_prior[:total])  # fmt: skip


def _first_max(
    iou: torch.Tensor, prior_rank: torch.Tensor, prior_bits: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Maxima of (B, G, P) IoUs over G and over P, with the first index among equal values.

    ``max``/``argmax`` with indices are ~20x slower on CPU than ``amax``, and comparing back
    with the maximum makes bool tensors, ~5x slower than arithmetic. So each IoU goes into an
    integer key, its float bits (IoU >= 0: integer order is float order) above a rank that is
    larger for earlier indices, and ``amax`` of the keys gives value and index at once.

    Args:
        prior_rank: (1, 1, P) float64 ``P - 1 - prior index`` of each column; ``prior_bits``
            >= its bit length (at most 23: keys stay below 2^53).
    Returns:
        iou (B, P) best over G; gt (B, P) its first index; prior (B, G) the prior index of the
        first maximum over P.
    """
    g = iou.shape[1]
    if iou.dtype != torch.float32 or max(prior_bits, g.bit_length()) > 23:  # exact, slower
        best, gt = iou.max(dim=1)
        prior_index = prior_rank.shape[-1] - 1 - prior_rank  # grid order -> prior index
        at_max = iou == iou.amax(dim=2, keepdim=True)
        return best, gt, torch.where(at_max, prior_index, prior_rank.shape[-1]).amin(dim=2).to(torch.int64)
    # Keys in float64, exact: integers below 2^53 (30 bits of IoU + the rank bits); float64
    # arithmetic is vectorised where int64 shifts and multiplies are not.
    bits = iou.view(torch.int32).to(torch.float64)
    prior_key = torch.add(prior_rank, bits, alpha=float(1 << prior_bits)).amax(dim=2).to(torch.int64)
    prior = prior_rank.shape[-1] - 1 - prior_key.bitwise_and_((1 << prior_bits) - 1)
    if g == 1:
        return iou[:, 0], torch.zeros(iou.shape[0], iou.shape[2], dtype=torch.int64, device=iou.device), prior
    gt_bits = (g - 1).bit_length()
    gt_rank = torch.arange(g - 1, -1, -1, device=iou.device, dtype=torch.float64).view(1, g, 1)
    gt_key = torch.add(gt_rank, bits, alpha=float(1 << gt_bits)).amax(dim=1).to(torch.int64)
    gt = g - 1 - torch.bitwise_and(gt_key, (1 << gt_bits) - 1)
    best = gt_key.bitwise_right_shift_(gt_bits).to(torch.int32).view(iou.dtype)
    return best, gt, prior
