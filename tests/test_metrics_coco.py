"""Tests of ssdlib.metrics.coco against pycocotools' COCOeval called directly."""

import contextlib
import copy
import importlib.util
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ssdlib.metrics import coco

CATEGORIES = [{"id": 2, "name": "cat"}, {"id": 5, "name": "dog"}, {"id": 9, "name": "bird"}]
IMAGE_IDS = [3, 7, 11, 12]  # 12 has no annotation at all


def _ann(ann_id, image_id, cat_id, bbox, iscrowd=0):
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cat_id,
        "bbox": bbox,
        "area": bbox[2] * bbox[3],  # area from the box, as in many converted datasets
        "iscrowd": iscrowd,
        "segmentation": [],
    }


# Small (< 32^2), medium and large boxes so that every size-specific stat is defined; at most
# one non-crowd gt per (image, category) so that AR1 can reach 1 with perfect detections.
ANNOTATIONS = [
    _ann(1, 3, 2, [10.0, 10.0, 20.0, 15.0]),  # small cat
    _ann(2, 3, 5, [50.0, 40.0, 60.0, 70.0]),  # medium dog
    _ann(3, 7, 9, [0.0, 0.0, 200.0, 150.0]),  # large bird
    _ann(4, 7, 2, [220.0, 30.0, 40.0, 45.0]),  # medium cat
    _ann(5, 7, 5, [150.0, 150.0, 100.0, 100.0], iscrowd=1),  # crowd of dogs
    _ann(6, 11, 5, [5.0, 5.0, 120.0, 110.0]),  # large dog
    _ann(7, 11, 9, [200.0, 200.0, 25.0, 12.0]),  # small bird
]


@pytest.fixture
def gt_path(tmp_path):
    dataset = {
        "images": [
            {"id": i, "width": 320, "height": 320, "file_name": f"{i}.jpg"} for i in IMAGE_IDS
        ],
        "annotations": ANNOTATIONS,
        "categories": CATEGORIES,
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(dataset))
    return path


def perfect_detections():
    return [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": list(a["bbox"]),
            "score": 1.0,
        }
        for a in ANNOTATIONS
        if not a["iscrowd"]
    ]


def noisy_detections(seed):
    """Jittered copies of every gt (crowd too), duplicates, wrong classes and clutter."""
    rng = np.random.default_rng(seed)
    dets = []
    for a in ANNOTATIONS:
        for _ in range(int(rng.integers(1, 4))):
            x, y, w, h = (np.array(a["bbox"]) + rng.normal(0, 4, 4)).tolist()
            cat = a["category_id"] if rng.random() < 0.8 else int(rng.choice([2, 5, 9]))
            dets.append({"image_id": a["image_id"], "category_id": cat,
                         "bbox": [x, y, abs(w), abs(h)], "score": float(rng.random())})  # fmt: skip
    for _ in range(15):
        x, y = rng.uniform(0, 250, 2).tolist()
        w, h = rng.uniform(4, 80, 2).tolist()
        image_id, cat = int(rng.choice(IMAGE_IDS)), int(rng.choice([2, 5, 9]))
        dets.append({"image_id": image_id, "category_id": cat,
                     "bbox": [x, y, w, h], "score": float(rng.random())})  # fmt: skip
    return dets


def direct_cocoeval_stats(gt_path, dets):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(dets)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


@pytest.mark.parametrize("seed", range(4))
def test_matches_direct_cocoeval(gt_path, seed):
    dets = noisy_detections(seed)
    out = coco.evaluate(gt_path, dets)
    assert list(out) == list(coco.STAT_NAMES)
    np.testing.assert_array_equal(
        np.array(list(out.values())), direct_cocoeval_stats(gt_path, dets)
    )
    # The numbers must be informative, not all saturated.
    assert 0.0 < out["AP"] < 1.0


def test_results_path_and_loaded_gt_give_the_same(gt_path, tmp_path):
    dets = noisy_detections(0)
    res_path = tmp_path / "res.json"
    res_path.write_text(json.dumps(dets))
    with contextlib.redirect_stdout(io.StringIO()):
        loaded = COCO(str(gt_path))
    assert coco.evaluate(str(gt_path), str(res_path)) == coco.evaluate(loaded, dets)


def test_input_detections_are_not_mutated(gt_path):
    dets = noisy_detections(1)
    before = copy.deepcopy(dets)
    coco.evaluate(gt_path, dets)
    assert dets == before  # loadRes alone would add id/area/iscrowd/segmentation


def test_perfect_detections_give_one(gt_path):
    out = coco.evaluate(gt_path, perfect_detections())
    # approx: COCOeval's means of ones over the masked precision array can end at 1 - 2e-16.
    assert out == pytest.approx({name: 1.0 for name in coco.STAT_NAMES}, abs=1e-12)


def test_detection_on_crowd_region_is_not_a_false_positive(gt_path):
    # A dog detection inside the crowd box of image 7 is ignored by COCOeval, so the
    # perfect set plus it still scores 1.
    extra = {"image_id": 7, "category_id": 5, "bbox": [160.0, 160.0, 40.0, 40.0], "score": 1.0}
    assert coco.evaluate(gt_path, [*perfect_detections(), extra])["AP"] == 1.0


@pytest.mark.parametrize("as_file", [False, True])
def test_empty_detections(gt_path, tmp_path, as_file):
    dets = []
    if as_file:
        dets = tmp_path / "empty.json"
        dets.write_text("[]")
    out = coco.evaluate(gt_path, dets)
    # Every category and size has gts, so COCOeval reports 0 (not -1) everywhere.
    assert out == {name: 0.0 for name in coco.STAT_NAMES}


def test_quiet_unless_verbose(gt_path, capsys):
    coco.evaluate(gt_path, perfect_detections())
    assert capsys.readouterr().out == ""
    coco.evaluate(gt_path, perfect_detections(), verbose=True)
    assert "Average Precision" in capsys.readouterr().out


def test_unknown_image_id_raises(gt_path):
    bad = [{"image_id": 99, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.5}]
    with pytest.raises(ValueError, match="99"):
        coco.evaluate(gt_path, bad)


def test_per_category_ap(gt_path):
    # Drop the bird detections: cat and dog stay perfect, bird has gts but no detection.
    dets = [d for d in perfect_detections() if d["category_id"] != 9]
    ev = coco.run_cocoeval(gt_path, dets)
    assert coco.per_category_ap(ev) == {2: 1.0, 5: 1.0, 9: 0.0}
    assert coco.per_category_ap(ev, iou_threshold=0.5) == {2: 1.0, 5: 1.0, 9: 0.0}
    with pytest.raises(ValueError):
        coco.per_category_ap(ev, iou_threshold=0.42)


def test_detections_to_coco_results():
    dets = [
        {"boxes": torch.tensor([[10.0, 20.0, 40.0, 60.0], [0.0, 0.0, 1.5, 2.5]]),
         "scores": torch.tensor([0.9, 0.25]), "labels": torch.tensor([1, 3])},
        {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)},
        {"boxes": np.array([[5.0, 6.0, 7.0, 9.0]]), "scores": np.array([0.5]),
         "labels": np.array([2])},
    ]  # fmt: skip
    label_to_cat = {1: 2, 2: 5, 3: 9}
    # xyxy [10, 20, 40, 60] -> xywh [10, 20, 30, 40]; labels map to the json's ids.
    expected = [
        {"image_id": 3, "category_id": 2, "bbox": [10.0, 20.0, 30.0, 40.0], "score": 0.9},
        {"image_id": 3, "category_id": 9, "bbox": [0.0, 0.0, 1.5, 2.5], "score": 0.25},
        {"image_id": 11, "category_id": 5, "bbox": [5.0, 6.0, 2.0, 3.0], "score": 0.5},
    ]
    out = coco.detections_to_coco_results([3, 7, 11], dets, label_to_cat)
    assert len(out) == 3
    for got, want in zip(out, expected):
        assert got.keys() == want.keys()
        assert (got["image_id"], got["category_id"]) == (want["image_id"], want["category_id"])
        np.testing.assert_allclose(got["bbox"], want["bbox"], rtol=1e-6)
        assert got["score"] == pytest.approx(want["score"], rel=1e-6)
    assert coco.detections_to_coco_results([3, 7, 11], dets, label_to_cat.__getitem__) == out
    json.dumps(out)  # plain Python numbers only
    with pytest.raises(ValueError):
        coco.detections_to_coco_results([3], dets, label_to_cat)


def test_converted_perfect_detections_round_trip(gt_path):
    # xyxy model outputs of the gt boxes, converted back, score AP 1.
    cat_to_label = {c["id"]: i + 1 for i, c in enumerate(CATEGORIES)}
    per_image = {i: {"boxes": [], "scores": [], "labels": []} for i in IMAGE_IDS}
    for a in ANNOTATIONS:
        if a["iscrowd"]:
            continue
        x, y, w, h = a["bbox"]
        per_image[a["image_id"]]["boxes"].append([x, y, x + w, y + h])
        per_image[a["image_id"]]["scores"].append(1.0)
        per_image[a["image_id"]]["labels"].append(cat_to_label[a["category_id"]])
    label_to_cat = {v: k for k, v in cat_to_label.items()}
    results = coco.detections_to_coco_results(IMAGE_IDS, list(per_image.values()), label_to_cat)
    assert coco.evaluate(gt_path, results)["AP"] == 1.0


def test_unknown_backend_raises(gt_path):
    with pytest.raises(ValueError, match="backend"):
        coco.evaluate(gt_path, [], backend="nope")


@pytest.mark.skipif(importlib.util.find_spec("faster_coco_eval") is not None, reason="installed")
def test_faster_backend_missing_is_a_clear_error(gt_path):
    with pytest.raises(ImportError, match="faster-coco-eval"):
        coco.evaluate(gt_path, [], backend="faster_coco_eval")


@pytest.mark.skipif(importlib.util.find_spec("faster_coco_eval") is None, reason="not installed")
@pytest.mark.parametrize("seed", range(4))
def test_faster_backend_gives_identical_stats(gt_path, seed):
    dets = noisy_detections(seed)
    fast = coco.evaluate(gt_path, dets, backend="faster_coco_eval")
    assert fast == coco.evaluate(gt_path, dets)
