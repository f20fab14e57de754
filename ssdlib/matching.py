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
    starts = [0]
    for c in counts[:-1]:
        starts.append(starts[-1] + c)
    # Row ``starts[b] + g`` of every table is ground truth g of image b (N rows), then a zero
    # row: what an image without boxes "matches" (label 0, box 0, as the one-image reference
    # gives), then the N boxes again with label 0: the rows of priors that matched them below
    # the threshold. The threshold is then part of the index, and no (B, P) mask is needed.
    gts = torch.cat([b.to(device, dtype) for b in gt_boxes])
    table = torch.cat([gts, gts.new_zeros(1, 4), gts])
    no_labels = torch.zeros(total + 1, dtype=torch.int64, device=device)
    label_table = torch.cat([lb.to(device, torch.int64) for lb in gt_labels] + [no_labels])

    axes = PriorAxes.from_priors(priors_cxcywh)
    best_gt, best_prior = _best_matches(gts, counts, starts, axes, iou_threshold)

    # Force each ground truth onto its best prior. Where several share one, the highest
    # ground-truth index wins ("a later ground truth wins"), made deterministic by amax
    # (rows of one image are numbered in its order).
    # Only the N forced positions are touched (masks over all B x P priors cost more).
    counts_t = torch.tensor(counts, device=device)
    image_of_row = torch.arange(num_images, device=device).repeat_interleave(counts_t, output_size=total)
    positions, slot = torch.unique(best_prior + image_of_row * num_priors, return_inverse=True)
    winner = torch.full_like(positions, -1).scatter_reduce_(0, slot, torch.arange(total, device=device),
                                                            reduce="amax")  # fmt: skip
    best_gt.view(-1).index_copy_(0, positions, winner.to(best_gt.dtype))

    # Row gathers on the flat tables: much faster on CPU than ``gather`` with an expanded
    # (B, P, 4) index.
    flat_gt = best_gt.view(-1)
    matched_labels = label_table.index_select(0, flat_gt).view(num_images, num_priors)
    matched_boxes = _gather_rows(table, flat_gt).view(num_images, num_priors, 4)
    if return_index:
        return matched_labels, matched_boxes, best_gt.to(torch.int64).masked_fill_(matched_labels == 0, -1)
    return matched_labels, matched_boxes


# Rows (boxes x images) of IoU computed at once: (rows, P) float32 for SSD300's 8732 priors is
# ~1 MiB at 32 rows, so each pass over it stays in a core's L2 cache.
_ROWS_PER_SLAB = 32


def _best_matches(
    gts: torch.Tensor, counts: list[int], starts: list[int], axes: PriorAxes, iou_threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best ground truth per prior, best prior per ground truth.

    Images are taken in decreasing box count, in slabs of similar counts padded to the
    slab's largest; each slab is one (images, G, P) IoU. Padding rows are a box far outside
    the image (IoU exactly 0), so they never beat a real ground truth: on equal IoU the first
    index wins, as with ``max``.

    Args:
        gts: (N, 4) all ground truths, image by image: image b owns rows
            ``starts[b] .. starts[b] + counts[b] - 1``.
    Returns:
        best_gt (B, P) int32: each prior's ground truth (the first among equal IoUs, like
        ``max``), its row when the IoU reaches ``iou_threshold``, else N + 1 + its row;
        N for an image without boxes. best_prior (N,) per ground truth (the first among
        equal IoUs).
    """
    num_images, num_priors, total = len(counts), axes.num_priors, gts.shape[0]
    device = gts.device
    # int32 halves the memory the batch writes and reads (row indices stay far below 2^31).
    # Rows of images with boxes are all written below; only the others need their values.
    best_gt = torch.empty(num_images, num_priors, dtype=torch.int32, device=device)
    empty = [b for b in range(num_images) if not counts[b]]
    if empty:
        best_gt[empty] = total
    best_prior = torch.empty(total + 1, dtype=torch.int64, device=device)
    boxes = torch.cat([gts, gts.new_tensor([[-3.0, -3.0, -2.0, -2.0]])])  # row N: far box
    order = sorted((b for b in range(num_images) if counts[b]), key=lambda b: -counts[b])
    ranks = _Ranks(axes, counts[order[0]] if order else 1, gts.dtype)
    i = 0
    while i < len(order):
        g = counts[order[i]]  # the slab's largest count
        slab = order[i : i + max(1, _ROWS_PER_SLAB // g)]
        i += len(slab)
        rows = [starts[b] + k if k < counts[b] else total for b in slab for k in range(g)]
        rows = torch.tensor(rows, device=device)
        iou = axes.iou_grid_order(boxes.index_select(0, rows)).view(len(slab), g, num_priors)
        slab_iou, slab_gt, slab_prior = _first_max(iou, ranks)
        first_row = torch.tensor([starts[b] for b in slab], device=device)
        slab_gt.add_(first_row[:, None]).add_((slab_iou < iou_threshold).to(slab_gt.dtype), alpha=total + 1)
        best_gt.index_copy_(0, torch.tensor(slab, device=device), slab_gt.to(torch.int32))
        best_prior.index_copy_(0, rows, slab_prior.view(-1))  # padding rows land on N
    # Back from grid order to prior order. The int32 indices move as float32 bits: CPU
    # ``index_select`` along dim 1 is several times slower for integer dtypes.
    return best_gt.view(torch.float32).index_select(1, axes.inverse).view(torch.int32), best_prior[:total]


class _Ranks:
    """The tie-breaking ranks of one batch's IoUs (grid order, at most ``most`` ground truths
    per image).

    ``max``/``argmax`` with indices are slower on CPU than ``amax``, and comparing back with
    the maximum makes bool tensors, ~5x slower than arithmetic. So each float32 IoU goes into
    one integer key: its float bits (IoU >= 0: integer order is float order), then the prior's
    rank, then the ground truth's rank, each rank larger for earlier indices. Along G the
    prior's rank is constant, along P the ground truth's, so ``amax`` of the same keys over
    either axis gives the maximum and its first index at once. The keys are float64, exact
    below 2^53 (30 bits of IoU + both ranks), whose arithmetic is vectorised where int64
    shifts and multiplies are not; the low part, ``key`` (1, most, P), is made once per batch.
    Without room for the keys (float64 IoUs, or too many priors and boxes) or without float64
    (Apple's MPS) ``key`` is None and :func:`_first_max` takes the exact, slower way.
    """

    def __init__(self, axes: PriorAxes, most: int, dtype: torch.dtype) -> None:
        self.num_priors = num_priors = axes.num_priors
        self.prior_bits, self.gt_bits = num_priors.bit_length(), (most - 1).bit_length()
        self.key = None
        room = 30 + self.prior_bits + self.gt_bits <= 53
        if dtype == torch.float32 and room and axes.order.device.type != "mps":
            prior_rank = (num_priors - 1 - axes.order).to(torch.float64)
            gt_rank = torch.arange((1 << self.gt_bits) - 1, (1 << self.gt_bits) - 1 - most, -1,
                                   dtype=torch.float64, device=prior_rank.device)  # fmt: skip
            self.key = torch.add(gt_rank[:, None], prior_rank, alpha=float(1 << self.gt_bits))[None]
        self.prior_index = axes.order.view(1, 1, -1)  # grid position -> prior index


def _first_max(iou: torch.Tensor, ranks: _Ranks) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Maxima of (B, G, P) IoUs over G and over P, with the first index among equal values
    (keys: :class:`_Ranks`).

    Returns:
        iou (B, P) best over G; gt (B, P) its first index; prior (B, G) the prior index of the
        first maximum over P.
    """
    g, num_priors = iou.shape[1], ranks.num_priors
    if ranks.key is None:  # exact, slower
        best, gt = iou.max(dim=1)
        at_max = iou == iou.amax(dim=2, keepdim=True)
        return best, gt, torch.where(at_max, ranks.prior_index, num_priors).amin(dim=2)
    low_bits = ranks.prior_bits + ranks.gt_bits
    key = torch.empty(iou.shape, dtype=torch.float64, device=iou.device).copy_(iou.view(torch.int32))
    key = torch.add(ranks.key[:, :g], key, alpha=float(1 << low_bits), out=key)
    prior_key = key.amax(dim=2).to(torch.int64).bitwise_right_shift_(ranks.gt_bits)
    prior = num_priors - 1 - prior_key.bitwise_and_((1 << ranks.prior_bits) - 1)
    gt_key = key.amax(dim=1).to(torch.int64)
    gt = (1 << ranks.gt_bits) - 1 - torch.bitwise_and(gt_key, (1 << ranks.gt_bits) - 1)
    best = gt_key.bitwise_right_shift_(low_bits).to(torch.int32).view(iou.dtype)
    return best, gt, prior


def _gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table.index_select(0, index)`` for an (N, 4) table. A float32 row is 16 bytes, one
    complex128: gathering it as one element is ~6x faster on CPU than four (0.21 vs 1.40 ms
    for 279k rows, AVX2 kernels). The bits are copied, not computed: the values are the same."""
    as_rows = table.dtype == torch.float32 and table.is_contiguous() and table.shape[-1] == 4
    if table.device.type == "cpu" and as_rows:
        return table.view(torch.complex128).view(-1).index_select(0, index).view(torch.float32).view(-1, 4)
    return table.index_select(0, index)
