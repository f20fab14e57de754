"""The MultiBox loss with hard negative mining (Liu et al. 2016, eq. 1 and section 2.2).

    L = (L_conf + alpha L_loc) / N,   N = number of positive (matched) priors in the batch

L_loc is Smooth-L1 between predicted and target deltas on positives. L_conf is cross-entropy on
the positives plus the hardest negatives: per image, the background priors with the highest
background loss (-log p_0), three for each positive. Without mining, ~8700 easy background priors
per image would swamp the few dozen positives.

SSD's targets depend on the priors, so the loss owns them: :class:`MultiBoxLoss` is built once
with the priors, the variances and the matching rule, and one call takes the head's outputs and
the ground truth. :func:`prepare_targets` (matching + encoding) and :func:`multibox_loss` (the
formula on matched targets) are its two halves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssdlib.boxes import encode
from ssdlib.matching import match_batch


def hard_negative_mining(
    background_loss: torch.Tensor, labels: torch.Tensor, neg_pos_ratio: int = 3
) -> torch.Tensor:
    """Priors that enter the confidence loss: all positives and the hardest negatives.

    Args:
        background_loss: (B, P) -log softmax(...)[..., 0], used only for ranking.
        labels: (B, P) int64, 0 for background.
    Returns:
        mask: (B, P) bool — positives plus, per image, the ``neg_pos_ratio * num_pos``
        negatives with the highest background loss.
    """
    positive = labels > 0
    need = (positive.sum(dim=1, keepdim=True) * neg_pos_ratio).clamp_(max=labels.shape[1])
    ranked = background_loss.masked_fill(positive, -torch.inf)
    most = int(need.max()) if need.numel() else 0
    if most == 0:
        return positive
    # The first ``need`` priors in the order of a stable descending sort (loss, then prior
    # index): those above the need-th highest loss, and of those equal to it the first in
    # prior order. A partial sort (topk) finds that loss: a full argsort of the P priors took
    # 4.3 of the 15 ms of the Shapes loss (B=32, P=3890, forward + backward, 2 threads).
    kth = ranked.topk(most, dim=1).values.gather(1, (need - 1).clamp_(min=0))
    kth.masked_fill_(need == 0, torch.inf)
    above = ranked > kth
    tie = ranked == kth
    room = need - above.sum(dim=1, keepdim=True)
    return positive | above | (tie & (tie.cumsum(dim=1) <= room))


def object_balance_weights(gt_index: torch.Tensor, power: float) -> torch.Tensor:
    """Per-prior loss weights that even out objects with many and few matched priors.

    A large object matches several times more priors than a small one (``shapes`` config, its
    500 test images, IoU 0.4: median 10 for objects over 64 px, 2-3 under 16 px), so the
    paper's loss (a sum over positives) is mostly about large objects. Here a positive of an object with
    ``n`` matched priors weighs ``n ** -power``, scaled so that the positives' weights sum to
    their number (the loss keeps its size); negatives weigh 1. ``power=1``: every object
    counts the same; 0: the paper's loss.

    Args:
        gt_index: (B, P) int64 matched ground truth per prior (rows of the batch's boxes,
            unique across images), -1 for background (:func:`~ssdlib.matching.match_batch`).
    Returns:
        weights: (B, P) float32.
    """
    positive = gt_index >= 0
    rows = gt_index[positive]
    counts = torch.bincount(rows).to(torch.float32)
    w_pos = counts[rows].pow_(-power)
    w_pos.mul_(rows.numel() / w_pos.sum().clamp(min=1e-12))
    weights = torch.ones(gt_index.shape, dtype=torch.float32, device=gt_index.device)
    weights[positive] = w_pos
    return weights


def multibox_loss(
    cls_logits: torch.Tensor,
    box_deltas: torch.Tensor,
    labels: torch.Tensor,
    target_deltas: torch.Tensor,
    neg_pos_ratio: int = 3,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loc_loss, cls_loss)`` on matched targets, each summed over the batch and divided by
    max(1, the batch's total number of positives) — zero, never NaN, for a batch without objects.

    Args:
        cls_logits: (B, P, K) class scores, K = classes + background.
        box_deltas: (B, P, 4) predicted offsets.
        labels: (B, P) int64 matched labels, 0 for background.
        target_deltas: (B, P, 4) encoded matched boxes (only positives are used).
        weights: (B, P) per-prior weights of both terms (:func:`object_balance_weights`);
            None: all 1, the paper's loss.
    """
    # Cross-entropy in float32 even under autocast: log-softmax over 8732 x K in fp16 is
    # where SSD's NaN losses come from. The ranking needs only -log p_0 = logsumexp - z_0,
    # without gradient; the log-softmax that carries one is taken on the selected rows
    # alone (positives + 3x as many negatives, a few % of the priors). Forward + backward
    # on a 2-core CPU against one full log-softmax: 3.9 -> 3.2 ms for SSD300/VOC (B=8,
    # K=21), 9.5 -> 2.8 ms for the Shapes config (B=32, K=6: a short last dimension is
    # the CPU kernel's slow case).
    logits = cls_logits.float()
    with torch.no_grad():
        background_loss = torch.logsumexp(logits, dim=-1) - logits[..., 0]
        mask = hard_negative_mining(background_loss, labels, neg_pos_ratio)
    positive = labels > 0
    # The mined and the positive priors as row indices, each found once: every boolean index
    # is a nonzero over all B x P priors (ten of them took ~2.7 ms of a Shapes step).
    sel = mask.view(-1).nonzero().squeeze(1)
    pos = positive.view(-1).nonzero().squeeze(1)
    sel_logits = logits.reshape(-1, logits.shape[-1]).index_select(0, sel)
    sel_labels = labels.reshape(-1).index_select(0, sel)
    pred = box_deltas.reshape(-1, 4).index_select(0, pos).float()
    target = target_deltas.reshape(-1, 4).index_select(0, pos).float()
    if weights is None:
        cls_loss = F.cross_entropy(sel_logits, sel_labels, reduction="sum")
        loc_loss = F.smooth_l1_loss(pred, target, reduction="sum")
    else:
        w = weights.reshape(-1)
        cls_loss = (F.cross_entropy(sel_logits, sel_labels, reduction="none") * w.index_select(0, sel)).sum()
        loc = F.smooth_l1_loss(pred, target, reduction="none").sum(dim=1)
        loc_loss = (loc * w.index_select(0, pos)).sum()
    num_pos = positive.sum().clamp(min=1)
    return loc_loss / num_pos, cls_loss / num_pos


@torch.no_grad()
def prepare_targets(
    gt_boxes: list[torch.Tensor],
    gt_labels: list[torch.Tensor],
    priors: torch.Tensor,
    variances: tuple[float, float] = (0.1, 0.2),
    iou_threshold: float = 0.5,
    return_index: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Matched labels ``(B, P)`` and encoded regression targets ``(B, P, 4)`` of a batch;
    with ``return_index`` also the matched ground truth ``(B, P)`` (see
    :func:`~ssdlib.matching.match_batch`; rows among the boxes kept below).

    Args:
        gt_boxes: B tensors (G_b, 4) xyxy relative; gt_labels: B tensors (G_b,) in 1..C;
        priors: (P, 4) cx, cy, w, h — all on one device.

    Degenerate ground truth (NaN/inf coordinates, zero or negative width/height) is dropped
    first: the datasets already remove it, but a custom dataset or transform may not, and the
    encoder's ``log(w / prior_w)`` would turn such a box into inf/NaN targets.
    """
    gt_boxes, gt_labels = _drop_degenerate(list(gt_boxes), list(gt_labels))
    labels, matched, *index = match_batch(gt_boxes, gt_labels, priors, iou_threshold, return_index)
    # Background priors' targets are never read by the loss; zero them rather than keep the
    # -inf that encoding an empty image's all-zero "matches" gives.
    target = torch.where((labels > 0)[..., None], encode(matched, priors, variances), 0.0)
    return (labels, target, *index)


def _drop_degenerate(
    gt_boxes: list[torch.Tensor], gt_labels: list[torch.Tensor]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The boxes with finite coordinates and positive width and height, and their labels.
    Checked on the whole batch at once: per image it was ~6 small operations each, 1.8 ms of
    the Shapes loss (B=32)."""
    rows = [b.reshape(-1, 4) for b in gt_boxes]
    boxes = torch.cat(rows) if rows else torch.zeros(0, 4)
    ok = torch.isfinite(boxes).all(dim=1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if bool(ok.all()):
        return gt_boxes, gt_labels
    oks = ok.split([len(b) for b in rows])
    return [b[k] for b, k in zip(gt_boxes, oks)], [lb[k] for lb, k in zip(gt_labels, oks)]


class MultiBoxLoss(nn.Module):
    """SSD's loss, from head outputs and ground truth: matches the boxes to the priors, encodes
    them (:func:`prepare_targets`) and returns :func:`multibox_loss` ``(loc_loss, cls_loss)``.

    Args:
        priors: (P, 4) default boxes, cx, cy, w, h, relative (a buffer: ``.to(device)`` moves it).
        variances: box coding variances (the model's).
        iou_threshold: a prior whose best IoU is below it is background.
        neg_pos_ratio: mined negatives per positive.
        object_balance: the power of :func:`object_balance_weights`; 0 (default): the
            paper's unweighted sums.
    """

    def __init__(
        self,
        priors: torch.Tensor,
        variances: tuple[float, float] = (0.1, 0.2),
        iou_threshold: float = 0.5,
        neg_pos_ratio: int = 3,
        object_balance: float = 0.0,
    ) -> None:
        super().__init__()
        # Not persistent: the priors come from the config, as the model's do.
        self.register_buffer("priors", priors, persistent=False)
        self.variances = tuple(variances)
        self.iou_threshold = iou_threshold
        self.neg_pos_ratio = neg_pos_ratio
        self.object_balance = object_balance

    def targets(
        self, gt_boxes: list[torch.Tensor], gt_labels: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Matched labels (B, P) and target deltas (B, P, 4): :func:`prepare_targets`."""
        return prepare_targets(gt_boxes, gt_labels, self.priors, self.variances, self.iou_threshold)

    def forward(
        self,
        cls_logits: torch.Tensor,
        box_deltas: torch.Tensor,
        gt_boxes: list[torch.Tensor],
        gt_labels: list[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            cls_logits: (B, P, K) class scores; box_deltas: (B, P, 4) predicted offsets.
            gt_boxes: B tensors (G_b, 4) xyxy relative (G_b may be 0); gt_labels: B tensors
                (G_b,) int64 in 1..C — on the priors' device.
        Returns:
            (loc_loss, cls_loss), scalars, already divided by the number of positives.
        """
        labels, target_deltas, *index = prepare_targets(
            gt_boxes, gt_labels, self.priors, self.variances, self.iou_threshold,
            return_index=self.object_balance > 0,
        )
        weights = object_balance_weights(index[0], self.object_balance) if index else None
        return multibox_loss(cls_logits, box_deltas, labels, target_deltas, self.neg_pos_ratio, weights)
