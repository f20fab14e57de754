"""``ssdlib bench --quick --json``: it runs and reports every row in the documented shape.

No timing asserts against fixed numbers (they depend on the machine); one against the machine
itself: no compute row may come out faster than the machine limit measured in the same run.
"""

import json

import pytest
import torch

from ssdlib.bench.timing import Row, measure_pair
from ssdlib.cli import main
from ssdlib.engine import cpu_features

EXPECTED_ROWS = {
    "inference_b1", "inference_b8", "postprocess_b8", "train_step_b8", "match_encode_b32",
    "augment", "voc_eval_5k", "coco_eval", "inference_b8_bf16", "train_step_b8_bf16",
    "onnxruntime_b1", "onnxruntime_b8",
    "match_encode_b32_tv", "ssdlite_b1", "ssdlite_b8",
}  # fmt: skip
BF16_ROWS = {"inference_b8_bf16", "train_step_b8_bf16"}
COMPUTE_ROWS = {"inference_b1", "inference_b8", "train_step_b8", "ssdlite_b1", "ssdlite_b8"} | BF16_ROWS
PEERLESS = {"augment", "voc_eval_5k"}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    assert main(["bench", "--quick", "--json", str(path)]) == 0
    return json.loads(path.read_text())


def test_machine_info(report):
    machine = report["machine"]
    for key in ("cpu", "logical_cpus", "torch_threads", "torch", "device", "cpu_kind", "limits"):
        assert key in machine
    assert machine["limits"]["float32"]["gflops"] > 0
    assert ("bfloat16" in machine["limits"]) == cpu_features.bf16_support()[0]


def test_rows_shape(report):
    rows = {r["name"]: r for r in report["rows"]}
    assert EXPECTED_ROWS <= set(rows)
    for row in report["rows"]:
        assert set(row) == {"name", "ours_s", "peer_s", "ratio", "limit_s", "of_limit", "note"}
        assert isinstance(row["note"], str)
    native_bf16 = cpu_features.bf16_support()[0]
    for name in EXPECTED_ROWS:
        row = rows[name]
        if name in BF16_ROWS and not native_bf16:
            assert row["note"].startswith("skipped: no bf16 support on this CPU"), row
            assert row["ours_s"] is None and row["peer_s"] is None
            continue
        assert row["ours_s"] > 0, name
        if row["peer_s"] is None:
            assert row["ratio"] is None
        else:
            assert row["peer_s"] > 0
            assert row["ratio"] == pytest.approx(row["ours_s"] / row["peer_s"])
    for name in PEERLESS:
        assert rows[name]["peer_s"] is None
    for name in EXPECTED_ROWS - PEERLESS - {"coco_eval"} - (set() if native_bf16 else BF16_ROWS):
        assert rows[name]["peer_s"] is not None, name


def test_no_compute_row_beats_the_machine_limit(report):
    rows = {r["name"]: r for r in report["rows"]}
    for name in COMPUTE_ROWS:
        row = rows[name]
        if row["ours_s"] is None:  # a skipped bf16 row
            continue
        assert row["limit_s"] > 0, name
        assert row["ours_s"] >= row["limit_s"], (name, row["ours_s"], row["limit_s"])
        assert 0 < row["of_limit"] <= 1 and "machine limit" in row["note"], name
        if "bf16" not in name:  # torchvision computes in fp32: the fp32 limit binds it too
            assert row["peer_s"] >= row["limit_s"], name


def test_bf16_rows_skip_without_native_bf16(monkeypatch):
    """Under the AVX2 setting the bf16 rows say so instead of timing an emulation."""
    from ssdlib.bench.rows import NO_BF16, Settings, train_step_row

    monkeypatch.setenv("SSDLIB_NO_BF16", "1")
    s = Settings(quick=True, repeats=1, bf16=cpu_features.bf16_support())
    assert s.bf16[0] is False
    row = train_step_row(s, None, torch.bfloat16)  # returns before touching the model pair
    assert row.name == "train_step_b8_bf16" and row.ours_s is None
    assert row.note.startswith(NO_BF16) and "SSDLIB_NO_BF16" in row.note
    assert row.to_json()["ratio"] is None


def test_measure_pair_interleaves_and_counts_calls():
    calls = []
    ours, peer = measure_pair(lambda: calls.append("o"), lambda: calls.append("p"), 3, warmup=1)
    assert calls == ["o", "p", "o", "p", "p", "o", "o", "p"]  # warm-up, then alternating order
    assert ours >= 0 and peer >= 0


def test_row_ratio_and_json():
    assert Row("x", 1.0, 4.0).ratio == 0.25
    assert Row("x", 1.0, None).to_json() == {
        "name": "x", "ours_s": 1.0, "peer_s": None, "ratio": None, "limit_s": None,
        "of_limit": None, "note": ""
    }  # fmt: skip
    assert Row("x", 2.0, None, limit_s=0.5).to_json()["of_limit"] == 0.25


def test_rows_filter_selects_whole_steps():
    from ssdlib.bench.rows import COMPUTE_STEPS, STEPS, selects

    assert selects(None, STEPS["inference"])
    assert selects(["match_*"], STEPS["matching"]) and not selects(["match_*"], STEPS["postprocess"])
    assert selects(["postprocess_b8", "voc*"], STEPS["VOC mAP"])
    assert not any(selects(["match_*", "postprocess_b8"], STEPS[s]) for s in COMPUTE_STEPS)
