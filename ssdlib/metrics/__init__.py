"""Detection metrics: PASCAL VOC mAP (:mod:`.voc`), COCO AP/AR (:mod:`.coco`), PR curves
(:mod:`.curves`), error analysis (:mod:`.analysis`), what they share (:mod:`.common`).

Import the submodule you need (``from ssdlib.metrics import voc``): importing the package alone
loads none of them, so the VOC metric never pulls in pycocotools.
"""
