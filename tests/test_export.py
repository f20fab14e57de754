"""ONNX export: onnxruntime's outputs equal PyTorch's for the light model, SSD300, SSD512 and SSDLite320 on
random seeded weights and for the shipped Shapes model on rendered test images (raw outputs within
1e-4 relative; detections: same labels, scores within 1e-4, boxes within 1e-3 px), at batch sizes
other than the one exported; the CLI round trip."""

from __future__ import annotations

import os

import pytest
import torch

from ssdlib.cli import main
from ssdlib.config import load_config
from ssdlib.model import build_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from ssdlib.export import DETECTION_OUTPUTS, RAW_OUTPUTS, OnnxDetector, export_onnx  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One torch thread: the test workers share the cores (and OpenMP barriers under load cost
    more than a second thread gains on these batches)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_model(config: str, seed: int = 0, background_bias: float = 0.0):
    """A seeded random model; ``background_bias`` raises the background logit so that fewer
    candidates pass the 0.01 threshold (keeps PyTorch's NMS of the big models cheap)."""
    torch.manual_seed(seed)
    cfg = load_config(config, ["model.backbone_weights=none"])
    model = build_model(cfg).eval()
    with torch.no_grad():
        for conv in model.head.cls_heads:
            conv = conv[-1] if isinstance(conv, torch.nn.Sequential) else conv  # SSDLite: dw + 1x1
            conv.bias.view(-1, model.num_classes + 1)[:, 0] += background_bias
    return model, cfg


def images(batch: int, size: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def assert_raw_equal(model, detector, x):
    with torch.no_grad():
        expected = model(x)
    got = detector(x)
    assert len(got) == 2
    for name, e, g in zip(RAW_OUTPUTS, expected, got):
        assert g.shape == e.shape and g.dtype == torch.float32, name
        err = (g - e).abs().max() / e.abs().max()
        assert err <= 1e-4, f"{name}: max error {err:.2e} of the largest value"


def assert_detections_equal(expected, got, size: int):
    assert len(got) == len(expected)
    for i, (e, g) in enumerate(zip(expected, got)):
        assert len(e) > 0, "the test needs detections to compare"
        assert torch.equal(g.labels, e.labels), f"image {i}: labels differ"
        torch.testing.assert_close(g.scores, e.scores, atol=1e-4, rtol=0, msg=f"image {i}: scores")
        torch.testing.assert_close(g.boxes * size, e.boxes * size, atol=1e-3, rtol=0,
                                   msg=f"image {i}: boxes (px)")  # fmt: skip


# --- the light model: both graphs, fp16, the CLI --------------------------------------------


@pytest.fixture(scope="module")
def shapes_model():
    return random_model("shapes")[0]


@pytest.fixture(scope="module")
def shapes_raw(shapes_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "shapes_raw.onnx"
    export_onnx(shapes_model, path, batch_size=3)
    return path


@pytest.fixture(scope="module")
def shapes_detections(shapes_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "shapes_det.onnx"
    export_onnx(shapes_model, path, postprocess=True, opset=13, class_names=["a", "b", "c", "d", "e"])
    return path


def test_raw_graph_is_valid_and_equals_forward_at_other_batch_sizes(shapes_model, shapes_raw):
    proto = onnx.load(shapes_raw)
    onnx.checker.check_model(proto, full_check=True)
    assert [o.name for o in proto.graph.output] == RAW_OUTPUTS
    detector = OnnxDetector(shapes_raw)  # exported at batch 3
    for batch in (1, 3, 4):
        x = images(batch, 160, seed=batch)
        assert_raw_equal(shapes_model, detector, x)
        assert_detections_equal(shapes_model.predict(x), detector.predict(x), 160)
    # The stored post-processing settings are the model's, and overridable as for predict.
    x = images(2, 160, seed=9)
    assert_detections_equal(shapes_model.predict(x, score_threshold=0.25, max_per_image=7),
                            detector.predict(x, score_threshold=0.25, max_per_image=7), 160)  # fmt: skip


def test_detection_graph_equals_predict(shapes_model, shapes_detections):
    proto = onnx.load(shapes_detections)
    onnx.checker.check_model(proto, full_check=True)
    assert [o.name for o in proto.graph.output] == DETECTION_OUTPUTS
    assert any(n.op_type == "NonMaxSuppression" for n in proto.graph.node)
    detector = OnnxDetector(shapes_detections)  # exported at batch 1
    assert detector.class_names == ["a", "b", "c", "d", "e"]
    for batch in (1, 3):
        x = images(batch, 160, seed=10 + batch)
        expected = shapes_model.predict(x)
        assert_detections_equal(expected, detector.predict(x), 160)
        boxes, scores, labels, counts = detector(x)
        assert boxes.shape == (batch, 100, 4) and labels.dtype == torch.int64
        assert counts.tolist() == [len(e) for e in expected]
    # A threshold above the graph's just drops rows; one below it is refused.
    x = images(2, 160, seed=20)
    assert_detections_equal(shapes_model.predict(x, score_threshold=0.26),
                            detector.predict(x, score_threshold=0.26), 160)  # fmt: skip
    fixed = shapes_model.postprocess["score_threshold"]  # the config's, baked into the graph
    with pytest.raises(ValueError, match=f"below the {fixed:g} fixed"):
        detector.predict(x, score_threshold=fixed / 2)


def test_detection_graph_pads_images_without_detections(shapes_model, tmp_path):
    model = random_model("shapes", seed=1)[0]
    model.postprocess.update(score_threshold=0.2, max_per_image=5, top_k_candidates=50, clip=True)
    path = export_onnx(model, tmp_path / "m.onnx", postprocess=True)
    x = torch.cat([images(2, 160, seed=3), torch.full((1, 3, 160, 160), -50.0)])
    expected = model.predict(x)
    boxes, scores, labels, counts = OnnxDetector(path)(x)
    assert [len(e) for e in expected] == counts.tolist()
    assert_detections_equal(expected[:2], OnnxDetector(path).predict(x)[:2], 160)
    for b, n in enumerate(counts.tolist()):
        assert (scores[b, n:] == 0).all() and (labels[b, n:] == 0).all() and (boxes[b, n:] == 0).all()


def test_fp16_export_halves_the_file_and_stays_close(shapes_model, shapes_raw, tmp_path):
    path = export_onnx(shapes_model, tmp_path / "half.onnx", dtype="fp16")
    assert os.path.getsize(path) < 0.6 * os.path.getsize(shapes_raw)
    x = images(2, 160, seed=5)
    with torch.no_grad():
        expected = shapes_model(x)
    for e, g in zip(expected, OnnxDetector(path)(x)):
        assert g.dtype == torch.float32
        assert (g - e).abs().max() <= 5e-3 * e.abs().max()


def test_bad_arguments_are_refused(shapes_model, tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        export_onnx(shapes_model, tmp_path / "m.onnx", dtype="int8")
    with pytest.raises(ValueError, match="opset"):
        export_onnx(shapes_model, tmp_path / "m.onnx", opset=9)
    assert not list(tmp_path.iterdir())
    with pytest.raises(FileNotFoundError, match="no such file"):
        OnnxDetector(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.onnx: not a loadable ONNX model"):
        OnnxDetector(tmp_path / "junk.onnx")


def test_cli_export_then_demo_through_onnxruntime(shapes_model, tmp_path, capsys):
    from PIL import Image

    ckpt = tmp_path / "model.pth"
    torch.save({"model": shapes_model.state_dict()}, ckpt)
    out = tmp_path / "model.onnx"
    assert main(["export", "--config", "shapes", "--ckpt", str(ckpt), "--out", str(out),
                 "--postprocess", "--opset", "16"]) == 0  # fmt: skip
    assert "opset 16" in capsys.readouterr().err
    folder = tmp_path / "images"
    folder.mkdir()
    gen = torch.Generator().manual_seed(0)
    for i in range(3):
        pixels = torch.randint(0, 256, (120 + 20 * i, 160, 3), dtype=torch.uint8, generator=gen)
        Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")
    summaries = []
    for source in (["--onnx", str(out)], ["--config", "shapes", "--ckpt", str(ckpt)]):
        pictures = tmp_path / f"pictures{len(summaries)}"
        args = ["demo", *source, "--images", str(folder), "--out", str(pictures), "--score-threshold", "0.2"]
        assert main(args) == 0
        summaries.append(capsys.readouterr().err.strip().replace(str(pictures), "OUT"))
        assert len(list(pictures.glob("*.jpg"))) == 3
    assert summaries[0] == summaries[1] and " 0 detections" not in summaries[0]

    assert main(["demo", "--onnx", str(tmp_path / "nope.onnx"), "--images", str(folder),
                 "--out", str(tmp_path / "p")]) == 1  # fmt: skip
    assert "error: --onnx" in capsys.readouterr().err


# --- SSD300 VOC and SSD512: one export each -------------------------------------------------


@pytest.fixture(scope="module")
def ssd300(tmp_path_factory):
    model, _ = random_model("ssd300_voc", background_bias=6.0)
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "ssd300.onnx", postprocess=True)
    return model, OnnxDetector(path)


@pytest.fixture(scope="module")
def ssd512(tmp_path_factory):
    model, _ = random_model("ssd512_voc", seed=1, background_bias=6.0)
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "ssd512.onnx", batch_size=2)
    onnx.checker.check_model(str(path))
    return model, OnnxDetector(path)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3])
def test_ssd300_detection_graph_equals_predict(ssd300, batch):
    model, detector = ssd300
    x = images(batch, 300, seed=batch)
    assert_detections_equal(model.predict(x), detector.predict(x), 300)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3])
def test_ssd512_raw_graph_equals_forward(ssd512, batch):
    model, detector = ssd512
    x = images(batch, 512, seed=batch)
    assert_raw_equal(model, detector, x)
    assert_detections_equal(model.predict(x), detector.predict(x), 512)


def assert_same_detection_sets(expected, got, size: int):
    """As :func:`assert_detections_equal`, in any order: two scores tied to ~1e-7 may come out in
    either order from two runtimes (seen with SSDLite's 300 detections per image)."""
    assert len(got) == len(expected)
    for i, (e, g) in enumerate(zip(expected, got)):
        assert len(e) == len(g) > 0, f"image {i}: {len(e)} vs {len(g)} detections"
        twin = (e.labels[:, None] == g.labels[None]) & (
            (e.scores[:, None] - g.scores[None]).abs() <= 1e-4
        ) & ((e.boxes[:, None] - g.boxes[None]).abs().amax(-1) * size <= 1e-3)
        assert twin.any(1).all() and twin.any(0).all(), f"image {i}: detections differ"


@pytest.fixture(scope="module")
def ssdlite(tmp_path_factory):
    """SSDLite320 (VOC, random weights) exported twice: raw outputs, and detections."""
    model, _ = random_model("ssdlite320_voc", seed=2, background_bias=6.0)
    # With N(0, 0.03) weights and unit BN statistics the signal dies out and every box gets the
    # same scores (ties): measure the BN statistics on random images, as training would.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None  # a plain average over the calibration batches
        model.train()
        for seed in (10, 11):
            model(images(4, 320, seed=seed))
        model.eval()
    folder = tmp_path_factory.mktemp("onnx")
    raw = export_onnx(model, folder / "ssdlite_raw.onnx")
    detections = export_onnx(model, folder / "ssdlite.onnx", postprocess=True, batch_size=2)
    onnx.checker.check_model(str(detections))
    return model, OnnxDetector(raw), OnnxDetector(detections)


@pytest.mark.parametrize("batch", [1, 3])
def test_ssdlite_graphs_equal_forward_and_predict(ssdlite, batch):
    model, raw, detector = ssdlite
    x = images(batch, 320, seed=batch)
    assert_raw_equal(model, raw, x)
    assert_same_detection_sets(model.predict(x), detector.predict(x), 320)


def test_onnxruntime_bench_rows(shapes_model):
    from ssdlib.bench.export_rows import onnxruntime_rows
    from ssdlib.bench.rows import Settings

    rows = onnxruntime_rows(Settings(quick=True, repeats=1), shapes_model, images(2, 160, 0), 2)
    assert [r.name for r in rows] == ["onnxruntime_b1", "onnxruntime_b8"]
    assert all(r.ours_s > 0 and r.peer_s > 0 for r in rows)
    assert "quick: batch 2" in rows[1].note


# --- the shipped Shapes model on real test images --------------------------------------------


@pytest.mark.parametrize("postprocess", [False, True])
def test_shipped_model_exports_with_the_same_detections(postprocess, tmp_path):
    """Trained weights (float16 on disk, float32 here) on rendered test images: detections by
    onnxruntime through ``detect_images`` equal PyTorch's at batch 1 and 3, whatever batch the
    graph was exported with."""
    from ssdlib.data import ShapesDataset
    from ssdlib.engine.inference import detect_images
    from ssdlib.model import load_shipped

    model, cfg, _ = load_shipped("shapes")
    model = model.eval()
    path = tmp_path / "shapes.onnx"
    export_onnx(model, path, postprocess=postprocess, batch_size=2)
    detector = OnnxDetector(path)
    data = ShapesDataset("test", 4, image_size=160)
    settings = (cfg.input.image_size, cfg.input.pixel_mean, cfg.input.pixel_std)
    for batch in (1, 3):
        imgs = [data[k][0] for k in range(batch)]
        expected = detect_images(model, imgs, *settings, score_threshold=0.3)
        got = detect_images(detector, imgs, *settings, score_threshold=0.3)
        assert all(len(e.scores) > 0 for e in expected)  # a trained model finds the shapes
        for e, g in zip(expected, got):
            assert torch.equal(g.labels, e.labels)
            torch.testing.assert_close(g.scores, e.scores, atol=1e-4, rtol=0)
            torch.testing.assert_close(g.boxes, e.boxes, atol=1e-3, rtol=0)  # pixels
