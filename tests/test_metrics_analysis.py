"""Error types and recall by size (ssdlib.metrics.analysis) on hand-placed boxes."""

from __future__ import annotations

import torch

from ssdlib.metrics.analysis import analyze, error_counts, error_types, format_analysis, recall_by_size


def _gt(boxes, labels, difficult=None):
    boxes = torch.tensor(boxes, dtype=torch.float32)
    n = len(boxes)
    return {"boxes": boxes, "labels": torch.tensor(labels),
            "difficult": torch.tensor(difficult or [False] * n)}


def _det(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "scores": torch.tensor(scores),
            "labels": torch.tensor(labels)}


GT = _gt([[0, 0, 10, 10], [50, 50, 90, 90]], [1, 2])
DET = _det(
    [[0, 0, 10, 10],      # correct (class 1, IoU 1)
     [0, 0, 10, 10],      # duplicate of a detected object -> localisation
     [50, 50, 70, 70],    # class 2, IoU 0.25 -> localisation
     [52, 52, 90, 90],    # class 1 on the class-2 object -> confusion
     [200, 200, 210, 210],  # nothing there -> background
     [0, 0, 10, 10]],     # below the score threshold: not counted
    [0.9, 0.8, 0.7, 0.6, 0.55, 0.2], [1, 1, 2, 1, 3, 2],
)


def test_error_types_by_hand():
    kinds = ["correct", "localisation", "localisation", "confusion", "background"]
    assert error_types(DET, GT, 0.5) == kinds
    assert error_counts([DET], [GT], 0.5) == dict(correct=1, localisation=2, confusion=1, background=1)
    assert error_types(DET, _gt(torch.zeros(0, 4).tolist(), []), 0.5) == ["background"] * 5


def test_recall_by_size_by_hand():
    gt = _gt([[0, 0, 10, 10], [50, 50, 90, 90], [0, 0, 20, 20]], [1, 2, 1], [False, False, True])
    rows = recall_by_size([DET], [gt], 0.5)
    # 10 px object found; the 40 px one only at IoU 0.25 (class 2) -> missed; 20 px is difficult.
    by_low = {r["low"]: r for r in rows}
    assert by_low[0]["objects"] == 1 and by_low[0]["recall"] == 1.0
    assert by_low[32]["objects"] == 1 and by_low[32]["recall"] == 0.0
    assert by_low[16]["objects"] == 0 and by_low[16]["recall"] is None
    result = analyze([DET], [gt], 0.5)
    assert result["recall_by_size"][-1]["high"] is None  # JSON has no infinity
    assert abs(sum(result["error_fractions"].values()) - 1) < 1e-9
    text = format_analysis(result)
    assert "confusion" in text and "recall 1.000" in text
