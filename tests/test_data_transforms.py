"""SSD augmentation: output format, consistent filtering, boxes covering the drawn shapes."""

from __future__ import annotations

import pickle

import pytest
import torch
from torchvision.ops import box_iou

from ssdlib.data.collate import collate
from ssdlib.data.shapes import ShapesDataset
from ssdlib.data.transforms import build_test_transform, build_train_transform, denormalize

MEAN = (123.0, 117.0, 104.0)


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: intra-op threads only add contention (5x slower on a busy 2-core box),
    and a DataLoader worker runs single-threaded anyway."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _check_format(image, target, size):
    assert image.dtype == torch.float32 and image.shape == (3, size, size)
    boxes = target["boxes"]
    assert type(boxes) is torch.Tensor and boxes.dtype == torch.float32 and boxes.shape[1] == 4
    assert ((boxes >= 0) & (boxes <= 1)).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all()
    n = boxes.shape[0]
    assert target["labels"].shape == (n,) and target["difficult"].shape == (n,)


def _covers(target, size, tol):
    """Every kept box contains its object's mask pixels (box in pixels, +-tol for resizing)."""
    boxes = target["boxes"] * size
    for box, mask in zip(boxes, target["masks"]):
        rows, cols = torch.nonzero(mask, as_tuple=True)
        if rows.numel() == 0:
            continue  # resampled away (object shrunk below one pixel)
        assert cols.min() >= box[0] - tol and cols.max() + 1 <= box[2] + tol, (box, cols)
        assert rows.min() >= box[1] - tol and rows.max() + 1 <= box[3] + tol, (box, rows)


def test_train_transform_property_boxes_inside_and_cover_shapes():
    """150 random (image, augmentation) pairs from a seeded stream."""
    torch.manual_seed(0)
    size = 64
    ds = ShapesDataset("train", 150, 80, seed=7, transform=build_train_transform(size),
                       return_masks=True)  # fmt: skip
    raw = ShapesDataset("train", 150, 80, seed=7)
    dropped = 0
    for i in range(len(ds)):
        image, target = ds[i]
        _check_format(image, target, size)
        # zoom-out up to x4 then resize: a mask pixel can shift by one output pixel at most
        _covers(target, size, tol=1.0)
        _, before = raw[i]
        dropped += len(before["labels"]) - len(target["labels"])
        assert target["image_id"] == before["image_id"]
        assert torch.equal(target["orig_size"], before["orig_size"])
        labels = target["labels"]
        assert ((labels >= 1) & (labels <= 5)).all()
    assert dropped > 0  # the IoU crop removed objects somewhere: filtering was exercised


def test_labels_and_difficult_follow_kept_boxes():
    """Label each object by its drawing index and flag odd ones difficult; after the crop
    drops objects, labels/difficult/masks must still line up with the kept boxes."""
    torch.manual_seed(1)
    tr = build_train_transform(64)
    ds = ShapesDataset("train", 100, 80, return_masks=True)
    for i in range(len(ds)):
        image, t = ds[i]
        n = len(t["labels"])
        t["labels"] = torch.arange(1, n + 1)
        t["difficult"] = torch.arange(n) % 2 == 1
        _, out = tr(image, t)
        labels = out["labels"]
        assert labels.shape == out["difficult"].shape == (out["masks"].shape[0],)
        assert (labels.diff() > 0).all()  # order kept
        assert torch.equal(out["difficult"], (labels - 1) % 2 == 1)
        boxes = out["boxes"] * 64
        for box, mask in zip(boxes, out["masks"]):
            rows, cols = torch.nonzero(mask, as_tuple=True)
            if rows.numel() and (box[2:] - box[:2]).min() >= 8:  # IoU is noise for tiny boxes
                # box and ITS mask agree (nearest-neighbour resizing can thin shape tips, so
                # compare by IoU): the mask/box pairing survived the filtering
                tight = torch.stack([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
                assert box_iou(tight[None].float(), box[None])[0, 0] > 0.5, (box, tight)


def test_test_transform_exact_resize_and_normalise():
    ds = ShapesDataset("test", 4, 128, transform=build_test_transform(64))
    raw = ShapesDataset("test", 4, 128)
    image, target = ds[0]
    _, before = raw[0]
    _check_format(image, target, 64)
    assert torch.allclose(target["boxes"], before["boxes"] / 128)
    assert torch.equal(target["labels"], before["labels"])
    up = denormalize(image, MEAN)
    assert up.dtype == torch.uint8 and up.shape == (3, 64, 64)
    small = torch.nn.functional.interpolate(raw[0][0][None].float(), size=64, mode="bilinear",
                                            antialias=True)[0]  # fmt: skip
    assert (up.float() - small).abs().mean() < 2


def test_mean_std_and_zoom_fill():
    std = (58.0, 57.0, 57.0)
    image, _ = ShapesDataset("test", 1, 64, transform=build_test_transform(64, MEAN, std))[0]
    raw, _ = ShapesDataset("test", 1, 64)[0]
    expected = (raw.float() - torch.tensor(MEAN)[:, None, None]) / torch.tensor(std)[:, None, None]
    assert torch.allclose(image, expected, atol=1e-4)
    assert torch.equal(denormalize(image, MEAN, std), raw)
    # zoom-out canvas is filled with the mean, i.e. ~0 after normalisation
    torch.manual_seed(0)
    ds = ShapesDataset("train", 40, 64, transform=build_train_transform(64))
    corners = torch.stack([ds[i][0][:, 0, 0] for i in range(40)])
    assert (corners.abs().amax(dim=1) < 1.0).sum() >= 5


def test_seeded_and_picklable_for_workers():
    tr = build_train_transform(64)
    clone = pickle.loads(pickle.dumps(tr))
    ds = ShapesDataset("train", 8, 64)
    image, target = ds[3]
    torch.manual_seed(5)
    a = tr(image, target)
    torch.manual_seed(5)
    b = clone(image, target)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])
    loader = torch.utils.data.DataLoader(
        ShapesDataset("train", 8, 64, transform=tr), batch_size=4, num_workers=2,
        collate_fn=collate, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    images, targets = next(iter(loader))
    assert images.shape == (4, 3, 64, 64) and len(targets) == 4


def test_empty_target_passes_through_train_transform():
    image = torch.full((3, 50, 70), 100, dtype=torch.uint8)
    target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
              "difficult": torch.zeros(0, dtype=torch.bool), "image_id": "e",
              "orig_size": torch.tensor([50, 70])}  # fmt: skip
    torch.manual_seed(0)
    for _ in range(5):
        out, t = build_train_transform(32)(image, target)
        assert out.shape == (3, 32, 32) and t["boxes"].shape == (0, 4)


def test_collate_stacks_and_names_odd_sample():
    ds = ShapesDataset("test", 3, 32)
    images, targets = collate([ds[i] for i in range(3)])
    assert images.shape == (3, 3, 32, 32) and [t["image_id"] for t in targets][2] == "test_000002"
    with pytest.raises(ValueError, match="image 1 has shape"):
        collate([ds[0], ShapesDataset("test", 1, 16)[0]])


def test_augment_policies():
    import pytest as _pytest

    from ssdlib.data import ShapesDataset, build_test_transform, build_train_transform

    ds = ShapesDataset("train", num_images=20, image_size=96, seed=3)
    test_tf = build_test_transform(64)
    none_tf = build_train_transform(64, policy="none")
    light_tf = build_train_transform(64, policy="light")
    for i in range(20):
        image, target = ds[i]
        ref_img, ref_t = test_tf(image, target)
        img, t = none_tf(image, target)
        assert torch.equal(img, ref_img) and torch.equal(t["boxes"], ref_t["boxes"])
        # light: photometric + flip only, so every box survives, unflipped or mirrored
        _, lt = light_tf(image, target)
        mirrored = ref_t["boxes"][:, [2, 1, 0, 3]] * torch.tensor([-1, 1, -1, 1]) + torch.tensor(
            [1.0, 0, 1.0, 0]
        )
        assert torch.equal(lt["labels"], ref_t["labels"])
        assert torch.allclose(lt["boxes"], ref_t["boxes"], atol=1e-5) or torch.allclose(
            lt["boxes"], mirrored, atol=1e-5
        )
    with _pytest.raises(ValueError, match="augmentation policy 'heavy'"):
        build_train_transform(64, policy="heavy")


@pytest.mark.parametrize("source,size", [(96, 96), (128, 64), (60, 100), (97, 64)])
def test_resize_normalize_equals_the_v2_pipeline_bit_for_bit(source, size):
    from torchvision.transforms import v2

    from ssdlib.data.transforms import DetectionTransform, ResizeNormalize, _finish

    ds = ShapesDataset("train", 6, source, seed=5, return_masks=True)
    mean, std = (120.0, 115.5, 100.0), (58.0, 57.0, 57.5)
    fast = ResizeNormalize(size, mean, std)
    reference = DetectionTransform(v2.Compose(_finish(size, mean, std)))
    for i in range(len(ds)):
        image, target = ds[i]
        a, ta = fast(image, target)
        b, tb = reference(image, target)
        assert a.dtype == torch.float32 and a.shape == (3, size, size)
        assert torch.equal(a, b) and torch.equal(ta["boxes"], tb["boxes"])
        assert torch.equal(ta["masks"], tb["masks"]) and torch.equal(ta["labels"], tb["labels"])
        assert torch.equal(image, ds[i][0])  # the input image is not modified in place
