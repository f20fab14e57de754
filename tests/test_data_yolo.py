"""YOLO-format folders: layouts, label parsing, the writer's round trip, the validator, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from ssdlib.cli import main
from ssdlib.data import ShapesDataset, YOLODataset, validate_yolo_folder, write_yolo
from ssdlib.data.common import DatasetError
from ssdlib.data.validate import validate_dataset
from ssdlib.data.yolo import label_path, parse_yolo_labels


def _image(path: Path, size=(40, 20)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (30, 60, 90)).save(path, format="PNG")


def _labels(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_plain_layout_boxes_labels_and_names_file(tmp_path):
    _image(tmp_path / "images/train/a.png")
    _labels(tmp_path / "labels/train/a.txt", "1 0.5 0.5 0.5 0.5\n\n0 0.25 0.75 0.1 0.2\n")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    ds = YOLODataset(tmp_path, "train")
    assert ds.class_names == ("cat", "dog") and len(ds) == 1
    image, target = ds[0]
    assert image.shape == (3, 20, 40) and image.dtype == torch.uint8
    # continuous pixel xyxy: cx*W - w*W/2 ...; labels are class id + 1
    expected = torch.tensor([[10.0, 5, 30, 15], [8, 13, 12, 17]])
    assert torch.allclose(target["boxes"], expected, atol=1e-4)
    assert target["labels"].tolist() == [2, 1] and target["difficult"].tolist() == [False, False]
    assert target["image_id"] == "images/train/a.png" and target["orig_size"].tolist() == [20, 40]
    # without a decoded size, the header gives it (evaluation path)
    assert torch.allclose(ds.get_target(0)["boxes"], expected, atol=1e-4)


def test_data_yaml_with_dict_names_list_file_and_polygon_line(tmp_path):
    _image(tmp_path / "images/v/b.jpg")
    _labels(tmp_path / "labels/v/b.txt", "0 0.1 0.1 0.5 0.1 0.5 0.6 0.1 0.6\n")
    (tmp_path / "val.txt").write_text("images/v/b.jpg\n")
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(
        {"path": ".", "train": "images/v", "val": "val.txt", "names": {0: "x", 1: "y"}}))
    for split in ("train", "val"):
        ds = YOLODataset(tmp_path, split)
        assert ds.class_names == ("x", "y") and len(ds) == 1
        _, target = ds[0]
        assert torch.allclose(target["boxes"], torch.tensor([[4.0, 2, 20, 12]]), atol=1e-4)
    with pytest.raises(DatasetError, match=r"data\.yaml: no 'test' entry"):
        YOLODataset(tmp_path, "test")


def test_missing_and_empty_label_files_are_background_and_duplicates_read_once(tmp_path):
    for stem in "abc":
        _image(tmp_path / f"images/{stem}.png")
    _labels(tmp_path / "labels/b.txt", "")
    _labels(tmp_path / "labels/c.txt", "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n")
    ds = YOLODataset(tmp_path, "all", class_names=["thing"])
    assert [len(ds[i][1]["boxes"]) for i in range(3)] == [0, 0, 1]
    assert parse_yolo_labels(tmp_path / "labels/c.txt").duplicates == [2]
    assert label_path(tmp_path / "images/x/images/q.jpg") == tmp_path / "images/x/labels/q.txt"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("0 0.5 0.5 0.2", r"a\.txt: line 1: expected 'class cx cy w h'"),
        ("0 0.5 zero 0.2 0.2", r"a\.txt: line 1: not a number"),
        ("1.5 0.5 0.5 0.2 0.2", r"a\.txt: line 1: class id '1.5' is not an integer"),
        ("-1 0.5 0.5 0.2 0.2", r"class id '-1' is not an integer >= 0"),
        ("7 0.5 0.5 0.2 0.2", r"a\.txt: unknown class id 7 \(expected 0\.\.1\)"),
    ],
)
def test_bad_label_lines_raise_naming_file_and_line(tmp_path, line, problem):
    _image(tmp_path / "images/a.png")
    _labels(tmp_path / "labels/a.txt", line + "\n")
    ds = YOLODataset(tmp_path, "all", class_names=["p", "q"])
    with pytest.raises(DatasetError, match=problem) as info:
        ds[0]
    assert "sample 0 (" in str(info.value)


def test_no_class_names_anywhere_is_a_clear_error(tmp_path):
    _image(tmp_path / "images/a.png")
    with pytest.raises(DatasetError, match="no class names"):
        YOLODataset(tmp_path, "all")
    with pytest.raises(DatasetError, match=r"images[/\\]train: split folder not found"):
        YOLODataset(tmp_path, "train", class_names=["a"])


def test_writer_round_trip_of_shapes_matches_the_source_boxes(tmp_path):
    src = ShapesDataset("test", 6, 96, seed=3, keep_difficult=False)
    write_yolo(tmp_path, {"val": src}, src.class_names)
    back = YOLODataset(tmp_path, "val")
    assert back.class_names == src.class_names and len(back) == len(src)
    for i in range(len(src)):
        (_, a), (image, b) = src[i], back[i]
        assert image.shape[-2:] == (96, 96)
        assert b["labels"].tolist() == a["labels"].tolist()
        assert torch.allclose(b["boxes"], a["boxes"].clamp(0, 96), atol=1e-3)
    assert validate_yolo_folder(tmp_path).problems == []


def test_validator_reports_every_listed_problem(tmp_path):
    for stem in ("ok", "nolabel", "empty", "bad", "dup", "broken"):
        _image(tmp_path / f"images/train/{stem}.png")
    (tmp_path / "images/train/broken.png").write_bytes(b"not a png")
    (tmp_path / "classes.txt").write_text("a\nb\n")
    lab = tmp_path / "labels/train"
    _labels(lab / "ok.txt", "0 0.5 0.5 0.2 0.2\n")
    _labels(lab / "empty.txt", "\n")
    _labels(lab / "bad.txt", "1 1.2 0.5 0.2 0.2\n5 0.5 0.5 0.2 0.2\n0 0.5 0.5 0 0.3\n")
    _labels(lab / "dup.txt", "1 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n")
    _labels(lab / "broken.txt", "0 0.5 0.5 0.2 0.2\n")
    _labels(lab / "orphan.txt", "0 0.5 0.5 0.2 0.2\n")
    report = validate_dataset(tmp_path)  # recognised as YOLO (labels/ folder)
    text = report.format()
    assert report.num_images == 6 and not report.ok
    expected = [
        ("warning", "nolabel.png", "no label file nolabel.txt"),
        ("warning", "empty.txt", "no objects"),
        ("warning", "bad.txt", "outside [0, 1]"),
        ("error", "bad.txt", "unknown class id 5 (expected 0..1)"),
        ("warning", "bad.txt", "not > 0 (will be dropped)"),
        ("warning", "dup.txt", "line 2 repeats an earlier line"),
        ("error", "broken.png", "not a readable image"),
        ("warning", "orphan.txt", "label file without an image"),
    ]
    for severity, file, message in expected:
        assert any(p.severity == severity and p.file.endswith(file) and message in p.message
                   for p in report.problems), (severity, file, message, text)  # fmt: skip
    assert len(report.problems) == len(expected), text
    assert len(report.errors) == 2


def test_cli_validate_and_shapes_export(tmp_path, capsys):
    out = tmp_path / "yolo"
    assert main(["data", "shapes", "--format", "yolo", "--out", str(out), "--train", "4",
                 "--test", "2", "--size", "64"]) == 0  # fmt: skip
    assert sorted(p.name for p in (out / "images").iterdir()) == ["train", "val"]
    assert main(["data", "validate", str(out)]) == 0
    assert "6 images" in capsys.readouterr().out
    (out / "labels/train/000000.txt").write_text("9 0.5 0.5 0.1 0.1\n")
    assert main(["data", "validate", str(out), "--no-decode"]) == 1
    assert "unknown class id 9" in capsys.readouterr().out
