import os
import random

import numpy as np
import pytest
import torch

from ssdlib.engine import checkpoint as ck
from ssdlib.io import CheckpointError


def _state(i):
    return {"iteration": i, "w": torch.full((3,), float(i)), "rng": ck.get_rng_state()}


def test_save_rotates_and_points_at_the_newest(tmp_path):
    for i in (10, 20, 30, 40):
        ck.save_checkpoint(_state(i), tmp_path, i, keep=2)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["model_0000030.pth", "model_0000040.pth"]
    assert (tmp_path / ck.POINTER).read_text().strip() == "model_0000040.pth"
    latest = ck.latest_checkpoint(tmp_path)
    assert ck.load_checkpoint(latest)["iteration"] == 40
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    ck.save_checkpoint(_state(1), tmp_path, 1, keep=1)

    def crash(src, dst):  # the process dies between writing the temp file and renaming it
        raise KeyboardInterrupt

    monkeypatch.setattr(ck.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(_state(2), tmp_path, 2, keep=1)
    monkeypatch.undo()
    assert ck.latest_checkpoint(tmp_path).name == "model_0000001.pth"
    assert ck.load_checkpoint(ck.latest_checkpoint(tmp_path))["iteration"] == 1
    # A temp file left by a killed process (no cleanup ran) is never taken for a checkpoint.
    (tmp_path / ".model_0000009.pth.tmp123").write_bytes(b"half a checkpoint")
    (tmp_path / ck.POINTER).unlink()
    assert ck.latest_checkpoint(tmp_path).name == "model_0000001.pth"


def test_pointer_to_a_missing_file_falls_back_to_the_newest_complete(tmp_path):
    ck.save_checkpoint(_state(5), tmp_path, 5, keep=0)
    ck.atomic_write(tmp_path / ck.POINTER, b"model_0000099.pth\n")
    assert ck.latest_checkpoint(tmp_path).name == "model_0000005.pth"
    assert ck.latest_checkpoint(tmp_path / "nothing") is None


def test_rng_states_round_trip_through_weights_only_load(tmp_path):
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)  # noqa: NPY002
    ck.save_checkpoint({"rng": ck.get_rng_state()}, tmp_path, 1)
    expected = torch.rand(2), random.random(), np.random.rand()  # noqa: NPY002
    ck.set_rng_state(ck.load_checkpoint(ck.latest_checkpoint(tmp_path))["rng"])
    assert torch.equal(torch.rand(2), expected[0])
    assert random.random() == expected[1] and np.random.rand() == expected[2]  # noqa: NPY002


def test_unreadable_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "model_0000001.pth"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="model_0000001.pth"):
        ck.load_checkpoint(bad)
    assert os.path.exists(bad)
