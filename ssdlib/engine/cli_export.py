"""``python -m ssdlib export``: write a checkpoint or pretrained model as an ONNX file.

``--config C --ckpt FILE`` (a training checkpoint) or ``--weights NAME`` (see
``ssdlib.model.pretrained_model``) as for ``demo``. The file's graph and outputs are
described in :mod:`ssdlib.export`; run it with ``ssdlib demo --onnx FILE`` or onnxruntime."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssdlib.engine.errors import USER_ERRORS, report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ssdlib.export import DEFAULT_OPSET, EXPORT_DTYPES

    parser.add_argument("--config", default=None,
                        help="built-in name or YAML path (default shapes, or "
                             "ssd300_coco_torchvision with --weights)")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", type=Path, help="training checkpoint")
    source.add_argument("--weights", help="pretrained weights name (torchvision-coco) or file")
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--postprocess", action="store_true",
                        help="final detections in the graph (padded boxes, scores, labels and a "
                             "count per image) instead of (cls_logits, box_deltas)")  # fmt: skip
    parser.add_argument("--dtype", choices=list(EXPORT_DTYPES), default="fp32",
                        help="network weights in the file (input and outputs stay float32)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (>= 11)")


def run(args: argparse.Namespace) -> int:
    from ssdlib.engine.inference import load_detector
    from ssdlib.export import export_onnx

    try:
        model, cfg, class_names = load_detector(args.config, args.overrides, args.ckpt, args.weights)
        path = export_onnx(model, args.out, postprocess=args.postprocess, dtype=args.dtype,
                           opset=args.opset, image_size=cfg.input.image_size,
                           pixel_mean=cfg.input.pixel_mean, pixel_std=cfg.input.pixel_std,
                           class_names=class_names)  # fmt: skip
    except (*USER_ERRORS, ImportError) as e:
        return report(e)
    graph = "detections" if args.postprocess else "cls_logits, box_deltas"
    size = path.stat().st_size / 2**20
    print(f"{path}: {size:.1f} MiB, outputs {graph}, {args.dtype}, opset {args.opset}", file=sys.stderr)
    return 0
