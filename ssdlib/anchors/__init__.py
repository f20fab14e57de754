"""Priors ("anchors") for your data: how well they cover its objects, and a search for better
ones (``python -m ssdlib anchors analyze|fit``)."""

from ssdlib.anchors.coverage import CoverageResult, analyze_boxes, dataset_objects, summarize
from ssdlib.anchors.fit import FitResult, fast_best_iou, fit_priors

__all__ = [
    "CoverageResult", "FitResult", "analyze_boxes", "dataset_objects", "fast_best_iou",
    "fit_priors", "summarize",
]  # fmt: skip
