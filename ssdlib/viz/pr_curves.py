"""Precision/recall curves of a :func:`ssdlib.metrics.voc.evaluate` result."""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ssdlib.metrics.common import class_name
from ssdlib.metrics.curves import precision_envelope


def pr_curve_points(
    recall: np.ndarray, precision: np.ndarray, interpolated: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Points to draw for one class, starting at recall 0.

    Args:
        recall: (D,) recall in score order.
        precision: (D,) precision in score order.
        interpolated: replace precision by its monotone envelope (what the area AP integrates).

    Returns:
        (recall, precision), both (D + 1,): a leading point (0, first precision) so that the
        curve starts on the precision axis.
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if interpolated:
        precision = precision_envelope(precision)
    first = precision[:1] if precision.size else np.zeros(1)
    return np.concatenate(([0.0], recall)), np.concatenate((first, precision))


def plot_pr_curves(
    result: Mapping[str, Any],
    class_names: Sequence[str] | Mapping[int, str] | None = None,
    labels: Iterable[int] | None = None,
    ax: Any = None,
    interpolated: bool = True,
) -> Any:
    """One PR curve per class, AP in the legend.

    Args:
        result: output of :func:`ssdlib.metrics.voc.evaluate`.
        class_names: as in :func:`ssdlib.metrics.voc.format_table` (``[label - 1]`` or a dict).
        labels: classes to draw (default: every class with ground truth).
        ax: matplotlib axes to draw into (default: a new figure).
        interpolated: draw the monotone envelope instead of the raw zig-zag.

    Returns:
        The matplotlib axes.
    """
    import matplotlib.pyplot as plt  # lazily: importing the metrics must not need a display

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    if labels is None:
        labels = [c for c, n in result["num_gt"].items() if n > 0]
    for label in labels:
        rec, prec = pr_curve_points(
            result["recall"][label], result["precision"][label], interpolated
        )
        name = class_name(label, class_names)
        ax.step(rec, prec, where="post", label=f"{name} (AP {result['ap'][label]:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.01))
    metric = "VOC07 11-point" if result.get("use_07_metric", True) else "area"
    ax.set_title(f"mAP {result['map']:.3f} ({metric}, IoU > {result.get('iou_threshold', 0.5)})")
    ax.legend(loc="lower left", fontsize="small")
    ax.grid(alpha=0.3)
    return ax
