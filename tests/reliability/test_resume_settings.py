"""Resuming (issue 20): changed schedule settings apply at the resumed iteration and the run
says which; no checkpoint holds non-finite weights or BatchNorm statistics; an unusable
newest checkpoint is skipped for the previous one, with a line saying so; the first log row
after a resume averages the same iterations as an uninterrupted run's."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from reliability_helpers import good_jpeg, tiny_config, write_config

from ssdlib.cli import main
from ssdlib.engine import NonFiniteLossError, train
from ssdlib.engine.checkpoint import POINTER, latest_checkpoint, load_checkpoint
from ssdlib.engine.resume import nonfinite_entry
from ssdlib.engine.run_log import read_metrics

FAST = {"batch_size": 2, "log_period": 1, "checkpoint_period": 3, "keep_checkpoints": 0}


def _lrs(out) -> dict[int, float]:
    return {r["iteration"]: r["lr"] for r in read_metrics(out) if "lr" in r}


def test_resume_with_a_new_schedule_follows_it_and_says_so(tmp_path, capsys):
    out = tmp_path / "out"
    train(tiny_config(tmp_path, train={**FAST, "max_iter": 6}), out, progress=False)
    capsys.readouterr()
    new = {**FAST, "max_iter": 8, "lr": 0.001, "lr_steps": [7], "gamma": 0.5, "momentum": 0.8}
    result = train(tiny_config(tmp_path, train=new), out, progress=False)
    said = capsys.readouterr().out
    assert ("resume: train.lr 0.01 -> 0.001; train.lr_steps [100] -> [7]; train.gamma 0.1 -> 0.5; "
            "train.momentum 0.9 -> 0.8: the new values apply from iteration 7") in said  # fmt: skip
    # The lr of iteration i is lr * schedule(i - 1): 0.001 at 7, halved at 8 (step 7).
    lrs = _lrs(out)
    assert [lrs[i] for i in (5, 6)] == pytest.approx([0.01, 0.01])  # the first run's
    assert [lrs[i] for i in (7, 8)] == pytest.approx([0.001, 0.0005], rel=1e-12)
    # ... which is what a run started with the new settings uses at those iterations.
    fresh = tmp_path / "fresh"
    train(tiny_config(tmp_path, train=new), fresh, progress=False)
    assert [_lrs(fresh)[i] for i in (7, 8)] == pytest.approx([lrs[7], lrs[8]], rel=1e-12)
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt["optimizer"]["param_groups"][0]["momentum"] == 0.8
    assert ckpt["config"]["train"]["lr"] == 0.001  # config.yaml and checkpoint agree now
    # Resuming again with the same settings changes nothing and says nothing.
    capsys.readouterr()
    train(tiny_config(tmp_path, train={**new, "max_iter": 9}), out, progress=False)
    said = capsys.readouterr().out
    assert "resume:" not in said and "resuming from" in said
    assert _lrs(out)[9] == pytest.approx(0.0005, rel=1e-12)


def test_warmup_change_on_resume(tmp_path):
    out = tmp_path / "out"
    train(tiny_config(tmp_path, train={**FAST, "max_iter": 3, "warmup_iters": 0}), out, progress=False)
    new = {**FAST, "max_iter": 5, "warmup_iters": 10, "warmup_factor": 0.5}
    train(tiny_config(tmp_path, train=new), out, progress=False)
    # warm-up at i = 3, 4 of 10: 0.5 + 0.5 * i / 10
    assert [_lrs(out)[i] for i in (4, 5)] == pytest.approx([0.01 * 0.65, 0.01 * 0.7], rel=1e-12)


def test_no_checkpoint_from_nonfinite_weights(tmp_path, capsys):
    """train.lr=100 blows BatchNorm statistics up to inf while the loss is still finite: the
    run stops with one line instead of writing that state, and the last good one stays."""
    config = write_config(tmp_path / "c.yaml", train={**FAST, "checkpoint_period": 2, "max_iter": 8})
    out = tmp_path / "out"
    args = ["train", "--config", str(config), "train.lr=100", "--output", str(out), "--no-progress"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: stopping at iteration") and "is not finite, so no checkpoint" in err
    for path in out.glob("model_*.pth"):
        assert nonfinite_entry(load_checkpoint(path)["model"]) is None, path
    newest = latest_checkpoint(out)
    # A resume with a sane lr starts from that good checkpoint and finishes.
    assert main([*args[:3], "train.lr=0.001", *args[4:]]) == 0
    assert newest.exists() and latest_checkpoint(out).name == "model_0000008.pth"


def test_poisoned_statistics_at_a_checkpoint_are_refused(tmp_path):
    def poison(model):  # runs at iteration 4, just before its checkpoint
        bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        bn.running_var[0] = math.inf
        return {}

    cfg = tiny_config(tmp_path, train={**FAST, "checkpoint_period": 2, "max_iter": 6, "eval_period": 4})
    with pytest.raises(NonFiniteLossError, match=r"iteration 4: .*running_var is not finite"):
        train(cfg, tmp_path / "out", progress=False, eval_fn=poison)
    assert latest_checkpoint(tmp_path / "out").name == "model_0000002.pth"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder with checkpoints of iterations 3 and 6 (each test works on a copy)."""
    root = tmp_path_factory.mktemp("trained")
    out = root / "out"
    train(tiny_config(root, train={**FAST, "max_iter": 6}), out, progress=False)
    return out


def _damage(path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":  # a full disk mid-copy
        path.write_bytes(data[: len(data) // 3])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"\x89PNG not a checkpoint" * 100)
    elif how == "nonfinite":  # as an older ssdlib could write
        state = load_checkpoint(path)
        next(v for v in state["model"].values() if v.is_floating_point()).fill_(math.nan)
        torch.save(state, path)
    else:
        torch.save(torch.zeros(3), path)


def test_auto_resume_skips_an_unusable_newest_checkpoint(tmp_path, capsys, trained):
    config = write_config(tmp_path / "c.yaml", train={**FAST, "max_iter": 7})
    for how in ("truncate", "empty", "garbage", "nonfinite", "not_a_dict"):
        out = tmp_path / how
        shutil.copytree(trained, out)
        _damage(out / "model_0000006.pth", how)
        bad = tmp_path / f"{how}.pth"
        shutil.copy(out / "model_0000006.pth", bad)
        capsys.readouterr()
        assert main(["train", "--config", str(config), "--output", str(out), "--no-progress"]) == 0
        said = capsys.readouterr().out
        assert "warning: skipping model_0000006.pth" in said, (how, said)
        assert "trying model_0000003.pth" in said and "model_0000003.pth at iteration 3" in said
        assert (out / POINTER).read_text().strip() == "model_0000007.pth"
        # Named explicitly, a damaged file is one error line (exit 1) and nothing is written.
        before = sorted(p.name for p in out.iterdir())
        assert main(["train", "--config", str(config), "--output", str(out), "--resume", str(bad),
                     "--no-progress"]) == 1  # fmt: skip
        err = capsys.readouterr().err
        assert err.startswith("error: ") and str(bad) in err and err.count("\n") == 1, err
        assert sorted(p.name for p in out.iterdir()) == before


def test_every_checkpoint_unusable_is_one_error(tmp_path, capsys, trained):
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    for path in out.glob("model_*.pth"):
        _damage(path, "truncate")
    config = write_config(tmp_path / "c.yaml", train={**FAST, "max_iter": 9})
    assert main(["train", "--config", str(config), "--output", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "no other checkpoint" in err[-1]
    assert "--no-resume starts afresh" in err[-1]


@pytest.mark.parametrize("command", ["eval", "demo"])
def test_eval_and_demo_with_a_damaged_checkpoint(tmp_path, capsys, trained, command):
    config = write_config(tmp_path / "c.yaml")
    (tmp_path / "imgs").mkdir()
    good_jpeg(tmp_path / "imgs" / "a.jpg")
    for how in ("truncate", "empty", "garbage"):
        ckpt = tmp_path / f"{how}.pth"
        shutil.copy(trained / "model_0000006.pth", ckpt)
        _damage(ckpt, how)
        extra = ["--out", str(tmp_path / "res")]
        extra += ["--images", str(tmp_path / "imgs")] if command == "demo" else []
        assert main([command, "--config", str(config), "--ckpt", str(ckpt), *extra]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert f"{ckpt}: not a readable PyTorch checkpoint" in err


def test_first_log_row_after_a_resume_equals_the_uninterrupted_one(tmp_path):
    """checkpoint_period 3, log_period 4: the run dies at iteration 4 (after the checkpoint at
    3, before the row of 4); the resumed row of 4 must average iterations 1-4, not 4 alone."""
    sections = {**FAST, "max_iter": 8, "log_period": 4, "checkpoint_period": 3}
    whole = tmp_path / "whole"
    train(tiny_config(tmp_path, train=sections), whole, progress=False)

    def die(model):
        raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tmp_path, train={**sections, "eval_period": 4}), cut, progress=False,
              eval_fn=die)  # fmt: skip
    assert latest_checkpoint(cut).name == "model_0000003.pth"
    train(tiny_config(tmp_path, train=sections), cut, progress=False)
    rows = {r["iteration"]: r for r in read_metrics(whole)}
    resumed = {r["iteration"]: r for r in read_metrics(cut)}
    assert sorted(resumed) == sorted(rows) == [4, 8]
    for i in (4, 8):
        for key in ("loss", "loc_loss", "cls_loss", "lr"):
            assert resumed[i][key] == pytest.approx(rows[i][key], rel=1e-9, abs=1e-9), (i, key)


def test_a_cosine_run_extended_on_resume_follows_the_longer_cosine(tmp_path, capsys):
    out = tmp_path / "out"
    cosine = {**FAST, "lr_schedule": "cosine", "warmup_iters": 0}
    train(tiny_config(tmp_path, train={**cosine, "max_iter": 4}), out, progress=False)
    capsys.readouterr()
    train(tiny_config(tmp_path, train={**cosine, "max_iter": 6}), out, progress=False)
    assert "train.max_iter 4 -> 6" in capsys.readouterr().out
    fresh = tmp_path / "fresh"
    train(tiny_config(tmp_path, train={**cosine, "max_iter": 6}), fresh, progress=False)
    assert [_lrs(out)[i] for i in (5, 6)] == pytest.approx([_lrs(fresh)[i] for i in (5, 6)], rel=1e-12)
    assert _lrs(fresh)[4] == pytest.approx(0.01 * (1 + math.cos(math.pi * 3 / 6)) / 2, rel=1e-12)
