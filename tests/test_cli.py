import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from ssdlib.cli import COMMANDS, main

TINY = [
    "model.width=0.25", "train.batch_size=4", "data.num_train=16", "data.num_test=6",
    "data.source_size=128", "data.num_workers=0", "train.max_iter=3", "train.checkpoint_period=3",
    "train.log_period=1", "train.warmup_iters=1", "train.lr=0.01", "train.lr_steps=[100]",
    "test.batch_size=6",
]  # fmt: skip


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("SSDLIB_DATA", str(tmp_path / "data"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_commands_are_registered_beside_the_others():
    assert {"info", "data", "train", "eval", "demo"} <= set(COMMANDS)


def test_train_eval_demo(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    args = ["train", "--config", "shapes", *TINY, "train.eval_period=3", "--output", str(run)]
    assert main([*args, "--no-progress"]) == 0
    ckpt = run / "model_0000003.pth"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert ckpt.is_file() and [r["iteration"] for r in rows if "mAP" in r] == [3]

    out = tmp_path / "eval.json"
    code = main(["eval", "--config", "shapes", *TINY, "--ckpt", str(ckpt), "--metric", "both",
                 "--out", str(out), "--pr-curves", str(tmp_path / "pr.png"), "--no-progress"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "mAP" in printed and "circle" in printed and "AP50" in printed
    summary = json.loads(out.read_text())
    assert summary["num_images"] == 6
    assert 0.0 <= summary["voc"]["map"] <= 1.0 and -1.0 <= summary["coco"]["AP"] <= 1.0
    assert set(summary["voc"]["ap"]) <= {"circle", "square", "triangle", "star", "hexagon"}
    assert (tmp_path / "pr.png").stat().st_size > 0 and summary["dtype"] == "fp32"

    # bf16 weights: the network really runs in bf16, and the JSON says so.
    import ssdlib.model.ssd as ssd_module

    seen = []
    prepare = ssd_module.prepare_for_inference

    def spy(model, **kwargs):
        seen.append(prepare(model, **kwargs).head.cls_heads[0].weight.dtype)
        return model

    monkeypatch.setattr(ssd_module, "prepare_for_inference", spy)
    out16 = tmp_path / "eval_bf16.json"
    code = main(["eval", "--config", "shapes", *TINY, "--ckpt", str(ckpt), "--metric", "voc",
                 "--dtype", "bf16", "--out", str(out16), "--no-progress"])  # fmt: skip
    assert code == 0 and seen == [torch.bfloat16]
    summary16 = json.loads(out16.read_text())
    assert summary16["dtype"] == "bf16" and summary16["num_images"] == 6

    images = tmp_path / "images"
    images.mkdir()
    jpegs = tmp_path / "data" / "shapes" / "VOCshapes" / "JPEGImages"
    for name in ("test_000000.jpg", "test_000001.jpg"):
        shutil.copy(jpegs / name, images / name)
    pictures = tmp_path / "pictures"
    code = main(["demo", "--config", "shapes", *TINY, "--ckpt", str(ckpt), "--images", str(images),
                 "--out", str(pictures), "--score-threshold", "0.05"])  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in pictures.iterdir()) == ["test_000000.jpg", "test_000001.jpg"]
    code = main(["demo", "--config", "shapes", *TINY, "--ckpt", str(ckpt), "--images", str(images),
                 "--out", str(tmp_path / "pictures16"), "--dtype", "bf16"])  # fmt: skip
    assert code == 0 and seen == [torch.bfloat16] * 2 and len(list((tmp_path / "pictures16").iterdir())) == 2


def test_python_m_ssdlib_train_entry_point(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "ssdlib", "train", "--config", "shapes", *TINY, "train.max_iter=2",
           "--output", str(tmp_path / "run"), "--no-progress"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "run" / "model_0000002.pth").is_file()


def test_missing_voc_data_names_the_expected_layout(tmp_path, capsys):
    code = main(["train", "--config", "ssd300_voc", "model.backbone_weights=none",
                 "--output", str(tmp_path / "run")])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "VOCdevkit/VOC2007/JPEGImages" in err and "SSDLIB_DATA" in err


def test_helpful_errors_and_exit_codes(tmp_path, capsys):
    assert main(["train", "--config", "no_such_config"]) == 2
    assert "built-in configs" in capsys.readouterr().err
    assert main(["eval", "--config", "shapes", "--ckpt", str(tmp_path / "none.pth")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["train", "--config", "shapes", *TINY, "--output", str(tmp_path), "--resume"]) == 1
    assert "no checkpoint" in capsys.readouterr().err
    code = main(["demo", "--config", "shapes", "--ckpt", "x.pth", "--images", str(tmp_path / "no"),
                 "--out", str(tmp_path / "o")])  # fmt: skip
    assert code == 1 and "no such folder" in capsys.readouterr().err


def _info_rows(capsys, config: str) -> list[list[str]]:
    assert main(["info", "--config", config]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["map", "size"]) + 1
    return [line.split() for line in lines[start:] if line.split()[0].isdigit()]


def test_info_boxes_per_location_counts_densified_squares(capsys):
    from ssdlib.config import load_config
    from ssdlib.priors import generate_priors

    rows = _info_rows(capsys, "shapes")
    cfg = load_config("shapes").priors
    # shapes densifies the first two maps 2x2: 4 min-size squares + s' + 2 per ratio (1 or 2).
    assert [int(r[5]) for r in rows[:2]] == [7, 9]
    for row, f in zip(rows, cfg.feature_maps, strict=True):
        assert int(row[5]) * f * f == int(row[6])  # boxes/loc x locations = priors of the map
    assert sum(int(r[6]) for r in rows) == generate_priors(cfg).shape[0]
    assert [int(r[5]) for r in _info_rows(capsys, "ssd300_voc")] == [4, 6, 6, 6, 4, 4]


@pytest.mark.parametrize("command", ["train", "demo-shapes"])
def test_training_commands_keep_freed_memory_on_the_cpu(command, tmp_path, monkeypatch):
    from ssdlib.engine import host_memory

    calls = []
    monkeypatch.setattr(host_memory, "keep_freed_memory", lambda: calls.append(command) or True)
    demo = ["--out", str(tmp_path), "--pictures", "1"]
    out = ["--output", str(tmp_path / "run")] if command == "train" else demo
    assert main([command, *TINY, "train.max_iter=1", "train.checkpoint_period=1", *out]) == 0
    assert calls == [command]
