"""What the VOC and COCO metrics (and the pictures of their results) share: detections and
ground truths as numpy arrays, and the display name of a label."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["as_numpy", "class_name"]


def as_numpy(x: Any, dtype: Any) -> np.ndarray:
    """A torch tensor, numpy array or nested list as a numpy array of ``dtype``."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def class_name(label: int, class_names: Sequence[str] | Mapping[int, str] | None) -> str:
    """Display name of ``label``: a mapping is keyed by label, a sequence by ``label - 1``
    (foreground names; label 0 is background); an unnamed label prints as its number."""
    if isinstance(class_names, Mapping):
        return str(class_names.get(label, label))
    if class_names is not None and 1 <= label <= len(class_names):
        return str(class_names[label - 1])
    return str(label)
