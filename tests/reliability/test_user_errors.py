"""Every failure a user can cause is one ``error:`` line naming the file or key, exit 1/2, and
nothing half-written (issue 20): full disk, read-only or wrong-kind output paths (checked
before the work), bad arguments, hostile dataset files."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import pytest
from reliability_helpers import (
    coco_dict,
    good_jpeg,
    good_samples,
    make_coco_root,
    make_voc_root,
    voc_sections,
    write_config,
)

from ssdlib.cli import main
from ssdlib.data import DatasetError
from ssdlib.data.coco import COCODataset, load_coco_json
from ssdlib.engine import outdir
from ssdlib.engine.checkpoint import POINTER


def _one_line(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err
    # The one line the CLIs print about their precision choice is not an error message.
    err = "".join(x for x in err.splitlines(keepends=True)
                  if not x.startswith(("train.amp=", "--dtype bf16:")))  # fmt: skip
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def test_disk_full_at_a_checkpoint_keeps_the_previous_one(tmp_path, capsys, monkeypatch):
    config = write_config(tmp_path / "c.yaml", train={"batch_size": 2, "max_iter": 4})
    out = tmp_path / "out"
    real_fsync = os.fsync

    def fsync(fd):  # the disk fills up while the checkpoint of iteration 4 is written
        if ".model_0000004.pth.tmp" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert main(["train", "--config", str(config), "--output", str(out), "--no-progress"]) == 1
    _one_line(capsys, f"{out / 'model_0000004.pth'}: No space left on device", "intact")
    names = sorted(p.name for p in out.iterdir())
    assert "model_0000002.pth" in names and "model_0000004.pth" not in names
    assert not [n for n in names if ".tmp" in n]  # the half-written temp file is gone
    assert (out / POINTER).read_text().strip() == "model_0000002.pth"


@pytest.fixture
def read_only(monkeypatch):
    """Folders under the returned path behave as on a read-only mount (EROFS), also for root,
    for whom chmod does not stop writes."""
    root = Path(tempfile.mkdtemp())
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve().is_relative_to(root.resolve()):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(outdir.tempfile, "mkstemp", mkstemp)
    return root


def test_read_only_outputs_fail_before_any_work(tmp_path, capsys, read_only):
    config = write_config(tmp_path / "c.yaml")
    missing_ckpt = tmp_path / "never_read.pth"  # the check comes before the model is loaded
    ro = read_only / "res"
    ro.mkdir()
    assert main(["eval", "--config", str(config), "--ckpt", str(missing_ckpt),
                 "--out", str(ro / "m.json")]) == 1  # fmt: skip
    _one_line(capsys, f"--out {ro / 'm.json'}: folder {ro} is not writable (Read-only file system)")
    assert main(["eval", "--config", str(config), "--ckpt", str(missing_ckpt), "--out",
                 str(tmp_path / "m.json"), "--pr-curves", str(ro / "pr.png")]) == 1  # fmt: skip
    _one_line(capsys, "--pr-curves", "not writable")
    (tmp_path / "imgs").mkdir()
    assert main(["demo", "--config", str(config), "--ckpt", str(missing_ckpt), "--images",
                 str(tmp_path / "imgs"), "--out", str(ro / "pics")]) == 1  # fmt: skip
    _one_line(capsys, "--out", "pics", "not writable")
    assert main(["train", "--config", str(config), "--output", str(ro / "run")]) == 1
    _one_line(capsys, f"output folder {ro / 'run'}:", "not writable")
    assert main(["data", "shapes", "--out", str(ro / "shapes"), "--train", "1", "--test", "1"]) == 1
    _one_line(capsys, "--out", "shapes", "not writable")
    # (this simulation still lets mkdir through, which a real read-only mount would not)
    assert not [p for p in ro.rglob("*") if p.is_file()]


def test_output_paths_of_the_wrong_kind(tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml")
    a_file = tmp_path / "taken"
    a_file.write_text("mine")
    assert main(["train", "--config", str(config), "--output", str(a_file)]) == 1
    _one_line(capsys, f"output folder {a_file} is a file; expected a folder")
    assert main(["train", "--config", str(config), "--output", str(a_file / "sub")]) == 1
    _one_line(capsys, f"{a_file} is a file, not a folder")
    assert main(["eval", "--config", str(config), "--ckpt", "x.pth", "--out", str(tmp_path)]) == 1
    _one_line(capsys, f"--out {tmp_path} is a folder; expected a file name")
    assert a_file.read_text() == "mine"


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        (["eval", "--ckpt", "x.pth", "--batch-size", "0"], 1, "--batch-size is 0; expected >= 1"),
        (["eval", "--ckpt", "x.pth", "--workers", "-1"], 1, "--workers is -1; expected >= 0"),
        (["data", "shapes", "--train", "-5"], 2, "--train is -5; expected >= 0"),
        (["data", "shapes", "--size", "0"], 2, "--size is 0; expected >= 1"),
    ],
)  # fmt: skip
def test_bad_arguments(tmp_path, capsys, argv, code, fragment):
    assert main([*argv, *(["--out", str(tmp_path / "o")] if argv[0] == "data" else [])]) == code
    _one_line(capsys, fragment)
    assert not (tmp_path / "o").exists()


def _huge_header_jpeg(path: Path) -> None:
    """A valid small JPEG whose frame header claims 20000 x 20000 pixels."""
    good_jpeg(path)
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (20000).to_bytes(2, "big") * 2
    path.write_bytes(bytes(data))


def test_a_huge_jpeg_header_is_named(tmp_path, capsys):
    samples = good_samples(2)
    samples["huge"] = (_huge_header_jpeg, samples["ok0"][1])
    root = make_voc_root(tmp_path / "data", samples)
    voc = root / "VOCdevkit" / "VOC2007"
    assert main(["data", "validate", str(voc), "--classes", "circle,square"]) == 1
    out = capsys.readouterr().out
    assert "huge.jpg" in out and "too large to decode" in out, out


def test_a_non_utf8_byte_in_an_image_set_is_named(tmp_path, capsys):
    root = make_voc_root(tmp_path / "data", good_samples(2))
    split = root / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main" / "trainval.txt"
    split.write_bytes(b"ok0\nok\xff1\n")
    config = write_config(tmp_path / "c.yaml", **voc_sections(root))
    assert main(["train", "--config", str(config), "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err  # the training-data summary lists its problems below it
    assert err.startswith("error: ") and "Traceback" not in err
    assert f"{split}: line 2 is not UTF-8 text (byte 0xFF)" in err
    assert main(["data", "validate", str(split.parents[2]), "--classes", "square"]) == 1
    assert "line 2 is not UTF-8" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda d: d["annotations"][0].update(bbox=None), "bbox must be a list [x, y, w, h], got None"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, "3", 4]), "bbox values must be numbers"),
        (lambda d: d["annotations"][0].update(category_id=[1, 2]), "unknown category_id [1, 2]"),
        (lambda d: d["annotations"][0].update(image_id={"a": 1}), "image_id {'a': 1} not in images"),
        (lambda d: d["annotations"][0].update(bbox=[0] * 10_000), "got <list of 10000>"),
    ],
)  # fmt: skip
def test_hostile_coco_values_are_named(tmp_path, capsys, edit, fragment):
    data = coco_dict()
    edit(data)
    root = make_coco_root(tmp_path / "d", data, {"0.jpg": good_jpeg, "1.jpg": good_jpeg})
    ann = root / "coco" / "annotations" / "instances_train2017.json"
    with pytest.raises(DatasetError, match="annotations\\[0\\]") as info:
        load_coco_json(ann)
    assert fragment in str(info.value) and str(ann) in str(info.value)
    assert len(str(info.value)) < 500
    assert main(["data", "validate", str(root / "coco" / "train2017"), "--ann-file", str(ann)]) == 1
    assert fragment in capsys.readouterr().out


def test_an_infinite_coco_bbox_is_an_odd_box(tmp_path):
    """1e400 parses as inf: a number, so (as NaN) the box is dropped with a warning naming the
    file, never a traceback."""
    data = coco_dict()
    root = make_coco_root(tmp_path / "d", data, {"0.jpg": good_jpeg, "1.jpg": good_jpeg})
    ann = root / "coco" / "annotations" / "instances_train2017.json"
    ann.write_text(ann.read_text().replace("[16, 16, 25, 25]", "[16, 16, 1e400, 25]", 1))
    dataset = COCODataset(root / "coco" / "train2017", ann)
    with pytest.warns(UserWarning, match="instances_train2017.json: dropped 1 invalid box"):
        _, target = dataset[0]
    assert target["boxes"].shape == (0, 4)


def test_a_top_level_list_json_is_named(tmp_path, capsys):
    ann = tmp_path / "list.json"
    ann.write_text(json.dumps([{"images": []}]))
    with pytest.raises(DatasetError, match="list.json: the top level must be an object"):
        load_coco_json(ann)
    assert main(["data", "validate", str(tmp_path), "--ann-file", str(ann)]) == 1
    assert "the top level must be an object" in capsys.readouterr().out
