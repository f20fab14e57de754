"""Precision/recall curves and the two PASCAL VOC ways of turning them into an AP.

Both functions reproduce ``voc_ap`` of the VOC devkit / py-faster-rcnn operation for
operation (same sentinels, same summation order), so their results are bit-identical to it;
only the Python loop of the precision envelope is replaced by an equivalent
``np.maximum.accumulate`` (a max is exact, so nothing changes numerically).
"""

import numpy as np

# np.arange(0., 1.1, 0.1) is what the devkit iterates over; keep the very same floats
# (0.30000000000000004 etc.) instead of "cleaner" ones so that `rec >= t` decides identically.
_VOC07_RECALL_THRESHOLDS = np.arange(0.0, 1.1, 0.1)


def precision_recall(
    tp: np.ndarray, fp: np.ndarray, num_positives: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative precision and recall of a score-sorted list of detections.

    Args:
        tp: (D,) 1 where the d-th best detection is a true positive, else 0.
        fp: (D,) 1 where it is a false positive, else 0 (ignored detections have both 0).
        num_positives: number of ground truths that count (VOC: non-difficult ones).

    Returns:
        (precision, recall), both (D,) float64. Recall is all-NaN when
        ``num_positives == 0`` (the devkit would divide by zero there).
    """
    tp_cum = np.cumsum(np.asarray(tp, dtype=np.float64))
    fp_cum = np.cumsum(np.asarray(fp, dtype=np.float64))
    if num_positives > 0:
        recall = tp_cum / float(num_positives)
    else:
        recall = np.full_like(tp_cum, np.nan)
    # eps instead of 0 guards the leading ignored (difficult) detections: tp + fp == 0 there.
    precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
    return precision, recall


def ap_11_point(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2007 11-point interpolated AP.

    For t in {0, 0.1, ..., 1}: the maximum precision among points with recall >= t (0 if
    there is none); the AP is the mean of those 11 values.

    Args:
        recall: (D,) non-decreasing recall.
        precision: (D,) precision at the same points.
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    ap = 0.0
    # Accumulate p / 11 one threshold at a time, like the devkit: a single sum / 11 can
    # differ in the last bit.
    for t in _VOC07_RECALL_THRESHOLDS:
        above = recall >= t
        p = float(np.max(precision[above])) if above.any() else 0.0
        ap = ap + p / 11.0
    return float(ap)


def precision_envelope(precision: np.ndarray) -> np.ndarray:
    """Monotone (non-increasing) envelope: each entry becomes the max precision to its right.

    Args:
        precision: (K,) precision values.

    Returns:
        (K,) array ``env[i] = max(precision[i:])``.
    """
    precision = np.asarray(precision, dtype=np.float64)
    return np.maximum.accumulate(precision[::-1])[::-1]


def ap_area(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2010+ AP: area under the interpolated precision envelope.

    Sentinels (recall 0 -> precision 0 at the start, recall 1 -> precision 0 at the end) are
    appended before taking the envelope, then the area is summed over the points where
    recall changes.

    Args:
        recall: (D,) non-decreasing recall.
        precision: (D,) precision at the same points.
    """
    mrec = np.concatenate(([0.0], np.asarray(recall, dtype=np.float64), [1.0]))
    mpre = precision_envelope(np.concatenate(([0.0], np.asarray(precision, np.float64), [0.0])))
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = True) -> float:
    """The devkit's ``voc_ap``: 11-point AP if ``use_07_metric`` else the area AP."""
    if use_07_metric:
        return ap_11_point(recall, precision)
    return ap_area(recall, precision)
