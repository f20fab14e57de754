"""``python -m ssdlib eval (--config ... --ckpt PATH | --weights shapes) [--metric voc|coco|both]
[--dtype bf16]``: evaluate a checkpoint (or a shipped model, with the config it was trained with)
on the test split, print the per-class AP table (and COCO stats) and write a metrics JSON
(default: next to the checkpoint; for ``--weights``, ``eval_<name>.json`` in the working
directory)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ssdlib.cli import add_dtype_argument
from ssdlib.engine.errors import USER_ERRORS, report
from ssdlib.model.shipped import SHIPPED


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="built-in name or YAML path (default shapes; "
                        "with --weights, the config the model was trained with)")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", type=Path, help="checkpoint (model_*.pth)")
    source.add_argument("--weights", choices=sorted(SHIPPED), help="a model shipped with ssdlib")
    parser.add_argument("--metric", choices=["voc", "coco", "both"], default=None,
                        help="default: test.metric of the config")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="metrics JSON path")
    parser.add_argument("--pr-curves", type=Path, default=None, help="PNG of the VOC PR curves")
    parser.add_argument("--analysis", type=Path, default=None, metavar="PREFIX",
                        help="error types and recall by size: PREFIX.json, PREFIX.png and a table")
    parser.add_argument("--analysis-score", type=float, default=0.5,
                        help="score of a confident detection for --analysis (default 0.5)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: test.batch_size")
    parser.add_argument("--workers", type=int, default=None, help="default: data.num_workers")
    parser.add_argument("--device", default=None, help="default: train.device (auto)")
    add_dtype_argument(parser)  # the metrics JSON records which was used
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import torch

    from ssdlib.config import apply_overrides, load_config
    from ssdlib.engine.cpu_features import announce, describe_bf16_inference
    from ssdlib.engine.datasets import build_test_data
    from ssdlib.engine.device import resolve_device
    from ssdlib.engine.evaluator import evaluate, save_figure, save_pr_curves, write_summary
    from ssdlib.engine.inference import load_model, with_inference_dtype
    from ssdlib.engine.outdir import check_writable_file
    from ssdlib.io import atomic_write
    from ssdlib.metrics.coco import STAT_NAMES
    from ssdlib.metrics.voc import format_table
    from ssdlib.model import load_shipped

    try:
        if args.batch_size is not None and args.batch_size < 1:
            raise ValueError(f"--batch-size is {args.batch_size}; expected >= 1")
        if args.workers is not None and args.workers < 0:
            raise ValueError(f"--workers is {args.workers}; expected >= 0")
        if args.weights:
            model, shipped_cfg, _ = load_shipped(args.weights)
            cfg = (load_config(args.config, args.overrides) if args.config
                   else apply_overrides(shipped_cfg, args.overrides))  # fmt: skip
            out = args.out or Path(f"eval_{args.weights}.json")
        else:
            cfg = load_config(args.config or "shapes", args.overrides)
            out = args.out or args.ckpt.with_name(f"eval_{Path(args.ckpt).stem}.json")
        check_writable_file(out, "--out")  # before the inference, not after it
        if args.pr_curves:
            check_writable_file(args.pr_curves, "--pr-curves")
        if args.analysis:
            check_writable_file(Path(f"{args.analysis}.json"), "--analysis")
        device = resolve_device(args.device or cfg.train.device)
        model = model.to(device) if args.weights else load_model(cfg, args.ckpt, device)
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
        result.extra["dtype"] = args.dtype
        if result.voc is not None:
            print(format_table(result.voc, data.class_names))
        if result.coco is not None:
            print("  ".join(f"{k} {result.coco[k]:.4f}" for k in STAT_NAMES))
        write_summary(result, out, data.class_names)  # atomic: a full disk leaves no half file
        if args.pr_curves and result.voc is not None:
            save_pr_curves(result.voc, args.pr_curves, data.class_names)
        if args.analysis:
            from ssdlib.metrics.analysis import analyze, format_analysis, plot_analysis

            analysis = analyze(result.detections, result.ground_truths, args.analysis_score)
            print(format_analysis(analysis))
            atomic_write(Path(f"{args.analysis}.json"), (json.dumps(analysis, indent=2) + "\n").encode())
            save_figure(plot_analysis(analysis), Path(f"{args.analysis}.png"))
    except USER_ERRORS as e:
        return report(e)
    print(f"metrics written to {out}", file=sys.stderr)
    return 0
