"""The VOC metric's benchmark: synthetic detections and the ``voc_eval_5k`` row (also the
input of the ``coco_eval`` row)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ssdlib.bench.timing import Row, measure_pair

if TYPE_CHECKING:  # rows imports this module
    from ssdlib.bench.rows import Settings

__all__ = ["synthetic_detections", "voc_row"]


def synthetic_detections(
    num_images: int, num_classes: int, dets_per_image: int, gts_per_image: int, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Random torch ground truths and detections (pixel corners within 0..620): per image
    ``gts_per_image`` boxes (10 % difficult) and ``dets_per_image`` detections, half jittered
    around a ground truth with its label, half of a random label; scores uniform."""
    g = torch.Generator().manual_seed(seed)
    gts, dets = [], []
    for _ in range(num_images):
        xy = torch.rand(gts_per_image, 2, generator=g) * 400
        wh = 20 + torch.rand(gts_per_image, 2, generator=g) * 200
        boxes = torch.cat([xy, xy + wh], dim=1)
        labels = torch.randint(1, num_classes + 1, (gts_per_image,), generator=g)
        difficult = torch.rand(gts_per_image, generator=g) < 0.1
        gts.append({"boxes": boxes, "labels": labels, "difficult": difficult})
        src = torch.randint(0, gts_per_image, (dets_per_image,), generator=g)
        noise = torch.randn(dets_per_image, 4, generator=g) * 15
        det_labels = torch.where(
            torch.rand(dets_per_image, generator=g) < 0.5,
            labels[src],
            torch.randint(1, num_classes + 1, (dets_per_image,), generator=g),
        )
        det_scores = torch.rand(dets_per_image, generator=g)
        dets.append({"boxes": boxes[src] + noise, "scores": det_scores, "labels": det_labels})
    return gts, dets


def voc_row(s: Settings) -> Row:
    """VOC mAP (11-point, VOC07) of synthetic detections: 5,000 images x 20 classes."""
    from ssdlib.metrics.voc import evaluate

    num_images = 500 if s.quick else 5000
    gts, dets = synthetic_detections(num_images, 20, 100, 3)
    ours_s, _ = measure_pair(lambda: evaluate(gts, dets, use_07_metric=True), None,
                             max(s.repeats // 2, 1), s.warmup)  # fmt: skip
    note = f"{num_images} images, 20 classes, 100 dets + 3 gts per image"
    return Row("voc_eval_5k", ours_s, None, note, "<= 2 s")
