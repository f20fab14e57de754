"""Config values checked by range, and YAML read within bounds (issue 20): each bad value is
one ``error:`` line naming the key (exit 2) before any work; hostile YAML (nested aliases,
deep nesting, huge files) fails fast in bounded memory with a bounded message."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
import yaml
from reliability_helpers import tiny_dict, write_config

from ssdlib.cli import main
from ssdlib.config import ConfigError, load_config
from ssdlib.config_checks import MAX_CONFIG_BYTES


def _train(config: Path, out: Path, *overrides: str) -> int:
    return main(["train", "--config", str(config), *overrides, "--output", str(out), "--no-progress"])


def _one_line(capsys, *fragments: str, limit: int = 600) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert len(err) < limit, len(err)
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.batch_size=0", "train.batch_size is 0; expected in 1..65536"),
        ("train.batch_size=-1", "train.batch_size is -1"),
        ("train.batch_size=1000000000000", "train.batch_size is 1000000000000"),
        ("train.checkpoint_period=0", "train.checkpoint_period is 0; expected > 0"),
        ("train.log_period=0", "train.log_period is 0; expected > 0"),
        ("priors.image_size=0", "priors.image_size is 0; expected > 0"),
        ("input.image_size=-3", "input.image_size is -3"),
        ("train.iou_threshold=.nan", "train.iou_threshold is nan; expected a finite number"),
        ("train.iou_threshold=1.5", "train.iou_threshold is 1.5; expected in (0, 1]"),
        ("train.iou_threshold=0", "train.iou_threshold is 0.0; expected in (0, 1]"),
        ("test.nms_threshold=.nan", "test.nms_threshold is nan"),
        ("test.score_threshold=2", "test.score_threshold is 2.0; expected in [0, 1]"),
        ("train.neg_pos_ratio=-1", "train.neg_pos_ratio is -1; expected > 0"),
        ("model.width=0", "model.width is 0.0; expected > 0"),
        ("priors.variances=[0,0]", "priors.variances is [0.0, 0.0]; expected > 0"),
        ("train.lr=.nan", "train.lr is nan; expected a finite number"),
        ("train.lr=-0.1", "train.lr is -0.1; expected > 0"),
        ("train.lr=.inf", "train.lr is inf"),
        ("train.max_iter=0", "train.max_iter is 0; expected > 0"),
        ("train.lr_steps=[30,10]", "train.lr_steps is [30, 10]; expected increasing"),
        ("train.device=bogus", "train.device is 'bogus'; expected auto, cpu, cuda"),
        ("train.device=cuda:x", "train.device is 'cuda:x'"),
        ("data.num_workers=-2", "data.num_workers is -2; expected >= 0"),
    ],
)  # fmt: skip
def test_out_of_range_values_fail_before_any_work(tmp_path, capsys, override, fragment):
    config = write_config(tmp_path / "c.yaml")
    assert _train(config, tmp_path / "out", override) == 2
    _one_line(capsys, fragment)
    assert not (tmp_path / "out").exists()


def test_1e_minus_3_is_a_float_in_overrides_and_files(tmp_path):
    cfg = load_config(write_config(tmp_path / "c.yaml"), ["train.lr=1e-3", "train.gamma=5E-1"])
    assert (cfg.train.lr, cfg.train.gamma) == (0.001, 0.5)
    path = tmp_path / "sci.yaml"
    path.write_text(yaml.safe_dump(tiny_dict()).replace("lr: 0.01", "lr: 2e-2"))
    assert load_config(path).train.lr == 0.02
    assert load_config(path, ["train.max_iter=1_000"]).train.max_iter == 1000  # ints stay ints
    with pytest.raises(ConfigError, match="train.max_iter must be int, got 1000.0"):
        load_config(path, ["train.max_iter=1e3"])


BOMB = "[" + ", ".join(
    f"&a{k} [" + ", ".join([f"*a{k - 1}" if k else "lol"] * 9) + "]" for k in range(9)
) + "]"  # 9 levels of 9 aliases each: 9**9 = 387 million strings once expanded


def test_alias_bomb_fails_fast_in_bounded_memory(tmp_path, capsys):
    assert len(BOMB) < 500
    config = write_config(tmp_path / "c.yaml")
    tracemalloc.start()
    tic = time.perf_counter()
    try:
        assert _train(config, tmp_path / "out", f"train.lr={BOMB}") == 2
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - tic < 10 and peak < 50 << 20, peak
    _one_line(capsys, "train.lr", "nested aliases")
    # The same in a config file, and as a value that is not the first one checked.
    text = yaml.safe_dump(tiny_dict()).replace("lr: 0.01", f"lr: {BOMB}")
    (tmp_path / "bomb.yaml").write_text(text)
    with pytest.raises(ConfigError, match="bomb.yaml: expands to more than"):
        load_config(tmp_path / "bomb.yaml")


def test_a_wrongly_typed_big_value_gives_a_short_message(tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml")
    big = "[" + ",".join(["[1,2,3,4,5,6,7,8]"] * 2000) + "]"
    assert _train(config, tmp_path / "out", f"train.lr={big}") == 2
    _one_line(capsys, "train.lr must be float, got [[1, 2, 3, 4, 5, 6, ...], [1, 2,", "...] (list)")
    assert _train(config, tmp_path / "out", "train.amp=" + "x" * 100_000) == 2
    _one_line(capsys, "train.amp is 'xxxxxxxx")


def test_deep_nesting_is_refused_without_recursion_error(tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml")
    assert _train(config, tmp_path / "out", "train.lr=" + "[" * 20_000 + "]" * 20_000) == 2
    _one_line(capsys, "train.lr", "nested deeper than 64 levels")
    deep = tmp_path / "deep.yaml"
    deep.write_text("train:\n  lr: " + "[" * 20_000 + "]" * 20_000 + "\n")
    assert _train(deep, tmp_path / "out") == 2
    _one_line(capsys, "deep.yaml", "nested deeper")


def test_huge_config_files_and_class_lists_are_refused_quickly(tmp_path, capsys):
    names = [f"class{k}" for k in range(MAX_CONFIG_BYTES // 8)]
    data = tiny_dict(data={"class_names": names}, model={"num_classes": len(names)})
    path = tmp_path / "huge.yaml"
    path.write_text(yaml.safe_dump(data, default_flow_style=True, width=1 << 30))
    assert path.stat().st_size > MAX_CONFIG_BYTES
    tic = time.perf_counter()
    assert _train(path, tmp_path / "out") == 2
    assert time.perf_counter() - tic < 5
    _one_line(capsys, "huge.yaml", "the limit is 1048576")
    (tmp_path / "binary.yaml").write_bytes(b"train:\n  lr: \xff\xfe\n")
    assert _train(tmp_path / "binary.yaml", tmp_path / "out") == 2
    _one_line(capsys, "binary.yaml: not a UTF-8 text file")


def test_a_long_class_list_within_the_limit_still_loads(tmp_path):
    names = [f"c{k}" for k in range(20_000)]  # ~200 KB of YAML: parsed in about a second
    path = write_config(tmp_path / "many.yaml", data={"class_names": names},
                        model={"num_classes": len(names)})  # fmt: skip
    assert len(load_config(path).data.class_names) == 20_000


def test_info_with_a_missing_config_is_one_line(tmp_path, capsys):
    assert main(["info", "--config", str(tmp_path / "nonexistent.yaml")]) == 2
    _one_line(capsys, "nonexistent.yaml", "no such file and not a built-in name")
