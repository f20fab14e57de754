"""Bad configs fail with one clear line (exit code 2 from the CLI) before any work starts:
no output folder, no checkpoint, no metrics. (tests/test_config.py checks load_config alone.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from reliability_helpers import coco_dict, coco_sections, good_jpeg, make_coco_root, tiny_config, write_config

from ssdlib.cli import main
from ssdlib.config import ConfigError
from ssdlib.engine import train
from ssdlib.engine.checkpoint import save_checkpoint
from ssdlib.engine.inference import load_model
from ssdlib.model import build_model


def _cli_train(config: Path, out: Path, *overrides: str) -> int:
    return main(["train", "--config", str(config), *overrides, "--output", str(out), "--no-progress"])


def _assert_one_line_error(capsys, *fragments: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        ({"train": {"lrr": 0.1}}, ["unknown key 'train.lrr'", "valid keys in train: batch_size"]),
        ({"optimiser": {"lr": 0.1}}, ["unknown key 'optimiser'"]),
        ({"train": {"batch_size": "four"}}, ["train.batch_size must be int, got 'four' (str)"]),
        ({"priors": {"clip": "yes"}}, ["priors.clip must be bool, got 'yes'"]),
        ({"train": {"lr_steps": 100}}, ["train.lr_steps must be list[int], got 100"]),
        ({"model": {"num_classes": 4}},
         ["model.num_classes is 4 but data.class_names has 5 names"]),
    ],
)  # fmt: skip
def test_bad_config_file_fails_before_any_work(tmp_path, capsys, edit, fragments):
    config = write_config(tmp_path / "bad.yaml")
    data = yaml.safe_load(config.read_text())
    for section, values in edit.items():
        data.setdefault(section, {}).update(values)
    config.write_text(yaml.safe_dump(data))
    assert _cli_train(config, tmp_path / "out") == 2
    _assert_one_line_error(capsys, "bad.yaml", *fragments)
    assert not (tmp_path / "out").exists()


def test_bad_override_fails_before_any_work(tmp_path, capsys):
    config = write_config(tmp_path / "ok.yaml")
    assert _cli_train(config, tmp_path / "out", "train.max_iter=ten") == 2
    _assert_one_line_error(capsys, "train.max_iter must be int, got 'ten'")
    assert _cli_train(config, tmp_path / "out", "max_iter=10") == 2
    _assert_one_line_error(capsys, "expected 'section.key=value'")
    assert not (tmp_path / "out").exists()


def test_dataset_with_another_class_count_fails_before_any_work(tmp_path, capsys):
    data = coco_dict(categories=["cat", "dog", "square"])  # 3 classes; the config has 5
    root = make_coco_root(tmp_path / "data", data, {"0.jpg": good_jpeg, "1.jpg": good_jpeg})
    config = write_config(tmp_path / "mine.yaml", **coco_sections(root))
    assert _cli_train(config, tmp_path / "out") == 2
    _assert_one_line_error(capsys, "has 3 classes", "model.num_classes is 5")
    assert not (tmp_path / "out").exists()


def test_checkpoint_with_another_class_count_fails_before_any_work(tmp_path, capsys):
    other = tiny_config(tmp_path, model={"num_classes": 3}, data={"class_names": ["a", "b", "c"]})
    out = tmp_path / "out"
    state = {"model": build_model(other).state_dict(), "config": other.to_dict(), "iteration": 2}
    save_checkpoint(state, out, 2)
    before = sorted(p.name for p in out.iterdir())
    config = write_config(tmp_path / "five.yaml")
    assert _cli_train(config, out) == 2  # resumes from out/ by default: refused
    _assert_one_line_error(capsys, "model_0000002.pth", "model.num_classes=3 but the config has 5")
    assert sorted(p.name for p in out.iterdir()) == before  # no metrics, no config.yaml
    with pytest.raises(ConfigError, match="num_classes=3 but the config has 5"):
        load_model(tiny_config(tmp_path), out / "model_0000002.pth")  # eval / demo
    # A bare state dict of another class count: the head shapes say so, also as a ConfigError.
    torch.save(build_model(other).state_dict(), tmp_path / "bare.pth")
    with pytest.raises(ConfigError, match="weights do not fit ssd_light with 5 classes"):
        load_model(tiny_config(tmp_path), tmp_path / "bare.pth")


def test_checkpoint_of_another_model_fails_before_any_work(tmp_path):
    out = tmp_path / "out"
    cfg = tiny_config(tmp_path)
    foreign = {**cfg.to_dict(), "model": {**cfg.to_dict()["model"], "name": "ssd300_vgg16"}}
    save_checkpoint({"model": {}, "config": foreign, "iteration": 2}, out, 2)
    with pytest.raises(ConfigError, match="checkpoint holds model 'ssd300_vgg16'"):
        train(cfg, out, progress=False)
    assert not (out / "metrics.jsonl").exists()
