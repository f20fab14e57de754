"""Shapes: determinism, a real detection task, tight boxes, and the VOC/COCO files it writes."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ssdlib.data.coco import COCODataset
from ssdlib.data.shapes import MAX_OBJECTS, MIN_CONTRAST, SHAPES_CLASSES, ShapesDataset, render_shapes
from ssdlib.data.shapes_io import SHAPES_COCO_CAT_IDS, ensure_shapes, write_shapes
from ssdlib.data.voc import VOCDataset


def test_each_index_reproducible_alone_and_splits_disjoint():
    a = render_shapes(3, 17, 128, "train")
    b = render_shapes(3, 17, 128, "train")
    assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.image, render_shapes(3, 17, 128, "test").image)
    assert not np.array_equal(a.image, render_shapes(4, 17, 128, "train").image)
    ds = ShapesDataset("train", 20, 128, seed=3)
    assert torch.equal(ds[17][0], torch.from_numpy(a.image).permute(2, 0, 1))


def test_is_a_real_detection_task():
    """Over 300 images: all classes, 1-6 objects, 4%..60% sizes, occlusion, borders, difficult."""
    size = 256
    samples = [render_shapes(0, i, size) for i in range(300)]
    labels = np.concatenate([s.labels for s in samples])
    assert set(labels.tolist()) == set(range(1, len(SHAPES_CLASSES) + 1))
    counts = [len(s.labels) for s in samples]
    assert min(counts) >= 1 and max(counts) == MAX_OBJECTS
    boxes = np.concatenate([s.boxes for s in samples])
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / size
    assert sides.min() < 0.06 and sides.max() > 0.5
    assert np.concatenate([s.difficult for s in samples]).mean() > 0.02
    assert np.concatenate([s.truncated for s in samples]).mean() > 0.05
    occluded = [(s.visible_area < s.masks.sum(axis=(1, 2))).any() for s in samples]
    assert np.mean(occluded) > 0.2
    stds = [s.image.reshape(-1, 3).std(axis=0).mean() for s in samples[:20]]
    assert min(stds) > 3  # textured background, not flat colour


def test_boxes_tight_on_drawn_masks():
    for i in range(100):
        s = render_shapes(1, i, 160)
        assert s.boxes.dtype == np.float32 and s.boxes.shape == (len(s.labels), 4)
        for box, mask in zip(s.boxes, s.masks):
            rows, cols = np.nonzero(mask)
            assert (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) == tuple(box)
            assert 0 <= box[0] < box[2] <= 160 and 0 <= box[1] < box[3] <= 160


def test_drawn_pixels_have_the_object_colour():
    """Visible (unoccluded) mask pixels of the top object are its colour, not background."""
    s = render_shapes(2, 5, 128)
    top = s.masks[-1]
    assert top.sum() > 0
    pixels = s.image[top].astype(float)
    assert pixels.std(axis=0).mean() < 25  # one flat colour + noise, not the gradient


def test_dataset_target_format_and_keep_difficult():
    ds = ShapesDataset("test", 50, 128, seed=0, keep_difficult=False, return_masks=True)
    n_diff = 0
    for i in range(50):
        image, t = ds[i]
        assert image.shape == (3, 128, 128) and image.dtype == torch.uint8
        assert t["boxes"].dtype == torch.float32 and t["labels"].dtype == torch.int64
        assert not t["difficult"].any() and t["masks"].shape[0] == len(t["labels"])
        assert t["image_id"] == f"test_{i:06d}" and t["orig_size"].tolist() == [128, 128]
        n_diff += int(render_shapes(0, i, 128, "test").difficult.sum())
    assert n_diff > 0  # there was something to drop


def test_write_shapes_read_by_voc_and_coco_loaders(tmp_path):
    write_shapes(tmp_path, num_train=6, num_test=5, image_size=96, seed=2, progress=False)
    assert not list(tmp_path.rglob(".*tmp*"))  # no temporary files left behind
    voc = VOCDataset(tmp_path, split="test", year="shapes", class_names=SHAPES_CLASSES,
                     keep_difficult=True)  # fmt: skip
    coco = COCODataset(tmp_path / "VOCshapes/JPEGImages", tmp_path / "annotations/instances_test.json",
                       remove_images_without_annotations=False)  # fmt: skip
    mem = ShapesDataset("test", 5, 96, seed=2)
    assert len(voc) == len(coco) == 5
    assert len(VOCDataset(tmp_path, "train", "shapes", class_names=SHAPES_CLASSES)) == 6
    assert coco.label_to_cat_id == dict(enumerate(SHAPES_COCO_CAT_IDS, start=1))
    for i in range(5):
        (vi, vt), (_, ct), (mi, mt) = voc[i], coco[i], mem[i]
        assert torch.equal(ct["boxes"], mt["boxes"])  # COCO is continuous: exact
        # VOC devkit convention: x2/y2 are the last pixel (1 less than continuous)
        assert torch.equal(vt["boxes"], mt["boxes"] - torch.tensor([0.0, 0, 1, 1]))
        for t in (vt, ct):
            assert torch.equal(t["labels"], mt["labels"])
            assert torch.equal(t["difficult"], mt["difficult"])
        assert vt["image_id"] == mt["image_id"]
        assert (vi.float() - mi.float()).abs().mean() < 6  # JPEG q95
    # jpeg=True renders exactly the pixels the loaders decode from the written files.
    jpeg = ShapesDataset("test", 5, 96, seed=2, jpeg=True)
    assert all(torch.equal(jpeg[i][0], voc[i][0]) for i in range(5))
    assert torch.equal(jpeg[1][1]["boxes"], mem[1][1]["boxes"])
    assert json.loads((tmp_path / "shapes.json").read_text())["num_test"] == 5


def test_cocoeval_reads_written_json(tmp_path):
    write_shapes(tmp_path, 0, 8, 96, seed=5, progress=False)
    ann_file = tmp_path / "annotations/instances_test.json"
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                    "score": 1.0} for a in gt.dataset["annotations"]]  # fmt: skip
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_ensure_shapes_generates_once(tmp_path):
    ensure_shapes(tmp_path, 3, 2, 64, progress=False)
    jpg = tmp_path / "VOCshapes/JPEGImages/train_000000.jpg"
    stamp = jpg.stat().st_ino  # os.replace gives a new inode
    ensure_shapes(tmp_path, 3, 2, 64, progress=False)
    assert jpg.stat().st_ino == stamp  # complete: skipped
    (tmp_path / "shapes.json").unlink()  # as if interrupted
    ensure_shapes(tmp_path, 3, 2, 64, progress=False)
    assert jpg.stat().st_ino != stamp


def test_cli_writes_shapes(tmp_path):
    from ssdlib.data import cli

    parser = __import__("argparse").ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["shapes", "--out", str(tmp_path), "--train", "2", "--test", "1",
                              "--size", "64"])  # fmt: skip
    assert cli.run(args) == 0
    assert (tmp_path / "VOCshapes/ImageSets/Main/test.txt").read_text().split() == ["test_000000"]


def test_shapes_stand_out_from_what_they_cover():
    """Every shape's colour is at least MIN_CONTRAST from the mean background it was drawn on,
    which we check on a noise-free re-render: the visible pixels differ from the ring around."""
    for i in range(40):
        s = render_shapes(5, i, 128)
        for box, mask, vis in zip(s.boxes, s.masks, s.visible_area):
            if vis < 30:
                continue
            inside = s.image[mask].astype(float).mean(axis=0)
            x0, y0, x1, y1 = (int(v) for v in box)
            ring = np.zeros_like(mask)
            ring[max(y0 - 3, 0) : y1 + 3, max(x0 - 3, 0) : x1 + 3] = True
            ring &= ~mask
            if ring.sum() < 30:
                continue
            around = s.image[ring].astype(float).mean(axis=0)
            # noise, texture and neighbours blur the comparison: ask for a third of the margin
            assert np.linalg.norm(inside - around) > MIN_CONTRAST / 3


def _box_of(mask: np.ndarray) -> list[int]:
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    return [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]


def test_dihedral_views_move_boxes_with_the_pixels():
    from ssdlib.data.shapes import dihedral_view

    for index in range(12):
        sample = render_shapes(2, index, 80)
        images = set()
        for view in range(8):
            v = dihedral_view(sample, view)
            images.add(v.image.tobytes())
            assert v.image.shape == sample.image.shape and np.shares_memory(v.image, sample.image)
            for k in range(len(v.boxes)):  # boxes stay tight on the moved masks
                assert v.boxes[k].tolist() == _box_of(v.masks[k])
            # the pixels under each moved mask are the object's pixels
            assert sorted(v.image[v.masks[-1]].tolist()) == sorted(
                sample.image[sample.masks[-1]].tolist()
            )
            assert np.array_equal(v.labels, sample.labels)
        assert np.array_equal(dihedral_view(sample, 0).image, sample.image)
        assert len(images) == 8
    with pytest.raises(ValueError, match="view must be in 0..7"):
        dihedral_view(sample, 8)


def test_views_share_renderings_and_a_pass_in_order_renders_each_once(monkeypatch):
    import ssdlib.data.shapes as shapes_mod

    n_cache = 16
    monkeypatch.setattr(shapes_mod, "VIEW_CACHE", n_cache)
    calls = []
    real = shapes_mod.render_shapes
    monkeypatch.setattr(shapes_mod, "render_shapes", lambda *a: calls.append(a[1]) or real(*a))
    ds = ShapesDataset("train", 4 * 2 * n_cache, 48, seed=1, views=4)
    assert ds.sequential and not ShapesDataset("train", 8).sequential
    assert len(ds) == 128
    # A batch of consecutive indices holds distinct renderings; views are n_cache apart.
    assert [ds.locate(i) for i in (0, 1, n_cache, 3 * n_cache + 5, 4 * n_cache)] == [
        (0, 0), (1, 0), (0, 1), (5, 3), (n_cache, 0)
    ]  # fmt: skip
    seq = [ds[i] for i in range(len(ds))]
    assert sorted(calls) == list(range(2 * n_cache))  # 32 renderings for 128 samples
    for i in (0, 3, n_cache + 3, 3 * n_cache + 9, 5 * n_cache + 1):
        base, view = ds.locate(i)
        expected = shapes_mod.dihedral_view(real(1, base, 48, "train", False), view)
        assert torch.equal(seq[i][0], torch.from_numpy(expected.image.copy()).permute(2, 0, 1))
        assert torch.equal(seq[i][1]["boxes"], torch.from_numpy(expected.boxes))
        assert seq[i][1]["image_id"] == f"train_{base:06d}_v{view}"
    # Random access (a cold cache) gives the same samples.
    cold = ShapesDataset("train", len(ds), 48, seed=1, views=4)
    for i in (77, 2, 120):
        assert torch.equal(cold[i][0], seq[i][0])
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(ValueError, match="views must be in 1..8"):
        ShapesDataset("train", 8, views=9)
