"""Bad data: every defect is reported with the file (and sample index) and the problem, or
skipped with a warning and a count where documented; never a crash inside collate or the loss.
A "bring your own data" folder is validated before training, every problem listed at once;
DataLoader workers (num_workers=2) pass the original error on.

(tests/test_data_voc.py / test_data_coco.py / test_data_validate.py test the loaders and the
validator alone; here the same defects go through ``train`` and the CLI.)
"""

from __future__ import annotations

import math
import warnings

import pytest
from reliability_helpers import (
    coco_dict,
    coco_sections,
    good_jpeg,
    good_samples,
    make_coco_root,
    make_voc_root,
    tiny_config,
    truncated_jpeg,
    voc_sections,
    voc_xml,
    write_config,
    zero_byte,
)

from ssdlib.cli import main
from ssdlib.data import DatasetError, VOCDataset, build_train_transform
from ssdlib.engine import train
from ssdlib.engine.datasets import build_train_dataset

MALFORMED = "<annotation><object><name>square"  # cut off mid-file


@pytest.mark.parametrize(
    ("stem", "sample", "problem"),
    [
        ("trunc", (truncated_jpeg, voc_xml()), "corrupt or truncated image"),
        ("empty", (zero_byte, voc_xml()), r"image file is empty \(0 bytes\)"),
        ("gone", (None, voc_xml()), "image file not found"),
        ("badxml", (good_jpeg, MALFORMED), r"badxml\.xml: malformed XML"),
        ("zebra", (good_jpeg, voc_xml([("zebra", (2, 2, 9, 9))])), "unknown class 'zebra'"),
    ],
)
def test_a_bad_sample_stops_training_naming_index_file_and_problem(tmp_path, stem, sample, problem):
    """Fed straight to the DataLoader (no validation): the error still names the sample."""
    root = make_voc_root(tmp_path / "data", {**good_samples(3), stem: sample})
    cfg = tiny_config(tmp_path, **voc_sections(tmp_path / "data"))
    dataset = VOCDataset(root / "VOCdevkit", "trainval", "2007", transform=build_train_transform(160),
                         class_names=cfg.data.class_names)  # fmt: skip
    with pytest.raises(DatasetError, match=problem) as info:
        train(cfg, tmp_path / "out", dataset=dataset, progress=False)
    assert "sample 3 (" in str(info.value) and f"{stem}.jpg" in str(info.value)
    assert not list((tmp_path / "out").glob("model_*.pth"))


def test_nan_and_inverted_boxes_are_dropped_with_a_counted_warning_and_training_goes_on(tmp_path):
    bad = voc_xml([("square", (17, 17, 41, 41)), ("circle", ("nan", 3, 9, 9)), ("star", (30, 2, 10, 9))])
    root = make_voc_root(tmp_path / "data", {**good_samples(3), "odd": (good_jpeg, bad)})
    cfg = tiny_config(tmp_path, **voc_sections(root))
    with pytest.warns(UserWarning, match=r"odd\.xml: dropped 2 invalid box\(es\)"):
        _, target = VOCDataset(root / "VOCdevkit", class_names=cfg.data.class_names)[3]
    assert target["labels"].tolist() == [2]  # the square survives
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same warning, once per loaded sample
        result = train(cfg, tmp_path / "out", progress=False)  # validation passes: warnings only
    assert len(result.losses) == 2 and all(math.isfinite(v) for v in result.losses)


def test_coco_record_with_a_missing_field_is_named(tmp_path):
    data = coco_dict()
    del data["annotations"][1]["bbox"]
    data["images"][0].pop("file_name")
    root = make_coco_root(tmp_path / "data", data, {"0.jpg": good_jpeg, "1.jpg": good_jpeg})
    cfg = tiny_config(tmp_path, **coco_sections(root))
    with pytest.raises(DatasetError) as info:
        train(cfg, tmp_path / "out", progress=False)
    message = str(info.value)
    assert "instances_train2017.json" in message
    assert "annotations[1] (id=2) missing field(s) ['bbox']" in message
    assert "images[0] (id=1) missing field(s) ['file_name']" in message
    assert not (tmp_path / "out").exists()


def test_train_on_a_custom_folder_lists_every_problem_before_any_iteration(tmp_path, capsys):
    samples = {
        **good_samples(2),
        "gone": (None, voc_xml()),
        "empty": (zero_byte, voc_xml()),
        "badxml": (good_jpeg, MALFORMED),
        "zebra": (good_jpeg, voc_xml([("zebra", (2, 2, 9, 9))])),
        "nobox": (good_jpeg, "<annotation><object><name>square</name></object></annotation>"),
    }
    root = make_voc_root(tmp_path / "data", samples)
    config = write_config(tmp_path / "mine.yaml", **voc_sections(root))
    code = main(["train", "--config", str(config), "--output", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "has 5 error(s)" in err
    for expected in ("gone.jpg: image file not found", "empty.jpg: image file is empty (0 bytes)",
                     "badxml.xml: malformed XML", "zebra.xml: unknown class 'zebra'",
                     "nobox.xml: object #0 (square) has no <bndbox>"):  # fmt: skip
        assert expected in err, expected
    assert not (tmp_path / "out").exists()  # failed before creating anything


def test_clean_custom_folder_passes_validation(tmp_path):
    root = make_voc_root(tmp_path / "data", good_samples(4))
    cfg = tiny_config(tmp_path, **voc_sections(root))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean folder never warns
        dataset = build_train_dataset(cfg)
        image, target = dataset[0]
    assert image.shape == (3, 160, 160) and target["labels"].tolist() == [2]


def test_worker_crash_surfaces_the_original_error_with_index_and_file(tmp_path, capsys):
    """num_workers=2: the error raised in a worker process reaches the user intact. A truncated
    JPEG passes the fast (non-decoding) validation and fails while loading."""
    stems = ["ok0", "ok1", "ok2", "ok3", "ok4", "cut", "ok6", "ok7"]  # the truncated one is sample 5
    samples = {s: (truncated_jpeg if s == "cut" else good_jpeg, voc_xml()) for s in stems}
    root = make_voc_root(tmp_path / "data", samples)
    sections = voc_sections(root, batch_size=8)
    sections["data"]["num_workers"] = 2
    config = write_config(tmp_path / "mine.yaml", **sections)
    code = main(["train", "--config", str(config), "--output", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "DataLoader worker process" in err  # it did come from a worker ...
    assert "DatasetError: sample 5 (" in err and "cut.jpg" in err  # ... with index and file
    assert "corrupt or truncated image" in err
