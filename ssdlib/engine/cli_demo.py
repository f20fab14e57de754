"""``python -m ssdlib demo``: draw detections on a folder of images.

Weights from a training checkpoint (``--config ... --ckpt PATH``), a pretrained model
(``--weights torchvision-coco`` or a reference checkpoint file, see
``ssdlib.model.weights.pretrained_model``; its preprocessing is the config's input section,
default ``ssd300_coco_torchvision``) or an exported ONNX file (``--onnx model.onnx``, run in
onnxruntime; input size, normalisation and class names come from the file's metadata). All
three go through the same preprocessing, post-processing and drawing code."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssdlib.engine.errors import USER_ERRORS, report
from ssdlib.engine.inference import add_dtype_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help="built-in name or YAML path (default shapes, or "
                             "ssd300_coco_torchvision with --weights)")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", type=Path, help="training checkpoint")
    source.add_argument("--weights", help="pretrained weights name (torchvision-coco) or file")
    source.add_argument("--onnx", type=Path, help="a file written by `ssdlib export` (onnxruntime, CPU)")
    parser.add_argument("--images", type=Path, required=True, help="folder of images")
    parser.add_argument("--out", type=Path, required=True, help="folder for the pictures")
    parser.add_argument("--score-threshold", type=float, default=0.5)
    parser.add_argument("--device", default="auto")
    add_dtype_argument(parser)


def load_source(args: argparse.Namespace):
    """``(model with .predict, device, (image_size, mean, std), class names)`` for the source."""
    from ssdlib.engine.inference import load_detector, with_inference_dtype
    from ssdlib.engine.trainer import resolve_device

    if args.onnx is not None:
        from ssdlib.export import OnnxDetector

        if args.dtype != "fp32":
            raise ValueError("--dtype: an ONNX file runs in the dtype it was exported with")
        model = OnnxDetector(args.onnx)
        i = model.input
        return model, "cpu", (i["image_size"], i["pixel_mean"], i["pixel_std"]), model.class_names
    device = resolve_device(args.device)
    model, cfg, class_names = load_detector(args.config, args.overrides, args.ckpt, args.weights, device)
    model = with_inference_dtype(model, args.dtype)
    return model, device, (cfg.input.image_size, cfg.input.pixel_mean, cfg.input.pixel_std), class_names


def run(args: argparse.Namespace) -> int:
    from ssdlib.engine.inference import detect_files, list_images
    from ssdlib.viz.draw import draw_detections

    try:
        paths = list_images(args.images)
        model, device, (size, mean, std), class_names = load_source(args)
        results = detect_files(model, paths, size, mean, std, device,
                               score_threshold=args.score_threshold)  # fmt: skip
    except (*USER_ERRORS, ImportError) as e:
        return report(e)
    args.out.mkdir(parents=True, exist_ok=True)
    for path, (image, det) in zip(paths, results):
        picture = draw_detections(image, det.boxes, det.labels, det.scores, class_names)
        picture.save(args.out / f"{path.stem}.jpg", quality=92)
    total = sum(len(d) for _, d in results)
    print(f"{len(results)} pictures with {total} detections written to {args.out}", file=sys.stderr)
    return 0
