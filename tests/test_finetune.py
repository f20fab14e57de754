"""train.init_weights: what is loaded and re-initialised, torchvision COCO weights through the
hub cache (random weights, no download), and fine-tuning beating training from scratch."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
import torch
import yaml

from ssdlib.config import ConfigError, config_from_dict, load_config
from ssdlib.data import ShapesDataset, write_yolo
from ssdlib.engine import train
from ssdlib.engine.finetune import apply_init_weights, transfer_weights
from ssdlib.model import build_model

SHAPES_YAML = Path(__file__).parents[1] / "ssdlib/configs/shapes.yaml"


def _tiny(tmp_path: Path, **sections) -> dict:
    data = yaml.safe_load(SHAPES_YAML.read_text())
    data["model"]["width"] = 0.25
    data["data"].update(num_train=2000, source_size=96, views=1, num_workers=0, augment="none")
    data["train"].update(batch_size=8, lr=0.02, warmup_iters=5, lr_steps=[1000], device="cpu",
                         amp="off", log_period=10, seed=0)  # fmt: skip
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return data


def test_transfer_loads_what_fits_and_names_the_class_head(tmp_path):
    five = config_from_dict(_tiny(tmp_path))
    two = config_from_dict(_tiny(tmp_path, model={"num_classes": 2}, data={"class_names": ["a", "b"]}))
    torch.manual_seed(1)
    source = build_model(five).state_dict()
    torch.manual_seed(2)
    target = build_model(two)
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    report = transfer_weights(target, source, "five.pth", 2)
    state = target.state_dict()
    assert report.reinitialised and all(k.startswith("head.cls_heads.") for k in report.reinitialised)
    assert all("2 classes" in why for why in report.reinitialised.values())
    assert "re-initialised head.cls_heads: 10 tensor(s), the config has 2 classes" in report.format()
    for key in report.loaded:
        assert torch.equal(state[key], source[key]), key
    for key in report.reinitialised:
        assert torch.equal(state[key], fresh[key]), key
    assert len(report.loaded) + len(report.reinitialised) == len(state)


def test_bad_sources_are_clear_errors(tmp_path):
    cfg = config_from_dict(_tiny(tmp_path, train={"init_weights": str(tmp_path / "nope.pth")}))
    with pytest.raises(ConfigError, match=r"init_weights .*nope\.pth.*expected one of"):
        apply_init_weights(build_model(cfg), cfg)
    # an ssdlib checkpoint of another architecture: nothing fits
    big = load_config("ssd300_voc", ["model.backbone_weights=none"])
    torch.save({"model": build_model(cfg).state_dict(), "config": cfg.to_dict()}, tmp_path / "light.pth")
    big.train.init_weights = str(tmp_path / "light.pth")
    with pytest.raises(ConfigError, match="no tensor fits model.name 'ssd300_vgg16'"):
        apply_init_weights(build_model(big), big)


def test_torchvision_coco_weights_from_the_hub_cache(tmp_path, monkeypatch, capsys):
    from torchvision.models.detection import ssd300_vgg16

    from ssdlib.model import hub_checkpoint_path, weight_url

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(0)
    tv_state = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=91).state_dict()
    path = hub_checkpoint_path(weight_url("torchvision-coco"))
    path.parent.mkdir(parents=True)
    torch.save(tv_state, path)
    overrides = ["train.init_weights=torchvision-coco", "model.backbone_weights=none",
                 "input.pixel_std=[58,57,57]"]  # not what the source was trained with
    cfg = load_config("ssd300_voc", overrides)
    model = build_model(cfg)
    report = apply_init_weights(model, cfg)
    state = model.state_dict()
    assert torch.equal(state["backbone.features.0.weight"], tv_state["backbone.features.0.weight"])
    reg = "head.reg_heads.0.weight"
    assert torch.equal(state[reg], tv_state["head.regression_head.module_list.0.weight"])
    assert sorted({k.rsplit(".", 1)[0] for k in report.reinitialised}) == [
        f"head.cls_heads.{i}" for i in range(6)]  # 21 classes here, 91 in COCO
    err = capsys.readouterr().err
    assert "re-initialised head.cls_heads" in err and "input.pixel_std [1.0, 1.0, 1.0]" in err
    assert "pixel_mean" not in err  # 123 vs 122.99925: the same


def _two_class_yolo(root: Path) -> Path:
    """Shapes test-split images relabelled to 2 classes: round (circle, hexagon) / angular."""

    class Relabelled(torch.utils.data.Dataset):
        def __init__(self):
            self.src = ShapesDataset("test", 96, 96, seed=5, keep_difficult=False)

        def __len__(self):
            return len(self.src)

        def __getitem__(self, i):
            image, target = self.src[i]
            round_ = (target["labels"] == 1) | (target["labels"] == 5)
            return image, {**target, "labels": torch.where(round_, 1, 2)}

    return write_yolo(root, {"train": Relabelled()}, ["round", "angular"])


def test_fine_tuning_to_another_class_count_learns_faster_than_from_scratch(tmp_path, one_thread):
    pre = train(config_from_dict(_tiny(tmp_path, train={"max_iter": 60, "checkpoint_period": 60})),
                tmp_path / "pre", progress=False)  # fmt: skip
    root = _two_class_yolo(tmp_path / "yolo")
    sections = {
        "model": {"num_classes": 2},
        "data": {"dataset": "yolo", "root": str(root), "train_splits": ["train"], "test_split": "train",
                 "class_names": ["round", "angular"]},
        "train": {"max_iter": 30, "checkpoint_period": 30},
    }  # fmt: skip
    scratch = train(config_from_dict(_tiny(tmp_path, **sections)), tmp_path / "scratch", progress=False)
    sections["train"]["init_weights"] = str(pre.checkpoint)
    tuned = train(config_from_dict(_tiny(tmp_path, **sections)), tmp_path / "tuned", progress=False)
    # Measured (2-core Xeon, 60 pretraining steps): first loss 12.6 vs 15.5 from scratch, mean
    # of the 30 steps 7.67 vs 8.92 (0.86), last 10 6.50 vs 7.18 (0.905); same data order and
    # seed, so only float rounding differs between CPUs: the margins below leave room for it.
    assert tuned.losses[0] < 0.9 * scratch.losses[0]
    assert statistics.mean(tuned.losses) < 0.93 * statistics.mean(scratch.losses)
    assert statistics.mean(tuned.losses[-10:]) < 0.96 * statistics.mean(scratch.losses[-10:])


def test_shapes_source_is_the_shipped_model_or_a_clear_error(tmp_path):
    try:
        from ssdlib.model.shipped import shipped_path

        shipped = shipped_path("shapes").is_file()
    except (ImportError, FileNotFoundError):
        shipped = False
    sections = {"model": {"width": 1.0, "num_classes": 2}, "data": {"class_names": ["a", "b"]},
                "train": {"init_weights": "shapes"}}  # fmt: skip
    cfg = config_from_dict(_tiny(tmp_path, **sections))
    model = build_model(cfg)
    if shipped:
        report = apply_init_weights(model, cfg)
        assert report.loaded and all(k.startswith("head.cls_heads.") for k in report.reinitialised)
    else:
        with pytest.raises(ConfigError, match="no shipped Shapes model in this install"):
            apply_init_weights(model, cfg)
