"""VOC loader + image decoding on tiny generated folders, quirk cases included."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssdlib.config import VOC_CLASS_NAMES
from ssdlib.data.common import DatasetError, load_image
from ssdlib.data.voc import VOCDataset, voc0712_trainval


def _xml(objects, size=(40, 30), raw: str | None = None) -> str:
    if raw is not None:
        return raw
    objs = "".join(
        f"<object><name>{n}</name><difficult>{int(d)}</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects
    )
    return f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height></size>{objs}</annotation>"


def make_voc(root: Path, samples: dict, year: str = "2007", split: str = "trainval") -> Path:
    """samples: id -> (image writer or None, xml text). Returns ``root``."""
    voc = root / f"VOC{year}"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for image_id, (write_image, xml) in samples.items():
        if write_image is not None:
            write_image(voc / "JPEGImages" / f"{image_id}.jpg")
        (voc / "Annotations" / f"{image_id}.xml").write_text(xml)
    (voc / "ImageSets/Main" / f"{split}.txt").write_text("\n".join(samples) + "\n")
    return root


def rgb_jpeg(path: Path, size=(40, 30)) -> None:
    Image.new("RGB", size, (200, 10, 10)).save(path, format="JPEG", quality=95)


def test_boxes_labels_and_devkit_offset(tmp_path):
    xml = _xml([("dog", (1, 1, 10, 20), False), ("person", (5, 6, 40, 30), True)])
    root = make_voc(tmp_path, {"a": (rgb_jpeg, xml)})
    image, target = VOCDataset(root, keep_difficult=True)[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 30, 40)
    assert torch.equal(target["boxes"], torch.tensor([[0.0, 0, 9, 19], [4, 5, 39, 29]]))
    labels = [VOC_CLASS_NAMES.index("dog") + 1, VOC_CLASS_NAMES.index("person") + 1]
    assert target["labels"].tolist() == labels
    assert target["difficult"].tolist() == [False, True]
    assert target["image_id"] == "a" and target["orig_size"].tolist() == [30, 40]
    # SSD training drops difficult objects
    _, target = VOCDataset(root, keep_difficult=False)[0]
    assert target["labels"].tolist() == [VOC_CLASS_NAMES.index("dog") + 1]


def test_clipping_and_invalid_boxes_dropped_with_warning(tmp_path):
    xml = _xml([
        ("cat", (-5, 2, 100, 20), False),  # outside: clipped
        ("cat", (10, 5, 4, 20), False),  # x2 < x1
        ("cat", ("nan", 1, 5, 5), False),  # NaN
        ("cat", (3, 3, 3, 9), False),  # zero width
    ])  # fmt: skip
    root = make_voc(tmp_path, {"q": (rgb_jpeg, xml)})
    with pytest.warns(UserWarning, match=r"q\.xml: dropped 3 invalid box"):
        _, target = VOCDataset(root)[0]
    assert torch.equal(target["boxes"], torch.tensor([[0.0, 1, 40, 19]]))
    assert target["labels"].shape == (1,) and target["difficult"].shape == (1,)


def test_annotation_without_objects_gives_empty_target(tmp_path):
    root = make_voc(tmp_path, {"e": (rgb_jpeg, _xml([]))})
    _, target = VOCDataset(root)[0]
    assert target["boxes"].shape == (0, 4) and target["boxes"].dtype == torch.float32
    assert target["labels"].dtype == torch.int64 and target["labels"].shape == (0,)


@pytest.mark.parametrize(
    ("xml", "match"),
    [
        (_xml([("unicorn", (1, 1, 5, 5), False)]), r"b\.xml: unknown class 'unicorn'"),
        (_xml([], raw="<annotation><object>"), r"b\.xml: malformed XML"),
        (_xml([], size=("nan", 30)), r"b\.xml: invalid <size> nanx30"),
        (_xml([], raw="<annotation><object><name>dog</name></object></annotation>"),
         r"b\.xml: object #0 \(dog\) has no <bndbox>"),
        (_xml([], raw="<annotation><object><name>dog</name><bndbox><xmin>1</xmin></bndbox>"
                      "</object></annotation>"), r"b\.xml: object #0 <bndbox> has no <ymin>"),
    ],
)  # fmt: skip
def test_bad_annotations_name_sample_and_file(tmp_path, xml, match):
    root = make_voc(tmp_path, {"a": (rgb_jpeg, _xml([])), "b": (rgb_jpeg, xml)})
    ds = VOCDataset(root)
    ds[0]
    with pytest.raises(DatasetError, match=match) as info:
        ds[1]
    assert "sample 1 (" in str(info.value) and "b.jpg" in str(info.value)


def _truncated(path: Path) -> None:
    rgb_jpeg(path, (64, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("writer", "match"),
    [
        (_truncated, "truncated"),
        (lambda p: p.write_bytes(b""), r"empty \(0 bytes\)"),
        (None, "image file not found"),
        (lambda p: p.write_bytes(b"not an image at all"), "not a readable image"),
    ],
)
def test_bad_images_raise_with_file_and_problem(tmp_path, writer, match):
    root = make_voc(tmp_path, {"x": (writer, _xml([]))})
    with pytest.raises(DatasetError, match=match) as info:
        VOCDataset(root)[0]
    assert "x.jpg" in str(info.value) and "sample 0" in str(info.value)


@pytest.mark.parametrize(
    ("mode", "value", "fmt", "expected"),
    [
        ("L", 77, "JPEG", (77, 77, 77)),
        ("CMYK", (0, 255, 255, 0), "JPEG", (255, 0, 0)),
        ("RGBA", (10, 20, 30, 0), "PNG", (10, 20, 30)),
        ("P", None, "PNG", (0, 0, 255)),
        ("I;16", 65535, "PNG", (255, 255, 255)),
        ("I;16", 32768, "PNG", (127, 127, 127)),
    ],
)
def test_load_image_converts_every_mode_to_rgb_uint8(tmp_path, mode, value, fmt, expected):
    if mode == "P":
        img = Image.new("RGB", (8, 6), (0, 0, 255)).convert("P")
    else:
        img = Image.new(mode, (8, 6), value)
    path = tmp_path / f"img.{fmt.lower()}"
    img.save(path, format=fmt)
    out = load_image(path)
    assert out.dtype == torch.uint8 and out.shape == (3, 6, 8)
    got = out[:, 3, 4].tolist()
    assert np.allclose(got, expected, atol=3), (mode, got)


def test_dataloader_worker_error_names_sample_and_file(tmp_path):
    root = make_voc(tmp_path, {"ok": (rgb_jpeg, _xml([])), "bad": (None, _xml([]))})
    loader = torch.utils.data.DataLoader(VOCDataset(root), batch_size=None, num_workers=1)
    with pytest.raises(DatasetError, match=r"sample 1 \(.*bad\.jpg\).*not found"):
        list(loader)


def test_voc0712_concatenates_both_years(tmp_path):
    make_voc(tmp_path, {"a": (rgb_jpeg, _xml([("car", (1, 1, 5, 5), False)]))}, year="2007")
    make_voc(tmp_path, {"b": (rgb_jpeg, _xml([])), "c": (rgb_jpeg, _xml([]))}, year="2012")
    ds = voc0712_trainval(tmp_path)
    assert len(ds) == 3
    assert [ds[i][1]["image_id"] for i in range(3)] == ["a", "b", "c"]


def test_missing_split_and_folder_errors(tmp_path):
    root = make_voc(tmp_path, {"a": (rgb_jpeg, _xml([]))})
    with pytest.raises(DatasetError, match=r"test\.txt: image set file not found"):
        VOCDataset(root, split="test")
    with pytest.raises(DatasetError, match=r"VOC2012: VOC folder not found"):
        VOCDataset(root, year="2012")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        VOCDataset(root)[0]  # a clean sample never warns
