"""anchors analyze / fit: numbers against a brute-force computation, the search's contract."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from reference_impl import ref_iou, ref_match, ref_priors
from ssdlib.anchors import fast_best_iou, fit_priors
from ssdlib.boxes import cxcywh_to_xyxy
from ssdlib.cli import main
from ssdlib.config import load_config
from ssdlib.priors import generate_priors, priors_per_map

CLASSES = ["circle", "square", "triangle", "star", "hexagon"]


def _random_boxes(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=g)
    wh = torch.rand(n, 2, generator=g) ** 2 * 0.7 + 0.01
    return torch.cat([centre - wh / 2, centre + wh / 2], 1).clamp(0, 1)


@pytest.mark.parametrize("name", ["shapes", "ssd300_voc"])
def test_fast_best_iou_equals_the_brute_force(name):
    cfg = load_config(name)
    boxes = _random_boxes(1000, seed=1)
    brute = ref_iou(boxes.double(), cxcywh_to_xyxy(generate_priors(cfg.priors)).double()).amax(1)
    fast = torch.from_numpy(fast_best_iou(boxes.numpy(), cfg.priors))
    assert torch.allclose(fast, brute, atol=1e-5)  # densify (shapes) and clipping included


def _voc_folder(root: Path, seed: int = 0, images: int = 12, odd_shapes: bool = False) -> Path:
    """VOC2007/trainval with non-square images (the test resize squashes them), difficult
    objects, tiny objects (forced matches) and pairs sharing a best prior."""
    g = torch.Generator().manual_seed(seed)
    voc = root / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(images):
        w, h = (200, 120) if i % 2 else (90, 150)
        Image.new("RGB", (w, h), (90, 90, 90)).save(voc / "JPEGImages" / f"{i:03d}.jpg")
        objs = []
        for k in range(1 + i % 5):
            bw = float(torch.randint(3, w // 2, (1,), generator=g))
            bh = bw / 5 if odd_shapes and k % 2 == 0 else float(torch.randint(3, h // 2, (1,), generator=g))
            x = float(torch.randint(1, int(w - bw), (1,), generator=g))
            y = float(torch.randint(1, max(int(h - bh), 2), (1,), generator=g))
            objs.append((CLASSES[k % 5], (x, y, x + bw, y + bh), k == 3))
        if i == 0:  # two near-identical tiny boxes: they compete for one best prior
            objs += [("star", (40, 40, 43, 43), False), ("star", (40, 40, 43, 44), False)]
        body = "".join(
            f"<object><name>{n}</name><difficult>{int(d)}</difficult><bndbox><xmin>{b[0]:g}</xmin>"
            f"<ymin>{b[1]:g}</ymin><xmax>{b[2]:g}</xmax><ymax>{b[3]:g}</ymax></bndbox></object>"
            for n, b, d in objs
        )
        (voc / "Annotations" / f"{i:03d}.xml").write_text(
            f"<annotation><size><width>{w}</width><height>{h}</height></size>{body}</annotation>")
        ids.append(f"{i:03d}")
    (voc / "ImageSets/Main/trainval.txt").write_text("\n".join(ids) + "\n")
    return root


def _config(tmp_path: Path, root: Path, **priors) -> Path:
    data = yaml.safe_load((Path(__file__).parents[1] / "ssdlib/configs/shapes.yaml").read_text())
    data["data"].update(dataset="voc", root=str(root), train_splits=["2007/trainval"])
    data["priors"].update(priors)
    data["model"]["width"] = 0.25
    data["train"].update(max_iter=1, batch_size=2, device="cpu", amp="off", checkpoint_period=10)
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _independent(root: Path, cfg) -> dict:
    """From the files: XML -> 0-based pixel boxes (the devkit's -1) -> / (W, H); priors by the
    reference loops; IoU and matching by the reference code."""
    p = cfg.priors
    priors = ref_priors(p.image_size, p.feature_maps, p.strides, p.min_sizes, p.max_sizes,
                        p.aspect_ratios, p.clip)  # fmt: skip
    corners = torch.cat([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], 1)
    voc = root / "VOCdevkit" / "VOC2007"
    best, positives, sizes = [], [], []
    for stem in (voc / "ImageSets/Main/trainval.txt").read_text().split():
        tree = ET.parse(voc / "Annotations" / f"{stem}.xml").getroot()
        w, h = int(tree.findtext("size/width")), int(tree.findtext("size/height"))
        boxes = []
        for obj in tree.iter("object"):
            if obj.findtext("difficult") == "1":
                continue
            b = [float(obj.findtext(f"bndbox/{t}")) - 1 for t in ("xmin", "ymin", "xmax", "ymax")]
            boxes.append([b[0] / w, b[1] / h, b[2] / w, b[3] / h])
        if not boxes:
            continue
        gt = torch.tensor(boxes)
        best += ref_iou(gt, corners).amax(1).tolist()
        labels, _ = ref_match(gt, torch.arange(1, len(gt) + 1), priors, cfg.train.iou_threshold)
        positives += [int((labels == k + 1).sum()) for k in range(len(gt))]
        sizes += [math.sqrt((b[2] - b[0]) * (b[3] - b[1])) * p.image_size for b in boxes]
    t = cfg.train.iou_threshold
    return {"best": best, "positives": positives, "sizes": sizes,
            "coverage": sum(v >= t for v in best) / len(best),
            "forced_only": sum(v < t and q > 0 for v, q in zip(best, positives))}  # fmt: skip


def test_analyze_matches_an_independent_computation(tmp_path, capsys):
    root = _voc_folder(tmp_path / "data")
    config = _config(tmp_path, root, densify=[])  # the reference priors have no densify
    out = tmp_path / "report.json"
    assert main(["anchors", "analyze", "--config", str(config), "--json", str(out),
                 "--plot", str(tmp_path / "cov.png")]) == 0  # fmt: skip
    assert "coverage (best IoU >= threshold)" in capsys.readouterr().out
    report = json.loads(out.read_text())
    ref = _independent(root, load_config(config))
    assert report["num_objects"] == len(ref["best"]) > 20
    assert report["coverage"] == pytest.approx(ref["coverage"], abs=1e-9)
    assert report["mean_best_iou"] == pytest.approx(sum(ref["best"]) / len(ref["best"]), abs=1e-5)
    objects = report["objects"]
    assert [o[2] for o in objects] == pytest.approx(ref["best"], abs=1e-4)
    assert [o[3] for o in objects] == ref["positives"]
    assert report["forced_only"] == ref["forced_only"] > 0
    assert report["no_positive"] == sum(q == 0 for q in ref["positives"]) >= 1  # the tiny pair
    for b in report["by_size"]:
        lo, hi = b["range"][0], b["range"][1] or math.inf
        assert b["count"] == sum(lo <= s < hi for s in ref["sizes"]), b
    assert sum(b["count"] for b in report["by_aspect"]) == report["num_objects"]
    assert (tmp_path / "cov.png").stat().st_size > 10_000


def test_fit_on_a_voc_folder_improves_coverage_within_budget_and_trains(tmp_path, capsys):
    root = _voc_folder(tmp_path / "data", images=30, odd_shapes=True)  # many 5:1 boxes
    config = _config(tmp_path, root)
    fitted = tmp_path / "fitted.yaml"
    args = ["anchors", "fit", "--config", str(config), "--out", str(fitted), "--json",
            str(tmp_path / "fit.json")]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "before" in text and "after" in text
    fit = json.loads((tmp_path / "fit.json").read_text())
    before, after = fit["before"], fit["after"]
    assert after["coverage"] > before["coverage"]
    assert after["num_priors"] <= fit["budget"] == int(before["num_priors"] * 1.1)
    first = fitted.read_text()
    assert main(args) == 0 and fitted.read_text() == first  # deterministic
    cfg = load_config(fitted)
    assert cfg.priors.feature_maps == load_config(config).priors.feature_maps
    assert main(["train", "--config", str(fitted), "--output", str(tmp_path / "run"),
                 "--no-progress"]) == 0  # fmt: skip
    assert list((tmp_path / "run").glob("model_*.pth"))


def test_fit_on_shapes_is_at_least_as_good_and_respects_a_budget():
    from ssdlib.anchors.coverage import dataset_objects
    from ssdlib.engine.datasets import build_split_dataset

    cfg = load_config("shapes")
    images = dataset_objects(build_split_dataset(cfg, "train"), max_images=300)
    boxes = torch.cat(images).numpy()
    result = fit_priors(boxes, cfg.priors, cfg.train.iou_threshold)
    assert result.after[0] >= result.before[0] and result.after[2] <= result.budget
    exact = ref_iou(torch.from_numpy(boxes).double(),
                    cxcywh_to_xyxy(generate_priors(result.priors)).double()).amax(1)
    coverage = float((exact >= cfg.train.iou_threshold).double().mean())
    assert coverage == pytest.approx(result.after[0], abs=1e-3)
    small = fit_priors(boxes, cfg.priors, cfg.train.iou_threshold, budget=3000)
    assert sum(priors_per_map(small.priors)) <= 3000
