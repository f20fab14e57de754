"""The architecture diagram's numbers are read off the model and agree with the paper's SSD300."""

from __future__ import annotations

import pytest
import torch

from ssdlib.config import load_config
from ssdlib.model import build_model
from ssdlib.viz.architecture import architecture_rows, plot_architecture


@pytest.fixture(scope="module")
def ssd300():
    cfg = load_config("ssd300_voc", ["model.backbone_weights=none"])
    torch.manual_seed(0)
    return build_model(cfg), cfg


def test_ssd300_rows_are_the_papers(ssd300):
    model, cfg = ssd300
    rows = architecture_rows(model, cfg)
    assert [r.name for r in rows] == ["conv4_3", "conv7", "conv8_2", "conv9_2", "conv10_2", "conv11_2"]
    assert [r.size for r in rows] == [38, 19, 10, 5, 3, 1]
    assert [r.channels for r in rows] == [512, 1024, 512, 256, 256, 256]
    assert [r.boxes for r in rows] == [4, 6, 6, 6, 4, 4]
    assert [r.priors for r in rows] == [5776, 2166, 600, 150, 36, 4]
    assert sum(r.priors for r in rows) == 8732 == model.priors.shape[0]


def test_light_model_rows_follow_densify():
    cfg = load_config("shapes")
    model = build_model(cfg)
    rows = architecture_rows(model, cfg)
    assert [r.name for r in rows] == [f"map {k}" for k in range(5)]
    # densify [2, 2, 1, 1, 1]: 2x2 min-size squares on the first two maps.
    assert [r.boxes for r in rows] == [7, 9, 6, 4, 4]
    assert sum(r.priors for r in rows) == model.priors.shape[0]


def test_disagreeing_config_is_an_error(ssd300):
    model, _ = ssd300
    other = load_config("ssd300_voc", ["model.backbone_weights=none",
                                       "priors.aspect_ratios=[[2],[2],[2],[2],[2],[2]]"])  # fmt: skip
    with pytest.raises(ValueError, match="boxes per location"):
        architecture_rows(model, other)


def test_plot_shows_the_counts(ssd300):
    model, cfg = ssd300
    fig = plot_architecture(model, cfg)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("8732 priors" in t for t in texts)
    assert "5776 + 2166 + 600 + 150 + 36 + 4 = 8732" in texts
    assert any("38x38x512" in t for t in texts)


def test_model_summary_counts_densified_boxes():
    from ssdlib.model.summary import model_summary

    cfg = load_config("shapes")
    rows = [line.split() for line in model_summary(cfg).splitlines()[2:7]]
    boxes = [int(r[5]) for r in rows]
    priors = [int(r[6]) for r in rows]
    assert boxes == [7, 9, 6, 4, 4]
    assert priors == [f * f * b for f, b in zip(cfg.priors.feature_maps, boxes)]
