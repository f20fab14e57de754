"""``ssdlib bench --quick --json``: it runs and reports every row in the documented shape.

No timing asserts: the numbers depend on the machine; only the structure is checked.
"""

import json

import pytest

from ssdlib.bench.timing import Row, measure_pair
from ssdlib.cli import main

EXPECTED_ROWS = {
    "inference_b1", "inference_b8", "postprocess_b8", "train_step_b8", "match_encode_b32",
    "augment", "voc_eval_5k", "coco_eval", "inference_b8_bf16", "train_step_b8_bf16",
    "onnxruntime_b1", "onnxruntime_b8",
}  # fmt: skip
PEERLESS = {"augment", "voc_eval_5k"}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    assert main(["bench", "--quick", "--json", str(path)]) == 0
    return json.loads(path.read_text())


def test_machine_info(report):
    machine = report["machine"]
    for key in ("cpu", "logical_cpus", "torch_threads", "torch", "device", "matmul_fp32_gflops"):
        assert key in machine
    assert machine["matmul_fp32_gflops"] > 0


def test_rows_shape(report):
    rows = {r["name"]: r for r in report["rows"]}
    assert EXPECTED_ROWS <= set(rows)
    for row in report["rows"]:
        assert set(row) == {"name", "ours_s", "peer_s", "ratio", "note"}
        assert isinstance(row["note"], str)
    for name in EXPECTED_ROWS:
        row = rows[name]
        assert row["ours_s"] > 0, name
        if row["peer_s"] is None:
            assert row["ratio"] is None
        else:
            assert row["peer_s"] > 0
            assert row["ratio"] == pytest.approx(row["ours_s"] / row["peer_s"])
    for name in PEERLESS:
        assert rows[name]["peer_s"] is None
    for name in EXPECTED_ROWS - PEERLESS - {"coco_eval"}:
        assert rows[name]["peer_s"] is not None, name


def test_measure_pair_interleaves_and_counts_calls():
    calls = []
    ours, peer = measure_pair(lambda: calls.append("o"), lambda: calls.append("p"), 3, warmup=1)
    assert calls == ["o", "p", "o", "p", "p", "o", "o", "p"]  # warm-up, then alternating order
    assert ours >= 0 and peer >= 0


def test_row_ratio_and_json():
    assert Row("x", 1.0, 4.0).ratio == 0.25
    assert Row("x", 1.0, None).to_json() == {
        "name": "x", "ours_s": 1.0, "peer_s": None, "ratio": None, "note": ""
    }  # fmt: skip
