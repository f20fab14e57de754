"""Plain transcriptions of the reference implementations' semantics (lufficc/SSD, amdegroot),
loops and all, used only to check ssdlib's vectorised code against them."""

from __future__ import annotations

import math
from itertools import product

import torch
import torch.nn.functional as F


def ref_priors(image_size, feature_maps, strides, min_sizes, max_sizes, aspect_ratios, clip,
               densify=None):
    """lufficc's PriorBox loop; ``densify[k] = d`` tiles the min-size square d x d times, centres
    offset by ((a + 0.5) / d - 0.5) * stride (FaceBoxes, sec. 3.3), rows of offsets first."""
    priors = []
    for k, f in enumerate(feature_maps):
        scale = image_size / strides[k]
        d = densify[k] if densify else 1
        for i, j in product(range(f), repeat=2):
            cx = (j + 0.5) / scale
            cy = (i + 0.5) / scale
            size = min_sizes[k]
            h = w = size / image_size
            for a, b in product(range(d), repeat=2):
                dy = ((a + 0.5) / d - 0.5) * strides[k] / image_size
                dx = ((b + 0.5) / d - 0.5) * strides[k] / image_size
                priors.append([cx + dx, cy + dy, w, h])
            size = math.sqrt(min_sizes[k] * max_sizes[k])
            h = w = size / image_size
            priors.append([cx, cy, w, h])
            size = min_sizes[k]
            h = w = size / image_size
            for ratio in aspect_ratios[k]:
                ratio = math.sqrt(ratio)
                priors.append([cx, cy, w * ratio, h / ratio])
                priors.append([cx, cy, w / ratio, h * ratio])
    priors = torch.tensor(priors)
    if clip:
        priors.clamp_(max=1, min=0)
    return priors


def ref_iou(a, b):
    """(N,4) x (M,4) xyxy -> (N,M), the textbook formula."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def ref_match(gt_boxes, gt_labels, priors_cxcywh, iou_threshold):
    corner = torch.cat([priors_cxcywh[:, :2] - priors_cxcywh[:, 2:] / 2,
                        priors_cxcywh[:, :2] + priors_cxcywh[:, 2:] / 2], 1)
    ious = ref_iou(gt_boxes, corner)
    best_target_per_prior, best_target_per_prior_index = ious.max(0)
    best_prior_per_target, best_prior_per_target_index = ious.max(1)
    for target_index, prior_index in enumerate(best_prior_per_target_index.tolist()):
        best_target_per_prior_index[prior_index] = target_index
    best_target_per_prior.index_fill_(0, best_prior_per_target_index, 2)
    labels = gt_labels[best_target_per_prior_index]
    labels[best_target_per_prior < iou_threshold] = 0
    boxes = gt_boxes[best_target_per_prior_index]
    return labels, boxes


def ref_loss(confidence, predicted_locations, labels, gt_locations, neg_pos_ratio=3):
    num_classes = confidence.size(2)
    with torch.no_grad():
        loss = -F.log_softmax(confidence, dim=2)[:, :, 0]
        pos_mask = labels > 0
        num_pos = pos_mask.long().sum(dim=1, keepdim=True)
        num_neg = num_pos * neg_pos_ratio
        loss[pos_mask] = -math.inf
        _, indexes = loss.sort(dim=1, descending=True)
        _, orders = indexes.sort(dim=1)
        neg_mask = orders < num_neg
        mask = pos_mask | neg_mask
    confidence = confidence[mask, :]
    classification_loss = F.cross_entropy(
        confidence.view(-1, num_classes), labels[mask], reduction="sum"
    )
    pos_mask = labels > 0
    predicted_locations = predicted_locations[pos_mask, :].view(-1, 4)
    gt_locations = gt_locations[pos_mask, :].view(-1, 4)
    smooth_l1_loss = F.smooth_l1_loss(predicted_locations, gt_locations, reduction="sum")
    num_pos = gt_locations.size(0)
    return smooth_l1_loss / num_pos, classification_loss / num_pos
