"""Detection metrics: PASCAL VOC mAP (:mod:`.voc`), COCO AP/AR (:mod:`.coco`), PR curves."""

from ssdlib.metrics import coco, curves, voc

__all__ = ["coco", "curves", "voc"]
