"""Hostile and defective YOLO folders through ``train`` and the CLI: every defect named with
its file (and line or sample index), never a crash in collate or the loss, nothing executed.

(tests/test_data_yolo.py tests the loader and the validator alone.)
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
from reliability_helpers import (
    CLASSES,
    good_jpeg,
    tiny_config,
    truncated_jpeg,
    write_config,
    zero_byte,
)

from ssdlib.cli import main
from ssdlib.data import DatasetError, YOLODataset
from ssdlib.engine import train

GOOD = "1 0.4453 0.4453 0.3906 0.3906\n"  # good_jpeg's square (pixels 16..40 of 64), class 1


def make_yolo(root: Path, samples: dict[str, tuple], yaml_text: str | None = None) -> Path:
    """``root/images/train/<stem>.jpg`` + ``root/labels/train/<stem>.txt`` (text, or bytes,
    or None = no label file) and a data.yaml naming the Shapes classes."""
    (root / "images/train").mkdir(parents=True)
    (root / "labels/train").mkdir(parents=True)
    for stem, (write_image, label) in samples.items():
        if write_image is not None:
            write_image(root / "images/train" / f"{stem}.jpg")
        path = root / "labels/train" / f"{stem}.txt"
        if isinstance(label, bytes):
            path.write_bytes(label)
        elif label is not None:
            path.write_text(label)
    default = "path: .\ntrain: images/train\nval: images/train\nnames: [" + ", ".join(CLASSES) + "]\n"
    (root / "data.yaml").write_text(default if yaml_text is None else yaml_text)
    return root


def sections(root: Path, **train: object) -> dict[str, dict]:
    return {
        "data": {"dataset": "yolo", "root": str(root), "train_splits": ["train"], "test_split": "val"},
        "train": {"max_iter": 2, "checkpoint_period": 100, **train},
    }


def good(n: int) -> dict[str, tuple]:
    return {f"ok{i}": (good_jpeg, GOOD) for i in range(n)}


def test_a_clean_yolo_folder_trains_and_evaluates(tmp_path):
    root = make_yolo(tmp_path / "data", good(4))
    cfg = tiny_config(tmp_path, **sections(root))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean folder never warns
        result = train(cfg, tmp_path / "out", progress=False)
    assert len(result.losses) == 2 and all(math.isfinite(v) for v in result.losses)
    config = write_config(tmp_path / "mine.yaml", **sections(root))
    ckpt = str(result.checkpoint)
    code = main(["eval", "--config", str(config), "--ckpt", ckpt, "--no-progress"])
    assert code == 0


def test_train_lists_every_problem_before_any_iteration(tmp_path, capsys):
    samples = {
        **good(2),
        "empty": (zero_byte, GOOD),
        "gone": (None, GOOD),  # no image: its label file is an orphan (a warning)
        "zebra": (good_jpeg, "7 0.5 0.5 0.1 0.1\n"),
        "short": (good_jpeg, "1 0.5 0.5\n"),
        "binary": (good_jpeg, b"\x89PNG\r\n\x1a\n\xff\xfe\x00"),
        "nolabel": (good_jpeg, None),  # background: a warning, not an error
    }
    root = make_yolo(tmp_path / "data", samples)
    config = write_config(tmp_path / "mine.yaml", **sections(root))
    code = main(["train", "--config", str(config), "--output", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "has 4 error(s)" in err, err
    for expected in (
        "empty.jpg: image file is empty (0 bytes)",
        "zebra.txt: box #0 (class 7): unknown class id 7",
        "short.txt: line 1: expected 'class cx cy w h'",
        "binary.txt: not a text file",
    ):
        assert expected in err, expected
    assert not (tmp_path / "out").exists()


def test_truncated_image_stops_training_naming_index_and_file(tmp_path):
    root = make_yolo(tmp_path / "data", {**good(3), "cut": (truncated_jpeg, GOOD)})
    cfg = tiny_config(tmp_path, **sections(root))
    with pytest.raises(DatasetError, match="corrupt or truncated image") as info:
        train(cfg, tmp_path / "out", progress=False)
    assert "sample 0 (" in str(info.value) and "cut.jpg" in str(info.value)  # sorted: cut < ok*


def test_nan_bom_crlf_and_out_of_range_values_load(tmp_path):
    label = "\ufeff1 0.4453 0.4453 0.3906 0.3906\r\n2 nan 0.5 0.1 0.1\r\n3 1.5 1.5 0.2 0.2\r\n"
    root = make_yolo(tmp_path / "data", {"odd": (good_jpeg, label)})
    ds = YOLODataset(root, "train")
    with pytest.warns(UserWarning, match=r"odd\.txt: dropped 2 invalid box\(es\)"):
        _, target = ds[0]
    assert target["labels"].tolist() == [2]


@pytest.mark.parametrize(
    ("yaml_text", "problem"),
    [
        ("!!python/object/apply:os.system ['touch {marker}']\n", r"data\.yaml: not valid YAML"),
        ("[1, 2]\n", r"data\.yaml: expected a mapping"),
        ("train: images/train\nnames: {0: a, 2: b}\n", r"names keys must be 0\.\.1"),
        ("train: nowhere\nnames: [a]\n", r"nowhere: image folder or list not found"),
    ],
)
def test_hostile_or_broken_data_yaml_is_refused(tmp_path, yaml_text, problem):
    marker = tmp_path / "marker"
    root = make_yolo(tmp_path / "data", good(1), yaml_text.replace("{marker}", str(marker)))
    with pytest.raises(DatasetError, match=problem):
        YOLODataset(root, "train")
    assert main(["data", "validate", str(root)]) == 1
    assert not marker.exists()
