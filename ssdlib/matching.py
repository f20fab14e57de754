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
from torchvision.ops import box_area

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
    index wins, as with ``max``. Everything that is not a pass over a slab's IoU (the per-axis
    overlaps, decoding the maxima, the threshold) is done once for the batch: per-slab calls
    of small operations were a third of the time.

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
    best_gt = torch.empty(num_images, num_priors, dtype=torch.int32, device=device)
    empty = [b for b in range(num_images) if not counts[b]]
    if empty:
        best_gt[empty] = total
    best_prior = torch.empty(total + 1, dtype=torch.int64, device=device)
    order = sorted((b for b in range(num_images) if counts[b]), key=lambda b: -counts[b])
    if order:
        # Slabs as (images, the largest count among them); a slab's rows are its images' ground
        # truths, each image padded to that count with row N (a far box, IoU 0).
        slabs, rows, i = [], [], 0
        while i < len(order):
            g = counts[order[i]]
            slab = order[i : i + max(1, _ROWS_PER_SLAB // g)]
            slabs.append((len(slab), g))
            rows += [starts[b] + k if k < counts[b] else total for b in slab for k in range(g)]
            i += len(slab)
        rows = torch.tensor(rows, device=device)
        boxes = torch.cat([gts, gts.new_tensor([[-3.0, -3.0, -2.0, -2.0]])]).index_select(0, rows)
        over_x, over_y = axes.overlaps(boxes)
        areas = box_area(boxes)
        maxima = _FirstMaxima(axes, counts[order[0]], gts.dtype, len(order), len(rows))
        image = row = 0
        for n, g in slabs:
            part = slice(row, row + n * g)
            iou = axes.iou_of_overlaps(over_x[part], over_y[part], areas[part])
            maxima.add(iou.view(n, g, num_priors), image, row)
            image, row = image + n, row + n * g
        below, gt, prior = maxima.result(iou_threshold)  # images in ``order``
        first_row = torch.tensor([starts[b] for b in order], dtype=torch.int32, device=device)
        gt.add_(first_row[:, None]).add_(below.to(torch.int32), alpha=total + 1)
        best_gt.index_copy_(0, torch.tensor(order, device=device), gt)
        best_prior.index_copy_(0, rows, prior)  # padding rows land on N
    # Back from grid order to prior order. The int32 indices move as float32 bits: CPU
    # ``index_select`` along dim 1 is several times slower for integer dtypes.
    return best_gt.view(torch.float32).index_select(1, axes.inverse).view(torch.int32), best_prior[:total]


class _FirstMaxima:
    """The maxima of a batch's (images, G, P) IoUs (grid order, at most ``most`` ground truths
    per image) over G and over P, with the first index among equal values, slab by slab.

    ``max``/``argmax`` with indices are slower on CPU than ``amax``, and comparing back with
    the maximum makes bool tensors, ~5x slower than arithmetic. So each float32 IoU goes into
    one integer key: its float bits (IoU >= 0: integer order is float order), then the prior's
    rank, then the ground truth's rank, each rank larger for earlier indices. Along G the
    prior's rank is constant, along P the ground truth's, so ``amax`` of the same keys over
    either axis gives the maximum and its first index at once. The keys are float64 in
    [2^52, 2^53), where float64 holds every integer and its bits are 2^52's bits plus that
    integer: float64 arithmetic is vectorised where int64 shifts and multiplies are not, and
    the maxima are decoded from their bits without a conversion, once, in :meth:`result`. The
    low part of the keys, ``key`` (1, most, P), is made once per batch. Without room for the
    keys (float64 IoUs, or too many priors and boxes) or without float64 (Apple's MPS) ``key``
    is None and the exact, slower way is taken (``max`` over G, ``where`` at the maximum over P).
    """

    def __init__(self, axes: PriorAxes, most: int, dtype: torch.dtype, images: int, rows: int) -> None:
        self.num_priors = num_priors = axes.num_priors
        self.prior_bits, self.gt_bits = num_priors.bit_length(), (most - 1).bit_length()
        self.key = None
        device = axes.order.device
        if _keys_fit(self.prior_bits + self.gt_bits, dtype, device):
            prior_rank = (num_priors - 1 - axes.order).to(torch.float64)
            gt_rank = torch.arange((1 << self.gt_bits) - 1, (1 << self.gt_bits) - 1 - most, -1,
                                   dtype=torch.float64, device=device)  # fmt: skip
            low = torch.add(gt_rank[:, None], prior_rank, alpha=float(1 << self.gt_bits))
            self.key = low.add_(_KEY_BASE)[None]
            # Per image and prior the best key over G; per row the best key over P.
            self.gt_key = torch.empty(images, num_priors, dtype=torch.float64, device=device)
            self.prior_key = torch.empty(rows, dtype=torch.float64, device=device)
        else:
            self.prior_index = axes.order.view(1, 1, -1)  # grid position -> prior index
            self.best = torch.empty(images, num_priors, dtype=dtype, device=device)
            self.gt = torch.empty(images, num_priors, dtype=torch.int64, device=device)
            self.prior = torch.empty(rows, dtype=torch.int64, device=device)

    def add(self, iou: torch.Tensor, image: int, row: int) -> None:
        """One slab: (n, g, P) IoUs of images ``image .. image + n - 1``, whose rows are
        ``row .. row + n * g - 1``."""
        n, g = iou.shape[:2]
        if self.key is None:  # exact, slower
            torch.max(iou, dim=1, out=(self.best[image : image + n], self.gt[image : image + n]))
            at_max = iou == iou.amax(dim=2, keepdim=True)
            torch.amin(torch.where(at_max, self.prior_index, self.num_priors), dim=2,
                       out=self.prior[row : row + n * g].view(n, g))  # fmt: skip
            return
        low_bits = self.prior_bits + self.gt_bits
        key = torch.empty(iou.shape, dtype=torch.float64, device=iou.device).copy_(iou.view(torch.int32))
        key = torch.add(self.key[:, :g], key, alpha=float(1 << low_bits), out=key)
        torch.amax(key, dim=1, out=self.gt_key[image : image + n])
        torch.amax(key, dim=2, out=self.prior_key[row : row + n * g].view(n, g))

    def result(self, iou_threshold: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """below (images, P) bool: the best IoU over G is below ``iou_threshold``; gt (images, P)
        int32 its first index; prior (rows,) int64 the prior index of each row's first maximum
        over P."""
        if self.key is None:
            return self.best < iou_threshold, self.gt.to(torch.int32), self.prior
        # The key of a threshold IoU with the lowest ranks: below it exactly when the IoU is.
        threshold_bits = torch.tensor(iou_threshold, dtype=torch.float32).view(torch.int32).item()
        below = self.gt_key < _KEY_BASE + threshold_bits * float(1 << (self.prior_bits + self.gt_bits))
        gt_rank = self.gt_key.view(torch.int64).bitwise_and_((1 << self.gt_bits) - 1).to(torch.int32)
        gt = gt_rank.neg_().add_((1 << self.gt_bits) - 1)
        prior_rank = self.prior_key.view(torch.int64).bitwise_right_shift(self.gt_bits)
        prior = prior_rank.bitwise_and_((1 << self.prior_bits) - 1).neg_().add_(self.num_priors - 1)
        return below, gt, prior


# Keys start at 2^52: from there to 2^53 float64 holds every integer, one apart.
_KEY_BASE = float(1 << 52)


def _keys_fit(rank_bits: int, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether :class:`_FirstMaxima` can key float32 IoUs (30 bits) and ``rank_bits`` of ranks
    exactly in float64 (52 bits above 2^52) on ``device``."""
    return dtype == torch.float32 and 30 + rank_bits <= 52 and device.type != "mps"


def _gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table.index_select(0, index)`` for an (N, 4) table. A float32 row is 16 bytes, one
    complex128: gathering it as one element is ~6x faster on CPU than four (0.21 vs 1.40 ms
    for 279k rows, AVX2 kernels). The bits are copied, not computed: the values are the same."""
    as_rows = table.dtype == torch.float32 and table.is_contiguous() and table.shape[-1] == 4
    if table.device.type == "cpu" and as_rows:
        return table.view(torch.complex128).view(-1).index_select(0, index).view(torch.float32).view(-1, 4)
    return table.index_select(0, index)
