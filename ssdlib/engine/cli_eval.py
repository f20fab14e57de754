"""``python -m ssdlib eval --config ... --ckpt PATH [--metric voc|coco|both] [--dtype bf16]``:
evaluate a checkpoint on the config's test split, print the per-class AP table (and COCO stats)
and write a metrics JSON (default: next to the checkpoint)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssdlib.engine.errors import USER_ERRORS, report
from ssdlib.engine.inference import add_dtype_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="shapes", help="built-in name or YAML path (default shapes)")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides")
    parser.add_argument("--ckpt", type=Path, required=True, help="checkpoint (model_*.pth)")
    parser.add_argument("--metric", choices=["voc", "coco", "both"], default=None,
                        help="default: test.metric of the config")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="metrics JSON path")
    parser.add_argument("--pr-curves", type=Path, default=None, help="PNG of the VOC PR curves")
    parser.add_argument("--batch-size", type=int, default=None, help="default: test.batch_size")
    parser.add_argument("--workers", type=int, default=None, help="default: data.num_workers")
    parser.add_argument("--device", default=None, help="default: train.device (auto)")
    add_dtype_argument(parser)  # the metrics JSON records which was used
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import torch

    from ssdlib.config import load_config
    from ssdlib.engine.cpu_features import announce, describe_bf16_inference
    from ssdlib.engine.datasets import build_test_data
    from ssdlib.engine.evaluator import evaluate, save_pr_curves, write_summary
    from ssdlib.engine.inference import load_model, with_inference_dtype
    from ssdlib.engine.trainer import resolve_device
    from ssdlib.metrics.coco import STAT_NAMES
    from ssdlib.metrics.voc import format_table

    try:
        cfg = load_config(args.config, args.overrides)
        device = resolve_device(args.device or cfg.train.device)
        model = load_model(cfg, args.ckpt, device)
        if args.dtype == "bf16":
            announce(describe_bf16_inference(torch.device(device)))
        model = with_inference_dtype(model, args.dtype)
        data = build_test_data(cfg, progress=not args.no_progress)
        metric = args.metric or cfg.test.metric
        metrics = ("voc", "coco") if metric == "both" else (metric,)
        if "coco" in metrics and data.gt_json is None:
            raise ValueError(f"the COCO metric needs a COCO json; {cfg.data.dataset} has none here")
        result = evaluate(
            model, data.dataset, args.batch_size or cfg.test.batch_size, device, metrics,
            data.class_names, cfg.test.use_07_metric, data.gt_json, data.coco_image_ids,
            data.label_to_cat_id, cfg.data.num_workers if args.workers is None else args.workers,
            progress=not args.no_progress,
        )  # fmt: skip
    except USER_ERRORS as e:
        return report(e)
    result.extra["dtype"] = args.dtype
    if result.voc is not None:
        print(format_table(result.voc, data.class_names))
    if result.coco is not None:
        print("  ".join(f"{k} {result.coco[k]:.4f}" for k in STAT_NAMES))
    out = args.out or args.ckpt.with_name(f"eval_{Path(args.ckpt).stem}.json")
    write_summary(result, out, data.class_names)
    if args.pr_curves and result.voc is not None:
        save_pr_curves(result.voc, args.pr_curves, data.class_names)
    print(f"metrics written to {out}", file=sys.stderr)
    return 0
