"""The matching rows of ``ssdlib bench``: batched ``match_batch`` + ``encode`` of 32 images
against the two ways others do it, all on one thread:

- ``match_encode_b32``: the textbook per-image loop of the reference implementations
  (a ``(G, P)`` IoU by broadcasting, max over both axes, the forced-match loop, then encode);
- ``match_encode_b32_tv``: torchvision's SSD, per image ``box_iou`` + ``SSDMatcher`` +
  ``BoxCoder.encode_single`` (``torchvision.models.detection._utils``).
"""

from __future__ import annotations

import torch

from ssdlib.bench.timing import Row, measure_pair, torch_threads


def textbook_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, 4) x (M, 4) xyxy -> (N, M) IoU, by broadcasting (as the reference implementations)."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def textbook_match_encode(boxes, labels, priors_cxcywh, priors_xyxy, threshold=0.5):
    """One image, as ssd.pytorch / pytorch-ssd do it: labels (P,) and encoded targets (P, 4)."""
    from ssdlib.boxes import encode

    ious = textbook_iou(boxes, priors_xyxy)
    best_iou, best_gt = ious.max(0)
    _, best_prior = ious.max(1)
    for g, p in enumerate(best_prior.tolist()):
        best_gt[p] = g
    best_iou.index_fill_(0, best_prior, 2.0)
    matched_labels = labels[best_gt]
    matched_labels[best_iou < threshold] = 0
    return matched_labels, encode(boxes[best_gt], priors_cxcywh)


def match_rows(s, targets) -> list[Row]:
    """``targets(batch, seed)`` -> (boxes, labels) lists, as the train-step row makes them."""
    from torchvision.models.detection._utils import BoxCoder, SSDMatcher
    from torchvision.ops import box_iou

    from ssdlib.boxes import cxcywh_to_xyxy, encode
    from ssdlib.config import PriorsConfig
    from ssdlib.matching import match_batch
    from ssdlib.priors import generate_priors

    priors = generate_priors(PriorsConfig())
    priors_xyxy = cxcywh_to_xyxy(priors)
    boxes, labels = targets(32, 1)
    matcher, coder = SSDMatcher(0.5), BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))

    def ours():
        labels_, matched = match_batch(boxes, labels, priors)
        return labels_, encode(matched, priors)

    def textbook():
        return [textbook_match_encode(b, lab, priors, priors_xyxy) for b, lab in zip(boxes, labels)]

    def torchvision_ssd():
        out = []
        for b, lab in zip(boxes, labels):
            idx = matcher(box_iou(b, priors_xyxy))
            fg = idx >= 0
            matched_labels = torch.where(fg, lab[idx.clamp(min=0)], 0)
            out.append((matched_labels, coder.encode_single(b[idx.clamp(min=0)], priors_xyxy)))
        return out

    info = f"32 images, {sum(map(len, boxes))} boxes (1-20 each), 8732 priors, 1 thread"
    rows = []
    with torch_threads(1):
        for name, peer, what in (
            ("match_encode_b32", textbook, "textbook per-image loop ((G, P) IoU broadcasts)"),
            ("match_encode_b32_tv", torchvision_ssd, "torchvision box_iou + SSDMatcher + BoxCoder"),
        ):
            ours_s, peer_s = measure_pair(ours, peer, s.repeats * 3, s.warmup)
            note = f"{info}; peer: {what}; speed-up {peer_s / ours_s:.1f}x"
            rows.append(Row(name, ours_s, peer_s, note, ">= 3x faster" if name.endswith("tv") else ""))
    return rows
