"""``python -m ssdlib demo``: draw detections on a folder of images, a video or a camera.

``--images DIR --out DIR`` writes one picture per image; ``--video in.mp4 --out out.mp4`` and
``--camera N --out out.mp4`` write an annotated video at the input's size and frame rate
(:mod:`ssdlib.engine.video`; Ctrl-C stops a camera and keeps what was recorded).

Weights from a training checkpoint (``--config ... --ckpt PATH``), a pretrained model
(``--weights torchvision-coco`` or a reference checkpoint file, see
``ssdlib.model.pretrained_model``; its preprocessing is the config's input section,
default ``ssd300_coco_torchvision``) or an exported ONNX file (``--onnx model.onnx``, run in
onnxruntime; input size, normalisation and class names come from the file's metadata). All
three go through the same preprocessing, post-processing and drawing code."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssdlib.cli import add_dtype_argument
from ssdlib.engine.errors import USER_ERRORS, report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help="built-in name or YAML path (default shapes, or "
                             "ssd300_coco_torchvision with --weights)")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", type=Path, help="training checkpoint")
    source.add_argument("--weights", help="pretrained weights: shapes (shipped), torchvision-coco, or a file")
    source.add_argument("--onnx", type=Path, help="a file written by `ssdlib export` (onnxruntime, CPU)")
    media = parser.add_mutually_exclusive_group(required=True)
    media.add_argument("--images", type=Path, help="folder of images")
    media.add_argument("--video", type=Path, help="video file (needs ssdlib[video])")
    media.add_argument("--camera", type=int, metavar="N", help="camera /dev/videoN (ssdlib[video])")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for the pictures, or the video file (.mp4, .mkv, .mov, .avi)")
    parser.add_argument("--batch-size", type=int, default=8, help="frames or images per batch")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--score-threshold", type=float, default=0.5)
    parser.add_argument("--device", default="auto")
    add_dtype_argument(parser)


def load_source(args: argparse.Namespace):
    """``(model with .predict, device, (image_size, mean, std), class names)`` for the source."""
    from ssdlib.engine.device import resolve_device
    from ssdlib.engine.inference import load_detector, with_inference_dtype

    if args.onnx is not None:
        from ssdlib.export import OnnxDetector

        if args.dtype != "fp32":
            raise ValueError("--dtype: an ONNX file runs in the dtype it was exported with")
        model = OnnxDetector(args.onnx)
        i = model.input
        return model, "cpu", (i["image_size"], i["pixel_mean"], i["pixel_std"]), model.class_names
    device = resolve_device(args.device)
    if args.dtype == "bf16":
        import torch

        from ssdlib.engine.cpu_features import announce, describe_bf16_inference

        announce(describe_bf16_inference(torch.device(device)))
    model, cfg, class_names = load_detector(args.config, args.overrides, args.ckpt, args.weights, device)
    model = with_inference_dtype(model, args.dtype)
    return model, device, (cfg.input.image_size, cfg.input.pixel_mean, cfg.input.pixel_std), class_names


def run_video(args: argparse.Namespace) -> int:
    from ssdlib.engine.video import ENCODERS, annotate_video, open_camera, open_video

    try:
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
        model, device, (size, mean, std), class_names = load_source(args)
        if args.out.suffix.lower() not in ENCODERS:
            raise ValueError(f"--out {args.out}: expected a video file name ending in "
                             f"{', '.join(ENCODERS)}")  # fmt: skip
        source = open_video(args.video) if args.video is not None else open_camera(args.camera)
        frames, seconds = annotate_video(model, source, args.out, size, mean, std, class_names,
                                         device, batch_size=args.batch_size,
                                         max_frames=args.max_frames, progress=not args.no_progress,
                                         score_threshold=args.score_threshold)  # fmt: skip
    except (*USER_ERRORS, ImportError) as e:
        return report(e)
    print(f"{frames} frames in {seconds:.1f} s: {frames / seconds:.1f} frames/s on average "
          f"(decode + detect + draw + encode); written to {args.out}", file=sys.stderr)  # fmt: skip
    return 0


def run(args: argparse.Namespace) -> int:
    import io

    from ssdlib.engine.inference import detect_files, list_images
    from ssdlib.engine.outdir import ensure_output_dir
    from ssdlib.io import atomic_write
    from ssdlib.viz.draw import draw_detections

    if args.images is None:
        return run_video(args)
    try:
        ensure_output_dir(args.out, "--out")  # before the inference, not after it
        paths = list_images(args.images)
        model, device, (size, mean, std), class_names = load_source(args)
        results = detect_files(model, paths, size, mean, std, device, batch_size=args.batch_size,
                               score_threshold=args.score_threshold)  # fmt: skip
        for path, (image, det) in zip(paths, results):
            picture = draw_detections(image, det.boxes, det.labels, det.scores, class_names)
            buffer = io.BytesIO()
            picture.save(buffer, format="JPEG", quality=92)
            atomic_write(args.out / f"{path.stem}.jpg", buffer.getvalue())  # whole or not at all
    except (*USER_ERRORS, ImportError) as e:
        return report(e)
    total = sum(len(d) for _, d in results)
    print(f"{len(results)} pictures with {total} detections written to {args.out}", file=sys.stderr)
    return 0
