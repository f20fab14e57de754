"""``make gpu-check`` (``python -m ssdlib.bench.gpu_check``): everything that needs a GPU, in
one command of at most ~8 minutes on one modern GPU; writes one JSON and prints a table.

1. the CUDA unit tests (``tests/test_cuda.py``: CUDA results equal the CPU's);
2. SSD300 training, batch 32, bf16 autocast + channels_last, eager and ``torch.compile``,
   images/s against torchvision's step under the same autocast (target >= 1.5x);
3. inference FPS at batch 1 and 8, fp32 and bf16, against torchvision (target at batch 1:
   >= 1.25x torchvision's and >= the paper's 46 FPS);
4. the Shapes demo recipe (``make demo``) trained on the GPU: its mAP and wall time.

Without a CUDA device it prints one line saying so and exits 0.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

PAPER_FPS = 46.0  # SSD300 on a Titan X (Liu et al. 2016, table 7)


def _gpu_rows(quick: bool) -> list[dict]:
    """Training and inference rows (name, ours, peer, unit, ratio, target)."""
    from ssdlib.bench.models import build_pair, normalise, peer_images, random_targets
    from ssdlib.bench.timing import measure_pair
    from ssdlib.engine.trainer import compute_loss
    from ssdlib.loss import MultiBoxLoss
    from ssdlib.model.ssd import prepare_for_inference

    dev, sync, bf16 = torch.device("cuda"), torch.cuda.synchronize, torch.bfloat16
    pair = build_pair()
    rows: list[dict] = []
    repeats = 3 if quick else 10

    batch = 8 if quick else 32
    images = [x.to(dev) for x in peer_images(batch)]
    boxes, labels = random_targets(batch)
    boxes, labels = [b.to(dev) for b in boxes], [lab.to(dev) for lab in labels]
    targets = [{"boxes": b * 300.0, "labels": lab} for b, lab in zip(boxes, labels)]
    ours_targets = [{"boxes": b, "labels": lab} for b, lab in zip(boxes, labels)]
    x = normalise([i.cpu() for i in images]).to(dev).contiguous(memory_format=torch.channels_last)
    peer = copy.deepcopy(pair.peer).to(dev).train().to(memory_format=torch.channels_last)
    peer_opt = torch.optim.SGD(peer.parameters(), lr=1e-4, momentum=0.9)

    def peer_step():
        peer_opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=bf16):
            loss = sum(peer(images, targets).values())
        loss.backward()
        peer_opt.step()

    for compiled in (False, True):
        ours = copy.deepcopy(pair.ours).to(dev).train().to(memory_format=torch.channels_last)
        net = torch.compile(ours) if compiled else ours
        opt = torch.optim.SGD(ours.parameters(), lr=1e-4, momentum=0.9)
        loss_fn = MultiBoxLoss(ours.priors, ours.variances, iou_threshold=0.5, neg_pos_ratio=3)

        def ours_step(net=net, opt=opt, loss_fn=loss_fn):
            opt.zero_grad(set_to_none=True)
            loc, cls = compute_loss(net, loss_fn, x, ours_targets, bf16)
            (loc + cls).backward()
            opt.step()

        o, p = measure_pair(ours_step, peer_step, repeats, 3 if compiled else 1, sync)
        rows.append({"name": f"train_b{batch}_bf16" + ("_compiled" if compiled else ""),
                     "ours": batch / o, "peer": batch / p, "unit": "img/s", "ratio": p / o,
                     "target": ">= 1.5x"})  # fmt: skip

    tv = copy.deepcopy(pair.peer).to(dev).eval()
    for dtype_name, dtype in (("fp32", None), ("bf16", bf16)):
        model = prepare_for_inference(copy.deepcopy(pair.ours).to(dev), channels_last=True, dtype=dtype)
        for b in (1, 8):
            imgs = [i.to(dev) for i in peer_images(b)]
            xb = normalise([i.cpu() for i in imgs]).to(dev)

            def ours_call(xb=xb, model=model):
                with torch.inference_mode():
                    return model.predict(xb)

            def peer_call(imgs=imgs, dtype=dtype):
                with torch.inference_mode(), torch.autocast("cuda", dtype=bf16, enabled=dtype is not None):
                    return tv(imgs)

            o, p = measure_pair(ours_call, peer_call, repeats * 3, 3, sync)
            target = f">= 1.25x and >= {PAPER_FPS:.0f} FPS" if b == 1 else ""
            rows.append({"name": f"inference_b{b}_{dtype_name}", "ours": b / o, "peer": b / p,
                         "unit": "FPS", "ratio": p / o, "target": target})  # fmt: skip
    return rows


def _unit_tests() -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_cuda.py"],
                          capture_output=True, text=True, timeout=240)  # fmt: skip
    tail = (proc.stdout.strip().splitlines() or [""])[-1]
    return {"passed": proc.returncode == 0, "summary": tail, "seconds": time.perf_counter() - start}


def _demo(quick: bool) -> dict:
    """The ``make demo`` recipe on the GPU, in a child process (its own output folder)."""
    start = time.perf_counter()
    overrides = ["train.device=cuda"] + (["train.max_iter=200", "train.lr_steps=[150,180]"] if quick else [])
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-m", "ssdlib.engine.demo_shapes", "--out", tmp,
                               "--pictures", "0", *overrides],
                              capture_output=True, text=True, timeout=420)  # fmt: skip
        metrics_path = Path(tmp) / "metrics.json"
        extra = json.loads(metrics_path.read_text()).get("extra", {}) if metrics_path.is_file() else {}
    found = re.search(r"Shapes test mAP@0.5 \(VOC07\): ([0-9.]+)", proc.stdout)
    return {"map": float(found.group(1)) if found else None, "returncode": proc.returncode,
            "wall_s": time.perf_counter() - start,
            "train_minutes": extra.get("train_minutes_this_run"),
            "error": None if found else (proc.stderr.strip().splitlines() or [""])[-1]}  # fmt: skip


def format_report(report: dict) -> str:
    lines = [f"GPU check on {report['gpu']} (torch {report['torch']}), {report['seconds']:.0f} s"]
    t = report["unit_tests"]
    lines.append(f"CUDA unit tests: {'passed' if t['passed'] else 'FAILED'} ({t['summary']})")
    lines.append(f"{'row':28s} {'ours':>10s} {'torchvision':>12s} {'speed-up':>9s}  target")
    for r in report["rows"]:
        lines.append(f"{r['name']:28s} {r['ours']:8.1f} {r['unit']:>1s} {r['peer']:10.1f}   "
                     f"{r['ratio']:7.2f}x  {r['target']}")  # fmt: skip
    d = report["demo"]
    mean = "-" if d["map"] is None else f"{d['map']:.4f}"
    lines.append(f"Shapes demo on the GPU: mAP@0.5 {mean}, wall {d['wall_s']:.0f} s, "
                 f"training {d['train_minutes']} min" + (f" ({d['error']})" if d["error"] else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ssdlib.bench.gpu_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--json", type=Path, default=Path("outputs/gpu_check.json"))
    p.add_argument("--quick", action="store_true", help="short runs: a smoke test of the check")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device on this machine; nothing checked")
        return 0
    start = time.perf_counter()
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
              "unit_tests": _unit_tests(), "rows": _gpu_rows(args.quick),
              "demo": _demo(args.quick)}  # fmt: skip
    report["seconds"] = time.perf_counter() - start
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_name(args.json.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(args.json)  # atomic: never a half-written report
    print(format_report(report))
    print(f"(written to {args.json})")
    ok = report["unit_tests"]["passed"] and report["demo"]["map"] is not None
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
