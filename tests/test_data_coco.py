"""COCO loader on tiny generated json files: label mapping, crowd, empty images, bad records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from ssdlib.data.coco import COCODataset
from ssdlib.data.common import DatasetError


def make_coco(tmp_path: Path, annotations=None, images=None, categories=None) -> Path:
    """Three 40x30 images; categories 3 (b), 1 (a), 90 (c) — unsorted and non-contiguous."""
    (tmp_path / "img").mkdir(exist_ok=True)
    images = images or [
        {"id": 7, "file_name": "seven.jpg", "height": 30, "width": 40},
        {"id": 2, "file_name": "two.png", "height": 30, "width": 40},
        {"id": 5, "file_name": "five.jpg", "height": 30, "width": 40},
    ]
    for rec in images:
        if "file_name" in rec:
            Image.new("RGBA" if rec["file_name"].endswith("png") else "L", (40, 30)).save(
                tmp_path / "img" / rec["file_name"]
            )
    categories = categories or [
        {"id": 3, "name": "b"}, {"id": 1, "name": "a"}, {"id": 90, "name": "c"}
    ]  # fmt: skip
    annotations = annotations if annotations is not None else [
        {"id": 1, "image_id": 7, "category_id": 90, "bbox": [1, 2, 10, 5], "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 1, "bbox": [30, 20, 20, 20], "iscrowd": 0},
        {"id": 3, "image_id": 7, "category_id": 3, "bbox": [0, 0, 40, 30], "iscrowd": 1},
        {"id": 4, "image_id": 2, "category_id": 3, "bbox": [0, 0, 40, 30], "iscrowd": 1},
    ]  # fmt: skip
    ann_file = tmp_path / "instances.json"
    data = {"images": images, "annotations": annotations, "categories": categories}
    ann_file.write_text(json.dumps(data))
    return ann_file


def test_labels_contiguous_sorted_by_category_id(tmp_path):
    ds = COCODataset(tmp_path / "img", make_coco(tmp_path))
    assert ds.cat_id_to_label == {1: 1, 3: 2, 90: 3}
    assert ds.label_to_cat_id == {1: 1, 2: 3, 3: 90}
    assert ds.class_names == ("a", "b", "c")


def test_xywh_to_xyxy_clip_and_crowd_excluded(tmp_path):
    ds = COCODataset(tmp_path / "img", make_coco(tmp_path))
    assert ds.ids == [7]  # image 2 has only a crowd box, image 5 nothing: dropped for training
    image, target = ds[0]
    assert image.shape == (3, 30, 40) and image.dtype == torch.uint8
    assert torch.equal(target["boxes"], torch.tensor([[1.0, 2, 11, 7], [30, 20, 40, 30]]))
    assert target["labels"].tolist() == [3, 1]
    assert target["difficult"].tolist() == [False, False]
    assert target["image_id"] == 7 and target["orig_size"].tolist() == [30, 40]


def test_images_without_annotations_kept_for_evaluation(tmp_path):
    ds = COCODataset(tmp_path / "img", make_coco(tmp_path), remove_images_without_annotations=False)
    assert ds.ids == [2, 5, 7]
    image, target = ds[0]  # RGBA png, crowd only
    assert image.shape == (3, 30, 40)
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)


def test_degenerate_boxes_dropped_with_warning(tmp_path):
    anns = [
        {"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, 2, 0, 5]},
        {"id": 2, "image_id": 7, "category_id": 1, "bbox": [float("nan"), 2, 3, 5]},
        {"id": 3, "image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 5]},
    ]
    ds = COCODataset(tmp_path / "img", make_coco(tmp_path, annotations=anns))
    with pytest.warns(UserWarning, match=r"instances\.json: dropped 2 invalid box"):
        _, target = ds[0]
    assert target["boxes"].tolist() == [[1.0, 2.0, 4.0, 7.0]]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"annotations": [{"id": 9, "image_id": 7, "bbox": [0, 0, 1, 1]}]},
         r"annotations\[0\] \(id=9\) missing field\(s\) \['category_id'\]"),
        ({"images": [{"id": 7, "height": 30, "width": 40}], "annotations": []},
         r"images\[0\] \(id=7\) missing field\(s\) \['file_name'\]"),
        ({"annotations": [{"id": 4, "image_id": 7, "category_id": 2, "bbox": [0, 0, 1, 1]}]},
         r"annotations\[0\] \(id=4\): unknown category_id 2"),
    ],
)  # fmt: skip
def test_bad_json_records_named(tmp_path, kwargs, match):
    with pytest.raises(DatasetError, match=match) as info:
        COCODataset(tmp_path / "img", make_coco(tmp_path, **kwargs))
    assert "instances.json" in str(info.value)


def test_malformed_json_and_missing_image(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match=r"bad\.json: malformed json"):
        COCODataset(tmp_path, bad)
    ann = make_coco(tmp_path)
    (tmp_path / "img" / "seven.jpg").unlink()
    with pytest.raises(DatasetError, match=r"sample 0 \(.*seven\.jpg\): .*not found"):
        COCODataset(tmp_path / "img", ann)[0]
