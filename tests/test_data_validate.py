"""validate_* report every problem of a folder at once, with the file named."""

from __future__ import annotations

import json

from PIL import Image

from ssdlib.data.validate import validate_coco, validate_dataset, validate_voc_folder


def _obj(name, box, difficult=0):
    b = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    return f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>{b}</bndbox></object>"


def _ann(*objects, size=(40, 30)):
    return (f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height></size>"
            + "".join(objects) + "</annotation>")  # fmt: skip


def test_voc_folder_reports_every_problem(tmp_path):
    voc = tmp_path / "mydata"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    anns = {
        "good": _ann(_obj("cat", (1, 1, 10, 10))),
        "unknown": _ann(_obj("cat", (1, 1, 10, 10)), _obj("zebra", (2, 2, 8, 8))),
        "inverted": _ann(_obj("dog", (20, 1, 10, 10))),
        "nan": _ann(_obj("dog", ("nan", 1, 10, 10))),
        "outside": _ann(_obj("dog", (30, 20, 60, 50))),
        "empty": _ann(),
        "malformed": "<annotation><object>",
        "zerobyte": _ann(_obj("cat", (1, 1, 10, 10))),
        "missingimg": _ann(_obj("cat", (1, 1, 10, 10))),
        "sizemismatch": _ann(_obj("cat", (1, 1, 10, 10)), size=(100, 100)),
    }
    for stem, xml in anns.items():
        (voc / "Annotations" / f"{stem}.xml").write_text(xml)
        if stem == "zerobyte":
            (voc / "JPEGImages" / f"{stem}.jpg").write_bytes(b"")
        elif stem != "missingimg":
            Image.new("RGB", (40, 30)).save(voc / "JPEGImages" / f"{stem}.jpg")
    (voc / "ImageSets/Main/train.txt").write_text("\n".join(anns) + "\nnoxml\n")
    Image.new("RGB", (40, 30)).save(voc / "JPEGImages" / "noxml.jpg")

    report = validate_voc_folder(voc, ["cat", "dog"])
    text = report.format()
    assert not report.ok
    expected = [
        ("error", "unknown.xml", "unknown class 'zebra'"),
        ("warning", "inverted.xml", "x2<=x1"),
        ("warning", "nan.xml", "NaN"),
        ("warning", "outside.xml", "will be clipped"),
        ("warning", "empty.xml", "no objects"),
        ("error", "malformed.xml", "malformed XML"),
        ("error", "zerobyte.jpg", "empty (0 bytes)"),
        ("error", "missingimg.jpg", "not found"),
        ("warning", "sizemismatch.xml", "<size> 100x100"),
        ("error", "noxml.xml", "annotation file not found"),
    ]
    for severity, file, message in expected:
        assert any(
            p.severity == severity and p.file.endswith(file) and message in p.message
            for p in report.problems
        ), (file, message, text)
    assert len(report.problems) == len(expected), text
    assert report.num_images == 11
    assert not any("good" in p.file for p in report.problems)
    assert validate_dataset(voc, ["cat", "dog", "zebra"]).errors != []  # still corrupt files


def test_coco_reports_every_problem(tmp_path):
    (tmp_path / "img").mkdir()
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (40, 30)).save(tmp_path / "img" / name)
    data = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "height": 30, "width": 40},
            {"id": 2, "file_name": "b.jpg", "height": 30, "width": 40},
            {"id": 3, "file_name": "missing.jpg", "height": 30, "width": 40},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 5, "bbox": [1, 1, 5, 5]},
            {"id": 2, "image_id": 1, "category_id": 5, "bbox": [1, 1, 0, 5]},
            {"id": 3, "image_id": 2, "category_id": 5, "bbox": [0, 0, 40, 30], "iscrowd": 1},
        ],
        "categories": [{"id": 5, "name": "thing"}],
    }
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(data))
    report = validate_coco(tmp_path / "img", ann)
    msgs = [str(p) for p in report.problems]
    assert any("missing.jpg" in m and "not found" in m for m in msgs), msgs
    assert any("annotations[1] (id=2)" in m and "x2<=x1" in m for m in msgs), msgs
    assert any("b.jpg" in m and "no usable" in m for m in msgs), msgs
    assert len(report.errors) == 1 and not report.ok

    del data["annotations"][0]["bbox"], data["images"][1]["file_name"]
    ann.write_text(json.dumps(data))
    report = validate_dataset(tmp_path / "img", ann_file=ann)
    msgs = [str(p) for p in report.errors]
    assert len(msgs) == 2 and "['bbox']" in msgs[1] and "['file_name']" in msgs[0], msgs
