"""Evaluation: batched inference -> detections in original-image pixels -> VOC / COCO metrics.

Ground truths come from the same samples as the images (the test transform only resizes, so
``relative box x original size`` gives the annotation back), which keeps one code path for
every dataset. Difficult objects are kept and flagged; the VOC metric ignores them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ssdlib.data import collate
from ssdlib.engine.checkpoint import atomic_write
from ssdlib.model import SSD

__all__ = ["EvalResult", "evaluate", "run_inference", "save_figure", "save_pr_curves", "summary_json"]


@dataclass
class EvalResult:
    """Per image (dataset order): ``image_ids``; ``detections`` ``{"boxes" (M, 4) xyxy pixels,
    "scores" (M,), "labels" (M,)}``; ``ground_truths`` ``{"boxes" (N, 4) pixels, "labels",
    "difficult"}``. ``voc``: :func:`ssdlib.metrics.voc.evaluate` output; ``coco``: the 12
    COCO stats."""

    image_ids: list[Any]
    detections: list[dict[str, torch.Tensor]]
    ground_truths: list[dict[str, torch.Tensor]]
    voc: dict[str, Any] | None = None
    coco: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: name -> per-image detections of the same forward passes under other post-processing
    #: settings (``run_inference(variants=...)``).
    variants: dict[str, list[dict[str, torch.Tensor]]] = field(default_factory=dict)


@torch.inference_mode()
def run_inference(
    model: SSD,
    dataset: Dataset,
    batch_size: int,
    device: torch.device | str,
    num_workers: int = 0,
    progress: bool = True,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
    **postprocess: Any,
) -> EvalResult:
    """Detections and ground truths of every sample, in original-image pixels.

    ``dataset`` must return test-transformed samples (``build_test_transform``: relative boxes,
    ``target["orig_size"] (2,)`` = (H, W)); ``postprocess`` overrides ``model.postprocess``.
    ``variants``: ``{name: overrides}`` post-processed from the same network outputs batch by
    batch (a threshold sweep costs one forward pass; memory holds detections only, never the
    ``(N, P, K)`` logits of the whole test set).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate,
                        num_workers=num_workers, pin_memory=device.type == "cuda")  # fmt: skip
    variants = dict(variants or {})
    ids, dets, gts = [], [], []
    extra: dict[str, list[dict[str, torch.Tensor]]] = {name: [] for name in variants}
    for images, targets in tqdm(loader, desc="eval", disable=not progress, dynamic_ncols=True):
        outputs = model(model.prepare_input(images))  # on the model's device, dtype and layout
        sizes = [tuple(int(v) for v in t["orig_size"]) for t in targets]
        dets += _in_pixels(model.detect(*outputs, **postprocess), sizes)
        for name, settings in variants.items():
            extra[name] += _in_pixels(model.detect(*outputs, **{**postprocess, **settings}), sizes)
        for target, (h, w) in zip(targets, sizes):
            scale = torch.tensor([w, h, w, h], dtype=torch.float32)
            gts.append({
                "boxes": target["boxes"] * scale,
                "labels": target["labels"],
                "difficult": target.get("difficult", torch.zeros(len(target["labels"]), dtype=torch.bool)),
            })  # fmt: skip
            ids.append(target["image_id"])
    model.train(was_training)
    return EvalResult(ids, dets, gts, variants=extra)


def _in_pixels(detections, sizes: Sequence[tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
    out = []
    for det, (h, w) in zip(detections, sizes):
        d = det.scaled(w, h)
        out.append({"boxes": d.boxes.cpu(), "scores": d.scores.cpu(), "labels": d.labels.cpu()})
    return out


def evaluate(
    model: SSD,
    dataset: Dataset,
    batch_size: int,
    device: torch.device | str,
    metrics: Sequence[str] = ("voc",),
    class_names: Sequence[str] | None = None,
    use_07_metric: bool = True,
    gt_json: str | Path | None = None,
    coco_image_ids: Mapping[Any, int] | None = None,
    label_to_cat_id: Mapping[int, int] | None = None,
    num_workers: int = 0,
    progress: bool = True,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
    **postprocess: Any,
) -> EvalResult:
    """Run :func:`run_inference` then the requested metrics (``"voc"`` and/or ``"coco"``).

    COCO needs ``gt_json`` (the instances json of the same images), ``label_to_cat_id``
    (model label -> json category id) and, when the targets' ``image_id`` are not the json's
    ids (VOC-format file stems), ``coco_image_ids`` mapping one to the other.
    """
    from ssdlib.metrics import coco as coco_metric
    from ssdlib.metrics import voc as voc_metric

    unknown = set(metrics) - {"voc", "coco"}
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}; expected 'voc' and/or 'coco'")
    if "coco" in metrics and (gt_json is None or label_to_cat_id is None):
        raise ValueError("the COCO metric needs gt_json and label_to_cat_id")
    result = run_inference(model, dataset, batch_size, device, num_workers, progress, variants,
                           **postprocess)  # fmt: skip
    if "voc" in metrics:
        result.voc = voc_metric.evaluate(result.ground_truths, result.detections,
                                         use_07_metric=use_07_metric, class_names=class_names)  # fmt: skip
    if "coco" in metrics:
        ids = [coco_image_ids[i] if coco_image_ids else int(i) for i in result.image_ids]
        results = coco_metric.detections_to_coco_results(ids, result.detections, label_to_cat_id)
        result.coco = coco_metric.evaluate(str(gt_json), results)
    return result


def summary_json(result: EvalResult, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Plain-JSON summary: VOC mAP and per-class AP, COCO stats, number of images."""
    from ssdlib.metrics.voc import per_class_ap

    out: dict[str, Any] = {"num_images": len(result.image_ids), **result.extra}
    if result.voc is not None:
        out["voc"] = {
            "map": result.voc["map"],
            "use_07_metric": result.voc["use_07_metric"],
            "iou_threshold": result.voc["iou_threshold"],
            "ap": per_class_ap(result.voc, class_names),
        }
    if result.coco is not None:
        out["coco"] = dict(result.coco)
    return out


def write_summary(result: EvalResult, path: str | Path, class_names=None) -> dict[str, Any]:
    summary = summary_json(result, class_names)
    atomic_write(path, (json.dumps(summary, indent=2, allow_nan=True) + "\n").encode())
    return summary


def save_pr_curves(voc_result: Mapping[str, Any], path: str | Path, class_names=None) -> Path:
    """PR curves of a VOC result as a PNG (``ssdlib.viz.pr_curves``)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ssdlib.viz.pr_curves import plot_pr_curves

    fig, ax = plt.subplots(figsize=(6, 5))
    plot_pr_curves(voc_result, class_names, ax=ax)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    """Save a matplotlib figure as PNG (one atomic write: a full disk leaves no half PNG) and
    close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, format="png")
    atomic_write(path, buffer.getvalue())
    plt.close(fig)
    return Path(path)
