"""``python -m ssdlib demo``: draw detections on a folder of images.

Weights from a training checkpoint (``--config ... --ckpt PATH``) or a pretrained model
(``--weights torchvision-coco`` or a reference checkpoint file, see
``ssdlib.model.weights.pretrained_model``; its preprocessing is the config's input section,
default ``ssd300_coco_torchvision``)."""

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
    parser.add_argument("--images", type=Path, required=True, help="folder of images")
    parser.add_argument("--out", type=Path, required=True, help="folder for the pictures")
    parser.add_argument("--score-threshold", type=float, default=0.5)
    parser.add_argument("--device", default="auto")
    add_dtype_argument(parser)


def run(args: argparse.Namespace) -> int:
    import torch

    from ssdlib.config import load_config
    from ssdlib.engine.cpu_features import announce, describe_bf16_inference
    from ssdlib.engine.inference import detect_files, list_images, load_model, with_inference_dtype
    from ssdlib.engine.trainer import resolve_device
    from ssdlib.viz.draw import draw_detections

    try:
        device = resolve_device(args.device)
        paths = list_images(args.images)
        if args.weights:
            from ssdlib.model.weights import pretrained_model  # lazily: it may download

            cfg = load_config(args.config or "ssd300_coco_torchvision", args.overrides)
            model, class_names = pretrained_model(args.weights)
            model = model.to(device).eval()
        else:
            cfg = load_config(args.config or "shapes", args.overrides)
            model = load_model(cfg, args.ckpt, device)
            class_names = list(cfg.data.class_names)
        if args.dtype == "bf16":
            announce(describe_bf16_inference(torch.device(device)))
        model = with_inference_dtype(model, args.dtype)
        results = detect_files(model, paths, cfg.input.image_size, cfg.input.pixel_mean,
                               cfg.input.pixel_std, device,
                               score_threshold=args.score_threshold)  # fmt: skip
    except USER_ERRORS as e:
        return report(e)
    args.out.mkdir(parents=True, exist_ok=True)
    for path, (image, det) in zip(paths, results):
        picture = draw_detections(image, det.boxes, det.labels, det.scores, class_names)
        picture.save(args.out / f"{path.stem}.jpg", quality=92)
    total = sum(len(d) for _, d in results)
    print(f"{len(results)} pictures with {total} detections written to {args.out}", file=sys.stderr)
    return 0
