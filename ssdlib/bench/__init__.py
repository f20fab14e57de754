"""``python -m ssdlib bench [--quick] [--json out.json]``: ssdlib against its peers, measured.

Each row times ssdlib and the named peer in the same run, interleaved, after warm-up, as the
median of several repeats (see :mod:`ssdlib.bench.timing`), and reports seconds per call,
the ratio ours / peer (below 1: ssdlib is faster) and the machine it ran on.

Rows (peer in brackets): ``inference_b1``/``inference_b8`` SSD300 ``predict`` fp32
[torchvision ``ssd300_vgg16``], ``inference_b8_bf16`` [torchvision fp32], ``postprocess_b8``
[torchvision ``postprocess_detections``], ``train_step_b8`` [torchvision SSD train step],
``match_encode_b32`` [per-image ``match`` + ``encode``], ``augment``, ``voc_eval_5k``,
``coco_eval`` [faster-coco-eval when installed], ``ssdlite_b1``/``ssdlite_b8`` SSDLite320
MobileNetV3 ``predict`` fp32 [torchvision ``ssdlite320_mobilenet_v3_large``],
``onnxruntime_b1``/``_b8`` the exported SSD300 in onnxruntime [PyTorch fp32 ``predict``] when
``ssdlib[export]`` is installed, and the CUDA rows when a GPU is present.
``--quick`` shrinks repeats and batches to a smoke test (structure, not numbers).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ssdlib.bench.report import format_table
from ssdlib.bench.timing import Row, machine_info

__all__ = ["Row", "add_arguments", "run", "run_bench"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="tiny repeats and batches: a smoke test (well under a minute)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write {machine, rows} as JSON")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed rounds per row (default 5, quick 1)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's own choice)")  # fmt: skip
    parser.add_argument("--rows", default=None, metavar="PATTERNS",
                        help="only these rows: comma-separated names or shell patterns, e.g. "
                             "'match_*,postprocess_b8' (the machine limit is measured only "
                             "when a compute row is among them)")  # fmt: skip
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model in the CUDA training row")  # fmt: skip


def run_bench(quick: bool = False, repeats: int | None = None, compile_model: bool = False,
              log=print, patterns: list[str] | None = None) -> dict:  # fmt: skip
    """Measure every row (or those ``patterns`` select, see :func:`ssdlib.bench.rows.selects`);
    returns ``{"machine": {...}, "rows": [Row, ...]}``."""
    from ssdlib.bench.cuda import cuda_rows
    from ssdlib.bench.export_rows import ROW_NAMES as ORT_ROWS
    from ssdlib.bench.limit import apply_limits, best_limits, measure_limit
    from ssdlib.bench.rows import COMPUTE_STEPS, STEPS, Settings, cpu_rows, selects
    from ssdlib.bench.ssdlite_rows import ROW_NAMES as SSDLITE_ROWS
    from ssdlib.bench.ssdlite_rows import ssdlite_rows
    from ssdlib.engine.cpu_features import bf16_support

    settings = Settings(quick=quick, repeats=repeats or (1 if quick else 5), bf16=bf16_support())
    dtypes = [torch.float32] + ([torch.bfloat16] if settings.bf16[0] else [])
    # Rows without a FLOP count (post-processing, matching, ...) are not compared with the limit.
    compute_rows = [name for step in COMPUTE_STEPS for name in STEPS[step]] + list(SSDLITE_ROWS)
    if not selects(patterns, tuple(compute_rows)):
        dtypes = []
    else:
        log(f"... machine limit ({settings.bf16[1]})")

    def measure():
        return {d: measure_limit(d, quick, 3 if quick else 5) for d in dtypes}

    before = measure()
    rows = cpu_rows(settings, log, patterns)
    if selects(patterns, SSDLITE_ROWS):
        log("... ssdlite320")
        rows += ssdlite_rows(settings)
    from ssdlib.bench.export_rows import onnxruntime_available, onnxruntime_rows

    if selects(patterns, ORT_ROWS) and onnxruntime_available():
        from ssdlib.bench.models import build_pair, normalise, peer_images

        log("... onnxruntime")
        images = normalise(peer_images(settings.big_batch))
        rows += onnxruntime_rows(settings, build_pair().ours, images, settings.big_batch)
    # Measured again after the rows, the higher counting: a load spike during one
    # measurement would otherwise give a "limit" that the rows beat.
    limits = best_limits(before, measure())
    apply_limits(rows, limits)
    if selects(patterns, ("cuda", "cuda_*")):
        rows += cuda_rows(settings, compile_model)
    return {"machine": machine_info(limits), "rows": rows}


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    patterns = [p.strip() for p in args.rows.split(",") if p.strip()] if args.rows else None
    result = run_bench(args.quick, args.repeats, args.compile, log, patterns)
    print(format_table(result["machine"], result["rows"]))
    print(f"(benchmark took {time.perf_counter() - start:.0f} s)")
    if args.json is not None:
        payload = {"machine": result["machine"], "rows": [r.to_json() for r in result["rows"]]}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0
