"""Notebook 06 with torchvision's COCO SSD300 in the torch hub cache draws COCO detections on the
photos (the path a learner with internet takes). The cached file is a stand-in with the real
file's name and layout and random weights: no download, and the conversion still runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from notebook_runner import execute_notebook

from ssdlib.model import hub_checkpoint_path, weight_url

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "06_demo.ipynb"

pytestmark = pytest.mark.slow


def test_06_uses_the_cached_coco_weights(tmp_path, monkeypatch):  # the kernel inherits the env
    from torchvision.models.detection import ssd300_vgg16

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SSDLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SSDLIB_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    cached = hub_checkpoint_path(weight_url("torchvision-coco"))
    assert str(cached).startswith(str(tmp_path)), cached
    cached.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(ssd300_vgg16(weights=None, weights_backbone=None).state_dict(), cached)

    # 240 s a cell: the notebook takes ~30 s, and a lost kernel message then costs 4 minutes.
    text = execute_notebook(NOTEBOOK, NOTEBOOK.parent, tmp_path / "06_executed.ipynb", timeout=240)
    assert "COCO SSD300 weights: in the cache" in text
    assert "COCO SSD300: 8732 priors, 90 labels" in text, text[-3000:]
    assert "OFFLINE" not in text
