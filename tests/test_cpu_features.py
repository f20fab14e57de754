"""bf16 detection under the environment's ISA limits, the CLIs' one-line choice, the layout rule."""

import pytest
import torch

from ssdlib.engine import cpu_features as cf
from ssdlib.engine import trainer

LIMIT_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "SSDLIB_NO_BF16")
CPU = torch.device("cpu")


@pytest.fixture
def clean_env(monkeypatch):
    for name in LIMIT_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("name, value", [
    ("ONEDNN_MAX_CPU_ISA", "AVX2"), ("ONEDNN_MAX_CPU_ISA", "avx512_core"),
    ("DNNL_MAX_CPU_ISA", "AVX2_VNNI_2"), ("ATEN_CPU_CAPABILITY", "avx2"),
    ("ATEN_CPU_CAPABILITY", "default"), ("SSDLIB_NO_BF16", "1"),
])  # fmt: skip
def test_isa_limits_below_bf16_mean_no_native_bf16(clean_env, name, value):
    clean_env.setenv(name, value)
    native, why = cf.bf16_support()
    assert not native
    assert trainer.cpu_has_native_bf16() is False
    assert trainer.resolve_amp("auto", CPU) is None  # the real chain, nothing patched
    if cf._hardware_bf16():  # the reason names the setting that holds PyTorch back
        assert name.removeprefix("DNNL_").removeprefix("ONEDNN_").split("_")[0] in why.upper()
    assert cf.cpu_kind() not in ("amx", "avx512_bf16")


@pytest.mark.parametrize("name, value", [
    ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16"), ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX"),
    ("ONEDNN_MAX_CPU_ISA", "not_an_isa"), ("ATEN_CPU_CAPABILITY", "avx512"), ("SSDLIB_NO_BF16", "0"),
])  # fmt: skip
def test_settings_that_do_not_limit(clean_env, name, value):
    clean_env.setenv(name, value)
    assert cf.isa_limits() == []


def test_unrestricted_follows_the_hardware(clean_env):
    native, why = cf.bf16_support()
    if not cf._hardware_bf16():
        assert not native and "no bf16 matrix instructions" in why
    elif torch.ops.mkldnn._is_mkldnn_bf16_supported():  # this process's oneDNN is not limited
        assert native and cf.cpu_kind() in ("amx", "avx512_bf16")


def test_amp_choice_is_one_line_with_its_reason(clean_env):
    clean_env.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    line = cf.describe_amp_choice("auto", trainer.resolve_amp("auto", CPU), CPU)
    assert line.startswith("train.amp=auto: fp32") and "\n" not in line
    assert "slower than fp32" in line
    assert cf.describe_amp_choice("bf16", torch.bfloat16, CPU) == "train.amp=bf16: bfloat16 autocast, as set"
    bf16_line = cf.describe_bf16_inference(CPU)
    assert bf16_line.startswith("--dtype bf16: bf16 weights as asked, emulated")


def test_announce_prints_once(capsys):
    for _ in range(3):
        cf.announce("train.amp=auto: test line 7f3a")
    assert capsys.readouterr().err == "train.amp=auto: test line 7f3a\n"


def test_train_cli_announces_the_choice(clean_env, tmp_path, capsys):
    from ssdlib.cli import main

    clean_env.setenv("SSDLIB_NO_BF16", "1")
    overrides = ["train.max_iter=1", "train.batch_size=2", "data.num_train=8", "data.num_test=4",
                 "train.warmup_iters=0", "data.views=1", "train.checkpoint_period=1"]  # fmt: skip
    assert main(["train", "--config", "shapes", *overrides, "--output", str(tmp_path),
                 "--no-progress"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "train.amp=auto: fp32 (no autocast) (bf16 units present but SSDLIB_NO_BF16" in err or (
        "train.amp=auto: fp32 (no autocast) (this CPU has no bf16" in err)


def test_channels_last_rule(clean_env):
    assert cf.channels_last_for_training("on", "ssd_light", CPU) is True
    assert cf.channels_last_for_training("off", "ssd_light", CPU) is False
    assert cf.channels_last_for_training("auto", "ssd300_vgg16", torch.device("cuda")) is True
    clean_env.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    clean_env.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert cf.cpu_kind() == "avx2" or cf.cpu_kind() == "default"
    if cf.cpu_kind() == "avx2":
        assert cf.channels_last_for_training("auto", "ssd_light", CPU) is True
        assert cf.channels_last_for_training("auto", "ssd300_vgg16", CPU) is False
    with pytest.raises(ValueError, match="train.channels_last"):
        cf.channels_last_for_training("sometimes", "ssd_light", CPU)


def test_channels_last_config_values():
    from ssdlib.config import ConfigError, load_config

    assert load_config("shapes", []).train.channels_last == "auto"
    assert load_config("shapes", ["train.channels_last=true"]).train.channels_last == "on"
    with pytest.raises(ConfigError, match="train.channels_last"):
        load_config("shapes", ["train.channels_last=sometimes"])
