"""COCO-format detection data through pycocotools.

Labels: COCO category ids are not contiguous (1..90 with gaps for COCO 2017's 80 classes), so
categories are sorted by id and numbered ``1..C``; ``cat_id_to_label`` / ``label_to_cat_id``
convert both ways (the latter for writing result files that COCOeval reads).

Policies:

- ``iscrowd=1`` annotations never become training targets (their boxes cover many objects);
  COCOeval still uses them from the json to ignore detections on crowds.
- Boxes are ``[x, y, w, h]`` in continuous pixel coordinates; they become xyxy, are clipped to
  the image, and degenerate/NaN boxes are dropped with a warning (see :mod:`.common`).
- Images without (non-crowd) annotations: ``remove_images_without_annotations=True`` (use for
  training) drops them from the index; ``False`` (use for evaluation: every image must be
  predicted) keeps them with empty ``(0, 4)`` targets.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from ssdlib.data.common import DatasetError, load_sample, make_target

__all__ = ["COCODataset", "load_coco_json", "check_coco_dict"]

_IMAGE_FIELDS = ("id", "file_name")
_ANN_FIELDS = ("id", "image_id", "category_id", "bbox")
_CAT_FIELDS = ("id", "name")


def check_coco_dict(data: dict, source: str | os.PathLike) -> list[str]:
    """All structural problems of a COCO instances dict, as ``"<source>: <record>: <problem>"``."""
    problems: list[str] = []
    if not isinstance(data, dict):
        return [f"{source}: the top level must be an object with images, annotations and "
                f"categories, got a {type(data).__name__}"]  # fmt: skip
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            problems.append(f"{source}: missing or non-list top-level field {key!r}")
    if problems:
        return problems
    sections = (
        ("images", _IMAGE_FIELDS), ("annotations", _ANN_FIELDS), ("categories", _CAT_FIELDS)
    )
    for key, fields in sections:
        for k, rec in enumerate(data[key]):
            missing = [f for f in fields if not isinstance(rec, dict) or f not in rec]
            if missing:
                rid = rec.get("id", "?") if isinstance(rec, dict) else "?"
                problems.append(f"{source}: {key}[{k}] (id={rid}) missing field(s) {missing}")
    image_ids = {r["id"] for r in data["images"] if isinstance(r, dict) and _hashable(r.get("id"))}
    cat_ids = {r["id"] for r in data["categories"] if isinstance(r, dict) and _hashable(r.get("id"))}
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or any(f not in ann for f in _ANN_FIELDS):
            continue
        where = f"{source}: annotations[{k}] (id={_short(ann['id'])})"
        if not _hashable(ann["image_id"]) or ann["image_id"] not in image_ids:
            problems.append(f"{where}: image_id {_short(ann['image_id'])} not in images")
        if not _hashable(ann["category_id"]) or ann["category_id"] not in cat_ids:
            problems.append(f"{where}: unknown category_id {_short(ann['category_id'])}")
        bbox = ann["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4:
            problems.append(f"{where}: bbox must be a list [x, y, w, h], got {_short(bbox)}")
        elif not all(_number(v) for v in bbox):  # NaN/inf are numbers: dropped with a warning
            problems.append(f"{where}: bbox values must be numbers, got {_short(bbox)}")
        if len(problems) >= _MAX_PROBLEMS:
            problems.append(f"{source}: stopped after {_MAX_PROBLEMS} problems")
            break
    return problems


_MAX_PROBLEMS = 50


def _hashable(value: object) -> bool:
    return isinstance(value, int | str | float) and not isinstance(value, bool)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _short(value: object) -> str:
    big = isinstance(value, list | dict) and len(value) >= 20  # never repr() a huge value
    text = f"<{type(value).__name__} of {len(value)}>" if big else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def load_coco_json(ann_file: str | os.PathLike) -> COCO:
    """Parse, check and index an instances json; raise :class:`DatasetError` listing problems."""
    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise DatasetError(f"{ann_file}: annotation file not found")
    try:
        data = json.loads(ann_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{ann_file}: malformed json ({e})") from e
    except RecursionError as e:
        raise DatasetError(f"{ann_file}: json nested too deeply") from e
    problems = check_coco_dict(data, ann_file)
    if problems:
        raise DatasetError("\n".join(problems))
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress chatter
        coco.createIndex()
    return coco


class COCODataset(Dataset):
    """COCO-format detection dataset returning ``(image (3, H, W) uint8, target)``.

    Args:
        root: folder the json's ``file_name`` entries are relative to (e.g. ``coco/val2017``).
        ann_file: instances json.
        remove_images_without_annotations: drop images with no usable (non-crowd) box.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        ann_file: str | os.PathLike,
        transform: Callable | None = None,
        remove_images_without_annotations: bool = True,
    ) -> None:
        self.root = Path(root)
        self.ann_file = Path(ann_file)
        self.transform = transform
        self.coco = load_coco_json(ann_file)
        cat_ids = sorted(self.coco.getCatIds())
        self.cat_id_to_label = {c: i + 1 for i, c in enumerate(cat_ids)}
        self.label_to_cat_id = {i + 1: c for i, c in enumerate(cat_ids)}
        self.class_names = tuple(self.coco.cats[c]["name"] for c in cat_ids)
        ids = sorted(self.coco.imgs)
        if remove_images_without_annotations:
            ids = [i for i in ids if self._has_usable_box(i)]
        self.ids = ids

    def _has_usable_box(self, image_id: int) -> bool:
        for ann in self.coco.imgToAnns.get(image_id, []):
            w, h = ann["bbox"][2:]
            if not ann.get("iscrowd", 0) and w > 0 and h > 0:
                return True
        return False

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        return self.root / self.coco.imgs[self.ids[index]]["file_name"]

    def get_target(self, index: int, height: int | None = None, width: int | None = None) -> dict:
        """Target of sample ``index``; size from the json unless given. boxes ``(N, 4)`` xyxy."""
        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        height = int(info["height"]) if height is None else height
        width = int(info["width"]) if width is None else width
        anns = [a for a in self.coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        labels = torch.tensor([self.cat_id_to_label[a["category_id"]] for a in anns])
        # COCO has no "difficult" flag; the Shapes json adds one (non-standard, optional).
        difficult = torch.tensor([bool(a.get("difficult", 0)) for a in anns], dtype=torch.bool)
        return make_target(boxes, labels, difficult, image_id, height, width, self.ann_file)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        return load_sample(index, self.image_path(index), self.get_target, self.transform)

    def __repr__(self) -> str:
        return f"COCODataset({self.ann_file}, n={len(self)}, classes={len(self.class_names)})"
