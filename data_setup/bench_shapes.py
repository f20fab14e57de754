"""Measure Shapes rendering speed on one core: ``python data_setup/bench_shapes.py [--size 256]``.

Reports images per second of wall time and of process CPU time (the latter stays meaningful
on a busy shared machine), best of several rounds; the number quoted in
``ssdlib/data/shapes.py`` comes from this script.
"""

from __future__ import annotations

import argparse
import statistics
import time

import _path  # noqa: F401  (repository root on sys.path)
import torch

from ssdlib.data.shapes import ShapesDataset, render_shapes


def images_per_second(fn, n: int, rounds: int) -> tuple[list[float], list[float]]:
    """(wall-time rates, CPU-time rates) per round."""
    wall, cpu = [], []
    for r in range(rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(n):
            fn(r * n + i)
        wall.append(n / (time.perf_counter() - t0))
        cpu.append(n / (time.process_time() - c0))
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ds = ShapesDataset(num_images=args.n * args.rounds, image_size=args.size)
    for name, fn in (
        ("render_shapes (no masks)", lambda i: render_shapes(0, i, args.size, with_masks=False)),
        ("ShapesDataset.__getitem__", ds.__getitem__),
    ):
        wall, cpu = images_per_second(fn, args.n, args.rounds)
        print(f"{name:28s} wall: best {max(wall):5.0f} img/s, median {statistics.median(wall):5.0f}"
              f" | CPU time: best {max(cpu):5.0f}, median {statistics.median(cpu):5.0f}")


if __name__ == "__main__":
    main()
