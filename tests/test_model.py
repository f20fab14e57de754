import pytest
import torch
import torchvision

from ssdlib.config import ConfigError, load_config
from ssdlib.model import build_model, feature_map_sizes
from ssdlib.priors import generate_priors


def cfg(name, *overrides):
    return load_config(name, ["model.backbone_weights=none", *overrides])


def test_ssd300_parameter_count_equals_torchvision():
    ours = build_model(cfg("ssd300_voc"))
    tv = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None,
                                                   num_classes=21)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(tv) == 26_285_486


@pytest.mark.parametrize(
    "name, size, maps",
    [("ssd300_voc", 300, [38, 19, 10, 5, 3, 1]), ("ssd512_voc", 512, [64, 32, 16, 8, 4, 2, 1]),
     ("shapes", 160, [20, 10, 5, 3, 1])],
)
def test_output_shapes(name, size, maps):
    c = cfg(name)
    model = build_model(c).eval()
    assert feature_map_sizes(model.backbone, size) == maps
    num_priors = generate_priors(c.priors).shape[0]
    with torch.no_grad():
        logits, deltas = model(torch.randn(1, 3, size, size))
    assert logits.shape == (1, num_priors, c.model.num_classes + 1)
    assert deltas.shape == (1, num_priors, 4)
    assert model.priors.shape == (num_priors, 4)


def test_light_model_gradients_and_predict():
    model = build_model(cfg("shapes"))
    x = torch.randn(2, 3, 160, 160)
    logits, deltas = model(x)
    (logits.mean() + deltas.mean()).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    dets = model.eval().predict(x, score_threshold=0.2)
    assert len(dets) == 2 and all(d.boxes.shape[1] == 4 for d in dets)


def test_state_dict_round_trip(tmp_path):
    c = cfg("shapes")
    torch.manual_seed(0)
    a = build_model(c).eval()
    torch.save(a.state_dict(), tmp_path / "w.pt")
    torch.manual_seed(1)
    b = build_model(c).eval()
    b.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    x = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        assert all(torch.equal(u, v) for u, v in zip(a(x), b(x)))
    assert "priors" not in a.state_dict()  # derived from the config, not stored


def test_feature_map_mismatch_is_a_config_error():
    with pytest.raises(ConfigError, match=r"priors.feature_maps .* produces maps of sizes"):
        build_model(cfg("shapes", "priors.feature_maps=[19, 10, 5, 3, 1]"))
    with pytest.raises(ConfigError, match="needs priors.image_size 300"):
        build_model(cfg("ssd300_voc", "priors.image_size=320", "input.image_size=320"))


def test_vgg_layout_matches_torchvision_ssd():
    ours = build_model(cfg("ssd300_voc")).backbone.state_dict()
    tv = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None,
                                                   num_classes=21).backbone.state_dict()
    renamed = {("l2norm.weight" if k == "scale_weight" else k): v.shape for k, v in tv.items()}
    assert {k: v.shape for k, v in ours.items()} == renamed


def test_light_first_stride_4_adds_a_fused_fine_map():
    from ssdlib.model import LightBackbone

    assert feature_map_sizes(LightBackbone(1.0, 8), 160) == [20, 10, 5, 3, 1]
    fine = LightBackbone(1.0, 4)
    assert feature_map_sizes(fine, 160) == [40, 20, 10, 5, 3, 1]
    assert feature_map_sizes(fine, 150) == [38, 19, 10, 5, 3, 1]  # odd sizes line up too
    assert fine.out_channels == [32, 64, 128, 192, 128, 128]
    fine(torch.randn(2, 3, 160, 160))[0].square().mean().backward()
    # The stride-4 map sees the deeper stride-8 stage through the top-down path, nothing deeper.
    assert fine.lateral[0].weight.grad.abs().sum() > 0
    assert fine.stages[0][1][0].weight.grad.abs().sum() > 0
    assert fine.stages[1][0][0].weight.grad is None


def test_first_stride_is_checked():
    with pytest.raises(ConfigError, match=r"model.first_stride is 2; expected one of \[4, 8\]"):
        cfg("shapes", "model.first_stride=2")
