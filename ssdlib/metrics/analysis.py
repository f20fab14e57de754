"""Which mistakes a detector makes: error types of its confident detections and recall by size.

Following Hoiem et al., *Diagnosing error in object detectors* (ECCV 2012), used in the SSD
paper's figure 3, every detection with score >= ``score_min`` is, in score order per image:

- ``correct``: IoU >= 0.5 with a not yet detected object of its class;
- ``localisation``: right class but IoU in [0.1, 0.5), or a duplicate of a detected object;
- ``confusion``: IoU >= 0.1 only with objects of *other* classes;
- ``background``: IoU < 0.1 with every object.

Detections and ground truths are those of :class:`ssdlib.engine.evaluator.EvalResult`:
``{"boxes" (M, 4) xyxy pixels, "scores" (M,) sorted descending, "labels" (M,)}`` and
``{"boxes" (N, 4), "labels" (N,), "difficult" (N,)}``. Difficult objects count for the error
types (a detection on one is not a background error) but not for recall.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ssdlib.boxes import box_iou

__all__ = ["ERROR_KINDS", "SIZE_BINS", "analyze", "error_counts", "error_types", "recall_by_size"]

ERROR_KINDS = ("correct", "localisation", "confusion", "background")
#: Edges of the object-size bins: square root of the box area in image pixels.
SIZE_BINS = (0, 16, 32, 64, 128, float("inf"))


def error_types(det: Mapping[str, torch.Tensor], gt: Mapping[str, torch.Tensor],
                score_min: float) -> list[str]:  # fmt: skip
    """The kind of each detection of one image with score >= ``score_min``, in score order."""
    keep = det["scores"] >= score_min
    boxes, labels = det["boxes"][keep], det["labels"][keep]
    if len(gt["labels"]) == 0:
        return ["background"] * len(labels)
    iou = box_iou(boxes.float(), gt["boxes"].float())  # (D, G)
    same = labels[:, None] == gt["labels"][None, :]
    taken: set[int] = set()
    kinds = []
    for d in range(len(labels)):
        same_iou = torch.where(same[d], iou[d], torch.zeros_like(iou[d]))
        g = int(same_iou.argmax())
        if same_iou[g] >= 0.5 and g not in taken:
            taken.add(g)
            kinds.append("correct")
        elif same_iou.max() >= 0.1:
            kinds.append("localisation")
        elif iou[d].max() >= 0.1:
            kinds.append("confusion")
        else:
            kinds.append("background")
    return kinds


def error_counts(detections: Sequence[Mapping[str, torch.Tensor]],
                 ground_truths: Sequence[Mapping[str, torch.Tensor]],
                 score_min: float) -> dict[str, int]:  # fmt: skip
    """``{kind: count}`` over a data set, every kind of :data:`ERROR_KINDS` present."""
    counts = Counter(k for d, g in zip(detections, ground_truths) for k in error_types(d, g, score_min))
    return {kind: counts[kind] for kind in ERROR_KINDS}


def recall_by_size(detections: Sequence[Mapping[str, torch.Tensor]],
                   ground_truths: Sequence[Mapping[str, torch.Tensor]], score_min: float,
                   bins: Sequence[float] = SIZE_BINS) -> list[dict[str, Any]]:  # fmt: skip
    """Per size bin ``{"low", "high", "objects", "found", "recall"}`` (recall None when empty).

    An object is found when a detection of its class with score >= ``score_min`` has IoU >= 0.5
    with it; difficult objects are left out, as in the VOC metric.
    """
    sizes, found = [], []
    for d, g in zip(detections, ground_truths):
        ok = ~g["difficult"].bool()
        gb, gl = g["boxes"][ok].float(), g["labels"][ok]
        keep = d["scores"] >= score_min
        if keep.any() and len(gb):
            iou = box_iou(gb, d["boxes"][keep].float())
            hit = ((iou >= 0.5) & (gl[:, None] == d["labels"][keep][None, :])).any(dim=1)
        else:
            hit = torch.zeros(len(gb), dtype=torch.bool)
        found += hit.tolist()
        sizes += ((gb[:, 2] - gb[:, 0]) * (gb[:, 3] - gb[:, 1])).clamp(min=0).sqrt().tolist()
    rows = []
    for low, high in zip(bins[:-1], bins[1:]):
        inside = [f for s, f in zip(sizes, found) if low <= s < high]
        rows.append({"low": low, "high": high, "objects": len(inside), "found": sum(inside),
                     "recall": sum(inside) / len(inside) if inside else None})  # fmt: skip
    return rows


def analyze(detections, ground_truths, score_min: float, bins: Sequence[float] = SIZE_BINS) -> dict[str, Any]:
    """Both analyses as one plain-JSON dict (what ``ssdlib eval --analysis`` writes)."""
    counts = error_counts(detections, ground_truths, score_min)
    total = max(1, sum(counts.values()))
    return {
        "score_min": score_min,
        "errors": counts,
        "error_fractions": {k: v / total for k, v in counts.items()},
        "recall_by_size": [{**r, "high": None if r["high"] == float("inf") else r["high"]}
                           for r in recall_by_size(detections, ground_truths, score_min, bins)],  # fmt: skip
    }


def format_analysis(result: Mapping[str, Any]) -> str:
    """The two tables of :func:`analyze` as text."""
    lines = [f"confident detections (score >= {result['score_min']}):"]
    total = max(1, sum(result["errors"].values()))
    for kind, n in result["errors"].items():
        lines.append(f"  {kind:12s} {n:6d}  ({n / total:.1%})")
    lines.append("recall by object size (sqrt of area, px):")
    for row in result["recall_by_size"]:
        high = "" if row["high"] is None else f"{row['high']:g}"
        recall = "-" if row["recall"] is None else f"{row['recall']:.3f}"
        lines.append(f"  {row['low']:>4g} - {high:<4s}  {row['objects']:6d} objects  recall {recall}")
    return "\n".join(lines)


def plot_analysis(result: Mapping[str, Any], axes=None):
    """Bar charts of the error types and of recall by size; returns the figure."""
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    else:
        fig = axes[0].figure
    kinds = list(result["errors"])
    axes[0].bar(kinds, [result["error_fractions"][k] for k in kinds],
                color=["tab:green", "tab:orange", "tab:purple", "tab:gray"])  # fmt: skip
    axes[0].set(ylabel="fraction of confident detections", ylim=(0, 1),
                title=f"detections with score >= {result['score_min']}")  # fmt: skip
    rows = result["recall_by_size"]
    names = [f"{r['low']:g}-{r['high']:g}" if r["high"] is not None else f">{r['low']:g}" for r in rows]
    axes[1].bar(names, [r["recall"] or 0.0 for r in rows], color="tab:blue")
    for i, r in enumerate(rows):
        axes[1].text(i, (r["recall"] or 0.0) + 0.02, f"n={r['objects']}", ha="center", fontsize=8)
    axes[1].set(xlabel="object size (sqrt of area, px)", ylabel="recall", ylim=(0, 1.1),
                title="recall by object size")  # fmt: skip
    for ax in axes:
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig
