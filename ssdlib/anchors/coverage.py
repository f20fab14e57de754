"""How well a set of priors covers a dataset's objects ("anchors analyze").

Objects are taken as the model sees them after the test resize: each image is squashed to
``S x S`` (``input.image_size``), so an object of ``w x h`` pixels in a ``W x H`` image becomes
``w S / W x h S / H`` input pixels; boxes here are relative (``/ S``), like the priors.

Per object:

- ``best_iou``: the highest IoU with any prior;
- covered: ``best_iou >= iou_threshold`` (``train.iou_threshold``); ``coverage`` is the
  fraction of covered objects;
- ``positives``: the priors :func:`ssdlib.matching.match_batch` assigns to it in its image
  (the training rule: threshold plus the forced best-prior match, a later object winning a
  shared best prior);
- forced only: not covered, yet given a positive by the forced rule (one prior, low IoU);
  ``no_positive``: lost every prior to other objects.

All of these are also reported per size bin (``sqrt(w h)`` in input pixels) and aspect bin
(``w / h``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from ssdlib.matching import PriorAxes, match_batch

__all__ = [
    "ASPECT_BINS", "SIZE_BINS", "CoverageResult", "analyze_boxes", "best_iou_per_object",
    "dataset_objects", "format_report", "positives_per_object", "summarize",
]  # fmt: skip

SIZE_BINS: tuple[float, ...] = (0, 8, 16, 32, 64, 128, 256, math.inf)  # sqrt(area), input px
ASPECT_BINS: tuple[float, ...] = (0, 1 / 3, 1 / 2, 1 / 1.25, 1.25, 2, 3, math.inf)  # w / h


def _relative_boxes(target: dict) -> torch.Tensor:
    """Non-difficult boxes of a pixel target -> ``(G, 4)`` xyxy relative to the image."""
    boxes = target["boxes"].to(torch.float32).reshape(-1, 4)
    if "difficult" in target:
        boxes = boxes[~target["difficult"].to(torch.bool)]
    h, w = (int(v) for v in target["orig_size"])
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    return (boxes / scale).clamp_(0.0, 1.0)  # as ResizeNormalize does


def dataset_objects(dataset: Dataset, max_images: int | None = None) -> list[torch.Tensor]:
    """The non-difficult boxes of each image: a list of ``(G_i, 4)`` xyxy relative tensors.

    Uses ``dataset.get_target(i)`` (annotation only, no decoding) where the dataset has one,
    else ``dataset[i]`` (Shapes renders). ``dataset`` returns pixel targets (no transform)."""
    n = len(dataset) if max_images is None else min(len(dataset), max_images)
    get_target = getattr(dataset, "get_target", None)
    out = []
    for i in range(n):
        target = get_target(i) if get_target is not None else dataset[i][1]
        out.append(_relative_boxes(target))
    return out


@dataclass
class CoverageResult:
    """Per-object numbers, objects in image order. ``wh``: (N, 2) input pixels."""

    wh: torch.Tensor
    best_iou: torch.Tensor  # (N,)
    positives: torch.Tensor  # (N,) int64
    iou_threshold: float
    num_images: int
    num_priors: int

    @property
    def covered(self) -> torch.Tensor:
        return self.best_iou >= self.iou_threshold

    @property
    def forced_only(self) -> torch.Tensor:
        return ~self.covered & (self.positives > 0)


def best_iou_per_object(boxes: torch.Tensor, priors_cxcywh: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """``(N, 4)`` xyxy relative -> ``(N,)`` highest IoU with any prior (chunked: N x P floats)."""
    axes = PriorAxes.from_priors(priors_cxcywh)
    parts = [axes.iou(boxes[i : i + chunk]).amax(dim=1) for i in range(0, len(boxes), chunk)]
    return torch.cat(parts) if parts else torch.zeros(0)


def positives_per_object(
    images: list[torch.Tensor], priors_cxcywh: torch.Tensor, iou_threshold: float, batch: int = 32
) -> torch.Tensor:
    """Priors assigned to each object by the training matcher, objects in image order.

    Each object gets its index (1-based within its image) as label, so the matched labels
    say which object a prior went to."""
    counts = []
    for s in range(0, len(images), batch):
        chunk = images[s : s + batch]
        labels = [torch.arange(1, len(b) + 1, dtype=torch.int64) for b in chunk]
        matched, _ = match_batch(chunk, labels, priors_cxcywh, iou_threshold)
        for row, boxes in zip(matched, chunk):
            counts.append(torch.bincount(row, minlength=len(boxes) + 1)[1:])
    return torch.cat(counts) if counts else torch.zeros(0, dtype=torch.int64)


def analyze_boxes(
    images: list[torch.Tensor], priors_cxcywh: torch.Tensor, iou_threshold: float, image_size: int
) -> CoverageResult:
    """Coverage of ``images`` (a list of ``(G_i, 4)`` xyxy relative boxes) by the priors
    ``(P, 4)`` cx, cy, w, h relative; see the module docstring."""
    priors = priors_cxcywh.to(torch.float32)
    kept = [b.to(torch.float32).reshape(-1, 4) for b in images]
    flat = torch.cat(kept) if kept else torch.zeros(0, 4)
    wh = (flat[:, 2:] - flat[:, :2]) * image_size
    return CoverageResult(
        wh=wh,
        best_iou=best_iou_per_object(flat, priors),
        positives=positives_per_object(kept, priors, iou_threshold),
        iou_threshold=iou_threshold,
        num_images=len(images),
        num_priors=int(priors.shape[0]),
    )


def _stats(r: CoverageResult, mask: torch.Tensor) -> dict:
    n = int(mask.sum())
    if n == 0:
        return {"count": 0, "coverage": None, "mean_best_iou": None, "mean_positives": None,
                "forced_only": 0, "no_positive": 0}  # fmt: skip
    return {
        "count": n,
        "coverage": float(r.covered[mask].double().mean()),
        "mean_best_iou": float(r.best_iou[mask].double().mean()),
        "mean_positives": float(r.positives[mask].double().mean()),
        "forced_only": int(r.forced_only[mask].sum()),
        "no_positive": int((r.positives[mask] == 0).sum()),
    }


def _bins(values: torch.Tensor, edges: Iterable[float], r: CoverageResult, fmt) -> list[dict]:
    edges = list(edges)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (values >= lo) & (values < hi)
        out.append({"range": [lo, hi if math.isfinite(hi) else None], "label": fmt(lo, hi),
                    **_stats(r, mask)})  # fmt: skip
    return out


def summarize(r: CoverageResult, per_object: bool = True) -> dict:
    """The JSON report: top-level totals, ``by_size``, ``by_aspect`` and (``per_object``)
    ``objects`` rows ``[w, h, best_iou, positives]`` in image order."""
    every = torch.ones(len(r.best_iou), dtype=torch.bool)
    total = _stats(r, every)
    size = (r.wh[:, 0] * r.wh[:, 1]).clamp(min=0).sqrt()
    aspect = r.wh[:, 0] / r.wh[:, 1].clamp(min=1e-9)

    def size_label(lo, hi):
        return f"{lo:g}-{hi:g} px" if math.isfinite(hi) else f">={lo:g} px"

    def aspect_label(lo, hi):
        return f"{lo:.2f}-{hi:.2f}" if math.isfinite(hi) else f">={lo:.2f}"

    report = {
        "num_objects": total["count"],
        "num_images": r.num_images,
        "num_priors": r.num_priors,
        "iou_threshold": r.iou_threshold,
        "coverage": total["coverage"],
        "mean_best_iou": total["mean_best_iou"],
        "mean_positives": total["mean_positives"],
        "forced_only": total["forced_only"],
        "no_positive": total["no_positive"],
        "by_size": _bins(size, SIZE_BINS, r, size_label),
        "by_aspect": _bins(aspect, ASPECT_BINS, r, aspect_label),
    }
    if per_object:
        rows = torch.cat([r.wh, r.best_iou[:, None], r.positives[:, None].to(r.wh.dtype)], dim=1)
        report["objects"] = [[round(w, 3), round(h, 3), round(iou, 5), int(p)]
                             for w, h, iou, p in rows.tolist()]  # fmt: skip
    return report


def format_report(report: dict) -> str:
    """A table for the terminal."""
    def pct(v):
        return "   -" if v is None else f"{100 * v:5.1f}%"

    lines = [
        f"{report['num_objects']} objects in {report['num_images']} images, "
        f"{report['num_priors']} priors, IoU threshold {report['iou_threshold']}",
        f"coverage (best IoU >= threshold): {pct(report['coverage'])}   mean best IoU: "
        f"{(report['mean_best_iou'] or 0):.3f}   positives/object: "
        f"{(report['mean_positives'] or 0):.2f}",
        f"matched only by the forced rule: {report['forced_only']}   "
        f"with no positive: {report['no_positive']}",
    ]
    for key, title in (("by_size", "size (sqrt area, input px)"), ("by_aspect", "aspect w/h")):
        lines.append(f"{title:<28} {'objects':>8} {'coverage':>9} {'best IoU':>9} "
                     f"{'pos/obj':>8} {'forced':>7}")  # fmt: skip
        for b in report[key]:
            if b["count"]:
                lines.append(f"  {b['label']:<26} {b['count']:>8} {pct(b['coverage']):>9} "
                             f"{b['mean_best_iou']:>9.3f} {b['mean_positives']:>8.2f} "
                             f"{b['forced_only']:>7}")  # fmt: skip
    return "\n".join(lines)
