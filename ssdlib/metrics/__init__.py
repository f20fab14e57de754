"""Detection metrics: PASCAL VOC mAP (:mod:`.voc`), COCO AP/AR (:mod:`.coco`), PR curves
(:mod:`.curves`).

Submodules load on first attribute access, so ``python -m ssdlib.metrics.voc`` (the speed
benchmark) runs cleanly and importing the package does not pull in pycocotools.
"""

import importlib
from typing import Any

__all__ = ["coco", "curves", "voc"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
