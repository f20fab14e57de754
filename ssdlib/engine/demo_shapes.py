"""``make demo``: the whole job on the embedded Shapes dataset, no download.

Generates Shapes (``DATA_ROOT/shapes``, VOC + COCO layout), trains the light model
(config ``shapes``), evaluates on the test split (VOC07 mAP@0.5 and COCO AP), and writes
detection pictures, PR curves and the loss curves under ``--out`` (default ``outputs/demo``).
The last line printed is ``Shapes test mAP@0.5 (VOC07): 0.xxxx``.

Re-running continues from the checkpoints in ``--out/train`` (finished: evaluation only);
``--fresh`` retrains from scratch.

    python -m ssdlib demo-shapes [--out DIR] [--fresh] [key=value ...]

(``python -m ssdlib.engine.demo_shapes``, what ``make demo`` runs, is the same command.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import torch


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. train.max_iter=200")
    p.add_argument("--config", default="shapes")
    p.add_argument("--out", type=Path, default=Path("outputs/demo"))
    p.add_argument("--fresh", action="store_true", help="delete --out/train and retrain")
    p.add_argument("--pictures", type=int, default=12, help="test images to draw")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads of the training process (default: cores - data workers)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from ssdlib.config import load_config
    from ssdlib.engine.cpu_features import announce_training_precision
    from ssdlib.engine.datasets import build_test_data
    from ssdlib.engine.device import resolve_device
    from ssdlib.engine.errors import USER_ERRORS, report
    from ssdlib.engine.evaluator import evaluate, save_pr_curves, write_summary
    from ssdlib.engine.host_memory import keep_freed_memory
    from ssdlib.engine.trainer import train
    from ssdlib.metrics.voc import format_table
    from ssdlib.viz.draw import draw_detections, plot_losses

    try:
        cfg = load_config(args.config, args.overrides)
        if resolve_device(cfg.train.device).type == "cpu":
            keep_freed_memory()  # no page faults per step (host_memory)
        # DataLoader workers run single-threaded; the training process takes the cores that
        # are left. More threads than cores is much worse than fewer: measured on the 2-core
        # machine while shared, a batch took 5-6 s with 2 threads beside a worker, 1.2-2 s with 1.
        cores = os.cpu_count() or 1
        torch.set_num_threads(args.threads or max(1, cores - cfg.data.num_workers))
        if cfg.data.dataset != "shapes":
            raise ValueError(f"the demo trains on Shapes; {args.config} uses {cfg.data.dataset}")
        train_dir = args.out / "train"
        if args.fresh and train_dir.exists():
            shutil.rmtree(train_dir)
        tic = time.perf_counter()
        data = build_test_data(cfg)  # writes DATA_ROOT/shapes once (VOC + COCO layout)
        print(f"Shapes ready in {time.perf_counter() - tic:.1f} s", flush=True)

        tic = time.perf_counter()
        announce_training_precision(cfg.train.amp, cfg.train.device)
        result = train(cfg, train_dir)
        minutes = (time.perf_counter() - tic) / 60
        ran = sum(1 for _ in result.losses)
        rate = ran / max(minutes * 60, 1e-9)
        print(f"training: {ran} iterations this run in {minutes:.2f} min ({rate:.2f} it/s, "
              f"batch {cfg.train.batch_size}, {torch.get_num_threads()} threads, "
              f"{cfg.data.num_workers} data workers); model at iteration {result.iteration}",
              flush=True)  # fmt: skip

        tic = time.perf_counter()
        device = next(result.model.parameters()).device  # CUDA when training used it
        ev = evaluate(result.model, data.dataset, cfg.test.batch_size, device, ("voc", "coco"),
                      data.class_names, cfg.test.use_07_metric, data.gt_json,
                      data.coco_image_ids, data.label_to_cat_id,
                      num_workers=min(cfg.data.num_workers, 1))  # fmt: skip
    except USER_ERRORS as e:
        return report(e)
    print(format_table(ev.voc, data.class_names))
    print(f"COCO AP@[.5:.95] {ev.coco['AP']:.4f}  AP50 {ev.coco['AP50']:.4f}  "
          f"AP75 {ev.coco['AP75']:.4f}  (evaluation {time.perf_counter() - tic:.1f} s)")
    ev.extra = {"train_minutes_this_run": round(minutes, 3), "iterations_this_run": ran,
                "iteration": result.iteration}  # fmt: skip
    write_summary(ev, args.out / "metrics.json", data.class_names)
    save_pr_curves(ev.voc, args.out / "pr_curves.png", data.class_names)
    import matplotlib.pyplot as plt

    plt.close(plot_losses(train_dir, args.out / "losses.png"))
    pictures = args.out / "detections"
    pictures.mkdir(parents=True, exist_ok=True)
    for k in range(min(args.pictures, len(data.dataset))):
        image = _load_original(data.dataset, k)
        keep = ev.detections[k]["scores"] >= 0.5
        det = {key: v[keep] for key, v in ev.detections[k].items()}
        draw_detections(image, det["boxes"], det["labels"], det["scores"], data.class_names
                        ).save(pictures / f"{ev.image_ids[k]}.jpg", quality=92)  # fmt: skip
    print(f"pictures in {pictures}, metrics in {args.out / 'metrics.json'}, "
          f"curves in {args.out}/pr_curves.png and losses.png")
    print(f"Shapes test mAP@0.5 (VOC07): {ev.voc['map']:.4f}")
    return 0


def _load_original(dataset, index: int) -> torch.Tensor:
    from ssdlib.data import load_image

    return load_image(dataset.image_path(index))


if __name__ == "__main__":
    from ssdlib.cli import main

    sys.exit(main(["demo-shapes", *sys.argv[1:]]))
