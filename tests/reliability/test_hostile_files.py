"""Hostile files: pickled code in a checkpoint is refused with nothing executed, archives that
would write outside their folder are refused with nothing extracted, YAML tags that build
Python objects are refused. Each payload would create a marker file: it must not exist.

(tests/test_weights.py, test_download.py and test_config.py test the loaders alone; here the
payloads also go through ``train --resume``, eval's ``load_model`` and the CLI.)
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch
from reliability_helpers import tiny_config, write_config

from ssdlib.cli import main
from ssdlib.config import ConfigError, load_config
from ssdlib.data.download import UnsafeArchiveError, extract_archive
from ssdlib.engine.checkpoint import POINTER, load_checkpoint
from ssdlib.engine.inference import load_model
from ssdlib.io import UnsafeCheckpointError, load_checkpoint_file
from ssdlib.model import build_model


class Payload:
    """Unpickling this runs ``touch marker``: the classic malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _evil_checkpoint(path: Path, marker: Path, cfg, how: str) -> Path:
    state = {"model": build_model(cfg).state_dict(), "config": cfg.to_dict(), "iteration": 2,
             "hook": Payload(marker)}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "torch.save":
        torch.save(state, path)
    else:  # the legacy (non-zip) format torch.load also reads
        with open(path, "wb") as f:
            pickle.dump(state, f, protocol=2)
    return path


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_checkpoint_with_pickled_code_is_refused_everywhere(tmp_path, capsys, how):
    cfg = tiny_config(tmp_path)
    marker = tmp_path / "pwned"
    out = tmp_path / "out"
    evil = _evil_checkpoint(out / "model_0000002.pth", marker, cfg, how)
    (out / POINTER).write_text(evil.name + "\n")
    for load in (load_checkpoint, load_checkpoint_file, lambda p: load_model(cfg, p)):
        with pytest.raises(UnsafeCheckpointError, match=f"{evil}: refused to load"):
            load(evil)
    # `train` resumes from the output folder by default: refused in one line, exit code 1.
    code = main(["train", "--config", str(tmp_path / "tiny.yaml"), "--output", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "refused to load" in err and "Traceback" not in err
    assert not marker.exists()  # nothing from the file ran
    assert not (out / "metrics.jsonl").exists()


def _tar(path: Path, members: list[tuple[str, str, str]]) -> Path:
    """members: (kind, name, data or link target); kind in file|symlink|hardlink."""
    with tarfile.open(path, "w") as tf:
        for kind, name, value in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(value)
                tf.addfile(info, io.BytesIO(value.encode()))
            else:
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = value
                tf.addfile(info)
    return path


def _zip(path: Path, members: list[tuple[str, str, str]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for kind, name, value in members:
            info = zipfile.ZipInfo(name)
            if kind == "symlink":
                info.external_attr = (0o120777 << 16)  # S_IFLNK: the member's data is the target
            zf.writestr(info, value)
    return path


OK = ("file", "VOCdevkit/VOC2007/ok.txt", "fine")


@pytest.mark.parametrize(
    ("make", "bad", "problem"),
    [
        (_tar, ("file", "../escaped.txt", "x"), "escapes the target folder"),
        (_tar, ("file", "VOCdevkit/../../escaped.txt", "x"), "escapes the target folder"),
        (_tar, ("file", "/tmp/absolute.txt", "x"), "absolute path"),
        (_tar, ("symlink", "VOCdevkit/link", "../../.."), "points outside the target folder"),
        (_tar, ("symlink", "VOCdevkit/etc", "/etc"), "link to an absolute path"),
        (_tar, ("hardlink", "VOCdevkit/hard", "../outside.txt"), "escapes the target folder"),
        (_zip, ("file", "../escaped.txt", "x"), "escapes the target folder"),
        (_zip, ("file", "/abs/escaped.txt", "x"), "absolute path"),
        (_zip, ("symlink", "VOCdevkit/link", "../../outside"), "points outside the target folder"),
    ],
)  # fmt: skip
def test_unsafe_archives_are_refused_and_nothing_is_extracted(tmp_path, make, bad, problem):
    archive = make(tmp_path / ("a.tar" if make is _tar else "a.zip"), [OK, bad])
    dest = tmp_path / "data" / "root"
    with pytest.raises(UnsafeArchiveError, match=problem) as info:
        extract_archive(archive, dest)
    assert repr(bad[1]) in str(info.value)  # names the member
    assert list(dest.iterdir()) == []  # not even the harmless member
    outside = {p.name for p in tmp_path.rglob("*")} - {"a.tar", "a.zip", "data", "root"}
    assert outside == set(), outside


def test_a_safe_archive_still_extracts(tmp_path):
    archive = _tar(tmp_path / "a.tar", [OK, ("symlink", "VOCdevkit/alias", "VOC2007/ok.txt")])
    extract_archive(archive, tmp_path / "root")
    assert (tmp_path / "root" / "VOCdevkit" / "alias").read_text() == "fine"


def test_yaml_python_tags_are_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    config = write_config(tmp_path / "evil.yaml")
    config.write_text(config.read_text() + f"extra: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="evil.yaml: not valid YAML"):
        load_config(config)
    tag = f"train.lr=!!python/object/apply:os.system ['touch {marker}']"
    with pytest.raises(ConfigError, match="value is not valid YAML"):
        load_config(write_config(tmp_path / "ok.yaml"), [tag])
    code = main(["train", "--config", str(config), "--output", str(tmp_path / "out"), "--no-progress"])
    assert code == 2 and "not valid YAML" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out").exists()
