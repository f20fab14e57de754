"""``make gpu-check`` without a GPU: one line saying so, exit status 0, nothing written."""

import pytest
import torch

from ssdlib.bench import gpu_check


def test_without_cuda_says_so_and_exits_0(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "gpu.json"
    assert gpu_check.main(["--json", str(out)]) == 0
    assert capsys.readouterr().out == "gpu-check: no CUDA device on this machine; nothing checked\n"
    assert not out.exists()


def test_report_table_has_every_section():
    report = {"gpu": "X", "torch": "2", "seconds": 1.0,
              "unit_tests": {"passed": True, "summary": "3 passed", "seconds": 1.0},
              "rows": [{"name": "inference_b1_fp32", "ours": 120.0, "peer": 80.0, "unit": "FPS",
                        "ratio": 1.5, "target": ">= 1.25x"}],
              "demo": {"map": 0.91, "wall_s": 200.0, "train_minutes": 3.1, "error": None}}  # fmt: skip
    text = gpu_check.format_report(report)
    assert "CUDA unit tests: passed (3 passed)" in text
    assert "inference_b1_fp32" in text and "1.50x" in text
    assert "mAP@0.5 0.9100" in text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_check_quick_runs(tmp_path):
    assert gpu_check.main(["--quick", "--json", str(tmp_path / "g.json")]) == 0
