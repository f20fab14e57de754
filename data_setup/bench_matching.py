"""Where should ground truth be matched to the priors: in the data workers or in the step?

``python data_setup/bench_matching.py [--batch 32] [--repeats 20]``

Times, for a batch of Shapes targets after the SSD300 training augmentation and the 8732
SSD300 priors:

- in-worker: ``match`` + ``encode`` one image at a time with one thread (what a DataLoader
  worker does; torch uses a single thread there), summed over the batch;
- in-step, CPU: ``match_batch`` + ``encode`` on the whole batch;
- in-step, GPU: the same on CUDA when available (synchronised).
"""

from __future__ import annotations

import argparse
import statistics
import time

import _path  # noqa: F401  (repository root on sys.path)
import torch

from ssdlib.boxes import encode
from ssdlib.config import PriorsConfig
from ssdlib.data.shapes import ShapesDataset
from ssdlib.data.transforms import build_train_transform
from ssdlib.matching import match, match_batch
from ssdlib.priors import generate_priors


def timed(fn, repeats: int, sync=lambda: None) -> float:
    """Median wall time of ``fn()`` in milliseconds (after one warm-up call)."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    priors = generate_priors(PriorsConfig())
    ds = ShapesDataset("train", args.batch, image_size=300, transform=build_train_transform(300))
    targets = [ds[i][1] for i in range(args.batch)]
    boxes = [t["boxes"] for t in targets]
    labels = [t["labels"] for t in targets]
    print(f"priors {tuple(priors.shape)}, batch {args.batch}, "
          f"{sum(len(b) for b in boxes)} ground-truth boxes")  # fmt: skip

    def per_image():
        for b, lab in zip(boxes, labels):
            _, matched = match(b, lab, priors, 0.5)
            encode(matched.clamp(min=1e-6), priors)

    def batched(bx, lb, pr):
        def run():
            _, matched = match_batch(bx, lb, pr, 0.5)
            encode(matched.clamp(min=1e-6), pr)
        return run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    worker_ms = timed(per_image, args.repeats)
    step_cpu1_ms = timed(batched(boxes, labels, priors), args.repeats)
    torch.set_num_threads(threads)
    step_cpu_ms = timed(batched(boxes, labels, priors), args.repeats)
    print(f"in-worker, per image, 1 thread : {worker_ms:8.2f} ms per batch "
          f"({worker_ms / args.batch:.3f} ms per image)")  # fmt: skip
    print(f"in-step, match_batch, 1 thread : {step_cpu1_ms:8.2f} ms per batch")
    print(f"in-step, match_batch, {threads} threads: {step_cpu_ms:8.2f} ms per batch")
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        bx, lb, pr = [b.to(dev) for b in boxes], [lab.to(dev) for lab in labels], priors.to(dev)
        gpu_ms = timed(batched(bx, lb, pr), args.repeats, torch.cuda.synchronize)
        print(f"in-step, match_batch, GPU      : {gpu_ms:8.2f} ms per batch "
              f"({torch.cuda.get_device_name()})")  # fmt: skip


if __name__ == "__main__":
    main()
