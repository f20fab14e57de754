"""Weight conversion and loading: torchvision VGG16 / SSD300, lufficc/SSD and amdegroot/ssd.pytorch
checkpoints, safe loading and downloads. Offline: random weights, a local HTTP server."""

from __future__ import annotations

import functools
import http.server
import math
import os
import pickle
import socket
import threading
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torchvision.models.detection import ssd300_vgg16
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.image_list import ImageList
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers

import ssdlib.model as M
from ssdlib.boxes import decode
from ssdlib.config import CAFFE_PIXEL_MEAN, VOC_CLASS_NAMES, load_config
from ssdlib.io import CheckpointError, UnsafeCheckpointError, load_checkpoint_file
from ssdlib.model import VGG16Backbone, build_model, ssd_from_reference_checkpoint
from ssdlib.model import build as B
from ssdlib.model import pretrained as W
from ssdlib.model.pretrained import sha256_of
from ssdlib.postprocess import detect
from ssdlib.priors import generate_priors

# --- torchvision SSD300 --------------------------------------------------------------------


def vgg16_features_only() -> SimpleNamespace:
    """``vgg16(weights=None)`` without its classifier, initialised as torchvision's VGG does."""
    features = make_layers(vgg_cfgs["D"])
    for m in features.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            torch.nn.init.zeros_(m.bias)
    return SimpleNamespace(features=features)


@pytest.fixture(scope="module")
def tv_ssd():
    torch.manual_seed(0)
    # ssd300_vgg16 keeps only vgg16().features: skip initialising the 120M-parameter classifier
    # it would throw away (4 s); every module of the SSD is torchvision's own.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torchvision.models.detection.ssd, "vgg16", lambda **_: vgg16_features_only())
        model = ssd300_vgg16(weights=None, weights_backbone=None).eval()
    with torch.no_grad():
        for conv in model.head.classification_head.module_list:
            conv.bias.view(-1, 91)[:, 0] += 7.0  # fewer candidates: keeps NMS fast
        for conv in model.head.regression_head.module_list:
            conv.weight.mul_(3.0)  # larger offsets
    return model


@pytest.fixture(scope="module")
def converted(tv_ssd):
    return M.ssd300_from_torchvision(tv_ssd.state_dict())


def tv_anchors(tv_ssd, batch: int) -> list[torch.Tensor]:
    """torchvision's default boxes (pixels, xyxy) for a 300x300 batch; only shapes are used."""
    images = ImageList(torch.zeros(batch, 3, 300, 300), [(300, 300)] * batch)
    maps = [torch.zeros(batch, 1, f, f) for f in (38, 19, 10, 5, 3, 1)]
    return tv_ssd.anchor_generator(images, maps)


def _order(scores, labels, boxes) -> list[int]:
    """Sort by (score, label, x1) so exact score ties cannot reorder a comparison."""
    keys = torch.stack([scores.double(), labels.double(), boxes[:, 0].double()], 1).tolist()
    return sorted(range(len(keys)), key=lambda i: [-v for v in keys[i]])


def assert_same_detections(tv_dets, ours, atol=1e-5, size: int = 300):
    """torchvision's detections (pixels of a ``size`` square) equal ssdlib's (relative)."""
    for d, m in zip(tv_dets, ours, strict=True):
        assert len(m) == len(d["scores"]) > 0
        i, j = _order(d["scores"], d["labels"], d["boxes"] / size), _order(m.scores, m.labels, m.boxes)
        torch.testing.assert_close(m.scores[j], d["scores"][i], atol=0, rtol=0)
        assert torch.equal(m.labels[j], d["labels"][i])
        torch.testing.assert_close(m.boxes[j], d["boxes"][i] / size, atol=atol, rtol=0)


def test_coco_categories_are_torchvisions():
    from torchvision.models._meta import _COCO_CATEGORIES

    assert list(M.COCO_V1_CATEGORIES) == _COCO_CATEGORIES
    cfg = load_config(B.TORCHVISION_CONFIG)
    assert cfg.data.class_names == _COCO_CATEGORIES[1:]
    assert cfg.input.pixel_mean == pytest.approx([0.48235 * 255, 0.45882 * 255, 0.40784 * 255])


def test_priors_equal_torchvision_default_boxes(tv_ssd, converted):
    ours = converted.priors
    theirs = tv_ssd.anchor_generator._grid_default_boxes(
        [[f, f] for f in (38, 19, 10, 5, 3, 1)], [300, 300]
    )  # (P, 4) cx, cy, w, h relative, clamped w/h only
    assert ours.shape == theirs.shape == (8732, 4)
    torch.testing.assert_close(ours, theirs, atol=1e-7, rtol=0)
    # ssdlib's own rule (clamp cx, cy too) differs exactly where a centre is past the border:
    # the last row and column of the 10x10 map (stride 32: 9.5 * 32 / 300 = 1.0133).
    config_priors = build_model(load_config(B.TORCHVISION_CONFIG)).priors
    differs = (config_priors - theirs).abs().amax(1) > 1e-6
    outside = (theirs[:, :2] > 1).any(1)
    assert torch.equal(differs, outside) and int(outside.sum()) == (10 + 10 - 1) * 6
    # And the pixel xyxy anchors the post-processing uses.
    xyxy = torch.cat([ours[:, :2] - ours[:, 2:] / 2, ours[:, :2] + ours[:, 2:] / 2], 1) * 300
    torch.testing.assert_close(xyxy, tv_anchors(tv_ssd, 1)[0], atol=1e-4, rtol=0)


def test_forward_and_detections_match_torchvision(tv_ssd, converted):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 300, 300) * 20  # already normalised (Caffe-like magnitudes)
    with torch.no_grad():
        out = tv_ssd.head(list(tv_ssd.backbone(x).values()))
        cls_logits, box_deltas = converted(x)
    assert cls_logits.shape == out["cls_logits"].shape == (2, 8732, 91)
    torch.testing.assert_close(cls_logits, out["cls_logits"], atol=1e-5, rtol=0)
    torch.testing.assert_close(box_deltas, out["bbox_regression"], atol=1e-5, rtol=0)

    probs = torch.softmax(cls_logits, -1)[..., 1:]
    assert probs.max() > 0.5 and ((probs > 0.01).sum(1) > 400).any()  # confident; top-k bites
    tv_dets = tv_ssd.postprocess_detections(out, tv_anchors(tv_ssd, 2), [(300, 300)] * 2)
    assert_same_detections(tv_dets, converted.predict(x))


def test_postprocess_matches_torchvision_on_hard_cases(tv_ssd, converted):
    """Synthetic head outputs: >400 candidates per class, scores around the threshold, heavy
    overlap (NMS), and offsets past torchvision's log(1000/16) size clamp."""
    g = torch.Generator().manual_seed(2)
    cls = torch.randn(2, 8732, 91, generator=g) * 2
    cls[..., 0] += 13.0  # most scores near or under the 0.01 threshold ...
    cls[:, :700, 1] += 10.0  # ... but class 1 has > 400 candidates on overlapping small priors
    reg = torch.randn(2, 8732, 4, generator=g)
    # exp(25 * 0.2) > 1000/16, so torchvision clamps the size; moving the centre 40 prior widths
    # keeps the clamped box from covering the whole image after clipping.
    reg[:, ::20, 0], reg[:, ::20, 2] = 400.0, 25.0
    candidates = (torch.softmax(cls, -1)[..., 1:] > 0.01).sum(1)  # (B, C)
    assert (candidates[:, 0] > 400).all() and candidates[:, 1:].sum() > 200
    out = {"cls_logits": cls, "bbox_regression": reg}
    tv_dets = tv_ssd.postprocess_detections(out, tv_anchors(tv_ssd, 2), [(300, 300)] * 2)
    assert_same_detections(tv_dets, detect(cls, reg, converted.priors, **converted.postprocess))
    # Without the clamp the boxes differ: the clamp is what makes these equal.
    unclamped = detect(cls, reg, converted.priors, **{**converted.postprocess, "max_log_scale": None})
    with pytest.raises(AssertionError):
        assert_same_detections(tv_dets, unclamped)


def test_decode_clamp_equals_torchvision_box_coder():
    g = torch.Generator().manual_seed(3)
    priors = torch.rand(500, 4, generator=g) * 0.5 + 0.1
    deltas = torch.randn(500, 4, generator=g) * 15
    ours = decode(deltas, priors, (0.1, 0.2), max_log_scale=M.convert.TORCHVISION_MAX_LOG_SCALE)
    anchors = torch.cat([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], 1)
    theirs = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0)).decode_single(deltas, anchors * 300) / 300
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(decode(deltas, priors), theirs, atol=1e-3)  # default: no clamp


def test_torchvision_ssd_rejects_other_state_dicts():
    with pytest.raises(CheckpointError, match="not a torchvision ssd300_vgg16"):
        M.state_dict_from_torchvision_ssd({"backbone.body.conv1.weight": torch.zeros(1)})


# --- ImageNet VGG16 backbone ---------------------------------------------------------------


@pytest.fixture(scope="module")
def vgg16_state():
    """Random torchvision vgg16 weights (He-scaled) with every real key and shape."""
    torch.manual_seed(4)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.vgg16(weights=None).state_dict().items()}
    return {k: torch.randn(s) * (math.sqrt(2 / math.prod(s[1:])) if len(s) > 1 else 0.1)
            for k, s in shapes.items()}  # fmt: skip


def test_vgg16_decimation_on_real_shapes(vgg16_state):
    sd = vgg16_state
    out = M.vgg16_reduced_from_torchvision(sd)
    fc6 = sd["classifier.0.weight"].view(4096, 512, 7, 7)
    assert torch.equal(out["extra.0.7.1.weight"], fc6[::4, :, ::3, ::3])
    assert out["extra.0.7.1.weight"].shape == (1024, 512, 3, 3)
    assert torch.equal(out["extra.0.7.1.bias"], sd["classifier.0.bias"][::4])
    assert torch.equal(out["extra.0.7.3.weight"][:, :, 0, 0], sd["classifier.3.weight"][::4, ::4])
    assert torch.equal(out["extra.0.7.3.bias"], sd["classifier.3.bias"][::4])
    assert torch.equal(out["features.21.weight"], sd["features.21.weight"])  # conv4_3
    assert torch.equal(out["extra.0.1.weight"], sd["features.24.weight"])  # conv5_1
    assert torch.equal(out["extra.0.5.weight"], sd["features.28.weight"])  # conv5_3

    backbone = VGG16Backbone(300)
    missing, unexpected = backbone.load_state_dict(out, strict=False)
    assert not unexpected and all(k.startswith(("l2norm", "extra.1", "extra.2", "extra.3",
                                                "extra.4")) for k in missing)  # fmt: skip
    # conv1_1..conv4_3 then compute what torchvision's VGG16 computes (224 px: pool3's ceil mode
    # changes nothing), and conv6 sees fc6's taps.
    vgg_features = make_layers(vgg_cfgs["D"])  # torchvision's vgg16().features
    vgg_features.load_state_dict({k[9:]: v for k, v in sd.items() if k.startswith("features.")})
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(backbone.features(x), vgg_features[:23](x), atol=1e-5, rtol=1e-5)


def test_imagenet_features_layout(vgg16_state):
    nan = torch.tensor(math.nan)  # IMAGENET1K_FEATURES: classifier stored, all NaN
    nan_classifier = {k: (nan.expand(v.shape) if k.startswith("classifier") else v)
                      for k, v in vgg16_state.items()}  # fmt: skip
    features_only = {k: v for k, v in vgg16_state.items() if k.startswith("features")}
    for sd in (nan_classifier, features_only):
        out = M.vgg16_reduced_from_torchvision(sd)
        assert len(out) == 26 and not any(k.startswith("extra.0.7") for k in out)
        assert torch.equal(out["features.0.weight"], vgg16_state["features.0.weight"])


def test_vgg16_conversion_rejects_other_layouts(vgg16_state):
    with pytest.raises(CheckpointError, match=r"features\.0\.weight is missing"):
        M.vgg16_reduced_from_torchvision({"conv1.weight": torch.zeros(64, 3, 7, 7)})
    bad = {**vgg16_state, "features.28.weight": torch.zeros(256, 512, 3, 3)}
    with pytest.raises(CheckpointError, match=r"features\.28\.weight is \(256, 512, 3, 3\)"):
        M.vgg16_reduced_from_torchvision(bad)


def test_fold_input_normalization_matches_imagenet_standardisation(vgg16_state):
    w, b = vgg16_state["features.0.weight"], vgg16_state["features.0.bias"]
    pixels = torch.rand(1, 3, 32, 32) * 255
    mean, std = torch.tensor(W.IMAGENET_MEAN_255), torch.tensor(W.IMAGENET_STD_255)
    expected = F.conv2d((pixels - mean.view(3, 1, 1)) / std.view(3, 1, 1), w, b, padding=1)
    w2, b2 = M.fold_input_normalization(w, b, W.IMAGENET_MEAN_255, W.IMAGENET_STD_255,
                                        CAFFE_PIXEL_MEAN, (1.0, 1.0, 1.0))  # fmt: skip
    got = F.conv2d(pixels - torch.tensor(CAFFE_PIXEL_MEAN).view(3, 1, 1), w2, b2, padding=1)
    # Exact away from the zero padding (border pixels see padding in different units).
    torch.testing.assert_close(got[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-4, rtol=1e-5)


# --- downloads -----------------------------------------------------------------------------


@pytest.fixture
def http_dir(tmp_path):
    """Serve tmp_path/www on 127.0.0.1; yields (directory, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def tiny_vgg16_file(vgg16_state, directory):
    """A vgg16 state dict whose big tensors are stride-0 expansions (the file stays ~1 MB but
    every shape is real), saved under torchvision's '<name>-<sha256 prefix>.pth' naming."""
    torch.manual_seed(5)
    sd = {k: (torch.randn(1, *v.shape[1:]).expand(v.shape) if v.dim() > 1 else torch.randn(v.shape))
          for k, v in vgg16_state.items()}  # fmt: skip
    tmp = directory / "upload.pth"
    torch.save(sd, tmp)
    path = directory / f"vgg16-{sha256_of(tmp)[:8]}.pth"
    tmp.rename(path)
    return sd, path.name


def test_download_into_hub_cache_then_offline(vgg16_state, http_dir, tmp_path, monkeypatch):
    root, base = http_dir
    sd, name = tiny_vgg16_file(vgg16_state, root)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(W, "weight_url", lambda kind: f"{base}/{name}")
    # Through the config, as training does: ssd300_voc asks for "imagenet" weights.
    model = build_model(load_config("ssd300_voc", ["model.backbone_weights=imagenet"]))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / name
    assert cached.is_file()
    vgg = model.backbone
    fc6 = sd["classifier.0.weight"].reshape(4096, 512, 7, 7)[::4, :, ::3, ::3]
    assert torch.equal(vgg.extra[0][7][1].weight, fc6)
    assert torch.equal(vgg.extra[0][1].weight, sd["features.24.weight"])
    w0, b0 = M.fold_input_normalization(sd["features.0.weight"], sd["features.0.bias"],
                                        W.IMAGENET_MEAN_255, W.IMAGENET_STD_255,
                                        CAFFE_PIXEL_MEAN, (1.0, 1.0, 1.0))  # fmt: skip
    assert torch.equal(vgg.features[0].weight, w0) and torch.equal(vgg.features[0].bias, b0)
    # Cached: works with the server gone.
    (root / name).unlink()
    backbone = VGG16Backbone(300)
    W.load_pretrained_backbone(backbone, "imagenet_features", progress=False)
    assert torch.equal(backbone.features[2].weight, sd["features.2.weight"])


def test_download_hash_mismatch_leaves_nothing(vgg16_state, http_dir, tmp_path, monkeypatch):
    root, base = http_dir
    _, name = tiny_vgg16_file(vgg16_state, root)
    (root / name).rename(root / "vgg16-00000000.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(W, "weight_url", lambda kind: f"{base}/vgg16-00000000.pth")
    with pytest.raises(RuntimeError, match="hash"):
        W.load_pretrained_backbone(VGG16Backbone(300), "imagenet", progress=False)
    assert not list((tmp_path / "torch" / "hub" / "checkpoints").iterdir())


def test_offline_error_says_where_to_put_the_file(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(W, "weight_url", lambda kind: f"http://127.0.0.1:{port}/vgg16-397923af.pth")
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "vgg16-397923af.pth"
    with pytest.raises(ConnectionError) as info:
        W.load_pretrained_backbone(VGG16Backbone(300), "imagenet", progress=False)
    message = str(info.value)
    assert f"cannot download vgg16-397923af.pth from 127.0.0.1:{port}: offline?" in message
    assert f"put the file at {expected}" in message
    with pytest.raises(ConnectionError, match="offline"):
        M.pretrained_model("torchvision-coco", progress=False)


def test_pretrained_model_reads_a_torchvision_checkpoint_file(tv_ssd, tmp_path):
    path = tmp_path / "ssd300_vgg16_coco.pth"
    torch.save(tv_ssd.state_dict(), path)
    model, names = M.pretrained_model(str(path))
    assert names == list(M.COCO_V1_CATEGORIES[1:]) and model.num_classes == 90
    assert model.postprocess["max_log_scale"] == pytest.approx(math.log(1000 / 16))
    assert torch.equal(model.backbone.l2norm.weight, tv_ssd.backbone.scale_weight)


# --- safety --------------------------------------------------------------------------------


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_checkpoint_is_refused(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "vgg_ssd300_voc0712.pth"
    payload = {"model": {"backbone.l2_norm.weight": torch.ones(3)}, "extra": _Evil(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2)  # torch.load's default: no warning
    for load in (load_checkpoint_file, ssd_from_reference_checkpoint,
                 lambda p: M.pretrained_model(str(p))):  # fmt: skip
        with pytest.raises(UnsafeCheckpointError, match=f"{path}: refused to load"):
            load(path)
    assert not marker.exists()


def test_load_checkpoint_file_errors(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_checkpoint_file(junk)
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(2), tensor)
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_checkpoint_file(tensor)


# --- lufficc/SSD and amdegroot/ssd.pytorch -------------------------------------------------

# Their VGG list (add_vgg with vgg_base['300'] + pool5, conv6, relu, conv7, relu): per index,
# ("conv", padding, dilation) | ("relu",) | ("pool", kernel, stride, padding, ceil).
_REF_VGG = [("conv", 1, 1), ("relu",), ("conv", 1, 1), ("relu",), ("pool", 2, 2, 0, False),
            ("conv", 1, 1), ("relu",), ("conv", 1, 1), ("relu",), ("pool", 2, 2, 0, False),
            ("conv", 1, 1), ("relu",), ("conv", 1, 1), ("relu",), ("conv", 1, 1), ("relu",),
            ("pool", 2, 2, 0, True),
            ("conv", 1, 1), ("relu",), ("conv", 1, 1), ("relu",), ("conv", 1, 1), ("relu",),
            ("pool", 2, 2, 0, False),
            ("conv", 1, 1), ("relu",), ("conv", 1, 1), ("relu",), ("conv", 1, 1), ("relu",),
            ("pool", 3, 1, 1, False), ("conv", 6, 6), ("relu",), ("conv", 0, 1), ("relu",)]  # fmt: skip
_REF_VGG_SHAPES = dict(zip(
    [i for i, op in enumerate(_REF_VGG) if op[0] == "conv"],
    [(64, 3, 3, 3), (64, 64, 3, 3), (128, 64, 3, 3), (128, 128, 3, 3), (256, 128, 3, 3),
     (256, 256, 3, 3), (256, 256, 3, 3), (512, 256, 3, 3), (512, 512, 3, 3), (512, 512, 3, 3),
     (512, 512, 3, 3), (512, 512, 3, 3), (512, 512, 3, 3), (1024, 512, 3, 3), (1024, 1024, 1, 1)],
))  # fmt: skip
# add_extras(extras_base['300'], 1024): (shape, stride, padding); F.relu after each.
_REF_EXTRAS = [((256, 1024, 1, 1), 1, 0), ((512, 256, 3, 3), 2, 1), ((128, 512, 1, 1), 1, 0),
               ((256, 128, 3, 3), 2, 1), ((128, 256, 1, 1), 1, 0), ((256, 128, 3, 3), 1, 0),
               ((128, 256, 1, 1), 1, 0), ((256, 128, 3, 3), 1, 0)]  # fmt: skip
_HEAD_IN, _BOXES = [512, 1024, 512, 256, 256, 256], [4, 6, 6, 6, 4, 4]
_LAYOUTS = {
    "lufficc": ("backbone.vgg.", "backbone.extras.", "backbone.l2_norm.weight",
                "box_head.predictor.cls_headers.", "box_head.predictor.reg_headers."),
    "amdegroot": ("vgg.", "extras.", "L2Norm.weight", "conf.", "loc."),
}  # fmt: skip


def reference_state_dict(layout: str, num_logits: int = 21, seed: int = 6) -> dict:
    """Random weights under the reference repository's exact key names and shapes."""
    vgg, extras, l2, cls, reg = _LAYOUTS[layout]
    g = torch.Generator().manual_seed(seed)

    def conv(prefix, shape):
        fan_in = shape[1] * shape[2] * shape[3]
        return {f"{prefix}weight": torch.randn(shape, generator=g) * math.sqrt(2 / fan_in),
                f"{prefix}bias": torch.randn(shape[0], generator=g) * 0.1}  # fmt: skip

    sd = {l2: 20 + torch.rand(512, generator=g)}
    for i, shape in _REF_VGG_SHAPES.items():
        sd.update(conv(f"{vgg}{i}.", shape))
    for k, (shape, _, _) in enumerate(_REF_EXTRAS):
        sd.update(conv(f"{extras}{k}.", shape))
    for k, (c, n) in enumerate(zip(_HEAD_IN, _BOXES)):
        sd.update(conv(f"{cls}{k}.", (n * num_logits, c, 3, 3)))
        sd.update(conv(f"{reg}{k}.", (n * 4, c, 3, 3)))
    return sd


def reference_forward(sd: dict, layout: str, x: torch.Tensor, num_logits: int = 21):
    """The references' SSD forward, written from their layout with functional ops."""
    vgg, extras, l2, cls, reg = _LAYOUTS[layout]
    features = []
    for i, op in enumerate(_REF_VGG):
        if op[0] == "conv":
            x = F.conv2d(x, sd[f"{vgg}{i}.weight"], sd[f"{vgg}{i}.bias"], padding=op[1], dilation=op[2])
        elif op[0] == "relu":
            x = F.relu(x)
        else:
            x = F.max_pool2d(x, op[1], op[2], op[3], ceil_mode=op[4])
        if i == 22:  # conv4_3 + ReLU: L2Norm(512, 20) with eps 1e-10
            norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10
            features.append(sd[l2].view(1, -1, 1, 1) * x / norm)
    features.append(x)
    for k, (_, stride, padding) in enumerate(_REF_EXTRAS):
        x = F.relu(F.conv2d(x, sd[f"{extras}{k}.weight"], sd[f"{extras}{k}.bias"], stride, padding))
        if k % 2 == 1:
            features.append(x)

    def head(prefix, values):
        outs = [F.conv2d(f, sd[f"{prefix}{k}.weight"], sd[f"{prefix}{k}.bias"], padding=1)
                for k, f in enumerate(features)]  # fmt: skip
        return torch.cat([o.permute(0, 2, 3, 1).reshape(o.shape[0], -1, values) for o in outs], 1)

    return head(cls, num_logits), head(reg, 4)


@pytest.mark.parametrize("layout", ["lufficc", "amdegroot"])
def test_reference_checkpoint_forward_matches(layout, tmp_path):
    sd = reference_state_dict(layout)
    if layout == "lufficc":
        checkpoint = {"model": sd, "iteration": 120000}  # CheckPointer's file layout
    else:
        checkpoint = {f"module.{k}": v for k, v in sd.items()}  # saved from DataParallel
    path = tmp_path / f"{layout}.pth"
    torch.save(checkpoint, path)
    model, names = M.pretrained_model(str(path))
    assert names == list(VOC_CLASS_NAMES)
    # Same priors as the VOC config (the references' VOC SSD300 defaults).
    assert torch.equal(model.priors, generate_priors(load_config("ssd300_voc").priors))
    vgg, extras, l2, cls, reg = _LAYOUTS[layout]
    # Hand-mapped spot checks: conv6, conv7, conv10_2, L2Norm, a head.
    b = model.backbone
    assert torch.equal(b.extra[0][7][1].weight, sd[f"{vgg}31.weight"])
    assert torch.equal(b.extra[0][7][3].bias, sd[f"{vgg}33.bias"])
    assert torch.equal(b.extra[0][0].weight if hasattr(b.extra[0][0], "weight") else
                       b.extra[0][1].weight, sd[f"{vgg}24.weight"])  # fmt: skip
    assert torch.equal(b.extra[3][2].weight, sd[f"{extras}5.weight"])
    assert torch.equal(b.l2norm.weight, sd[l2])
    assert torch.equal(model.head.reg_heads[4].weight, sd[f"{reg}4.weight"])

    x = torch.randn(1, 3, 300, 300, generator=torch.Generator().manual_seed(7)) * 50
    with torch.no_grad():
        ours = model(x)
        theirs = reference_forward(sd, layout, x)
    for a, e in zip(ours, theirs, strict=True):
        assert a.shape == e.shape and e.abs().max() > 1
        torch.testing.assert_close(a, e, atol=1e-4, rtol=1e-4)


def test_reference_checkpoint_other_class_count():
    model = ssd_from_reference_checkpoint(reference_state_dict("amdegroot", num_logits=4))
    assert model.num_classes == 3 and model.head.cls_heads[1].out_channels == 6 * 4


def test_reference_checkpoint_errors():
    sd = reference_state_dict("lufficc")
    with pytest.raises(CheckpointError, match="unexpected key 'box_head.predictor.foo.weight'"):
        ssd_from_reference_checkpoint({**sd, "box_head.predictor.foo.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="not a lufficc/SSD"):
        ssd_from_reference_checkpoint({"model": {"backbone.body.weight": torch.zeros(1)}})
