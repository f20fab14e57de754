"""Datasets, augmentation and downloads. Every dataset returns ``(image, target)``; see
:mod:`ssdlib.data.common` for the target format and the invalid-box policy."""

from ssdlib.data.coco import COCODataset
from ssdlib.data.collate import collate
from ssdlib.data.common import DatasetError, load_image
from ssdlib.data.shapes import SHAPES_CLASSES, ShapesDataset, render_shapes
from ssdlib.data.shapes_io import SHAPES_COCO_CAT_IDS, ensure_shapes, write_shapes
from ssdlib.data.transforms import build_test_transform, build_train_transform, denormalize
from ssdlib.data.validate import (
    validate_coco,
    validate_dataset,
    validate_voc_folder,
    validate_yolo_folder,
)
from ssdlib.data.voc import VOCDataset, voc0712_trainval
from ssdlib.data.yolo import YOLODataset, write_yolo

__all__ = [
    "COCODataset", "DatasetError", "SHAPES_CLASSES", "SHAPES_COCO_CAT_IDS", "ShapesDataset",
    "VOCDataset", "build_test_transform", "build_train_transform", "collate",
    "denormalize", "ensure_shapes", "load_image", "render_shapes", "validate_coco",
    "validate_dataset", "validate_voc_folder", "validate_yolo_folder", "voc0712_trainval",
    "write_shapes", "write_yolo", "YOLODataset",
]  # fmt: skip
