"""Measure Shapes rendering speed on one core: ``python data_setup/bench_shapes.py [--size 256]``.

Reports the best of several rounds (the median is printed too) because shared machines are
noisy; the number quoted in ``ssdlib/data/shapes.py`` comes from this script.
"""

from __future__ import annotations

import argparse
import statistics
import time

import _path  # noqa: F401  (repository root on sys.path)
import torch

from ssdlib.data.shapes import ShapesDataset, render_shapes


def images_per_second(fn, n: int, rounds: int) -> list[float]:
    rates = []
    for r in range(rounds):
        t0 = time.perf_counter()
        for i in range(n):
            fn(r * n + i)
        rates.append(n / (time.perf_counter() - t0))
    return rates


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
        rates = images_per_second(fn, args.n, args.rounds)
        print(f"{name:28s} best {max(rates):6.0f} img/s   median {statistics.median(rates):6.0f}")


if __name__ == "__main__":
    main()
