"""Generate the synthetic Shapes dataset (VOC + COCO layout) into DATA_ROOT/shapes.

Usage: ``python data_setup/make_shapes.py [--out DIR] [--train 2000] [--test 500] [--size 256]
[--seed 0]``. No download needed; takes seconds. Same as ``python -m ssdlib data shapes``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _path  # noqa: F401  (repository root on sys.path)

from ssdlib.data.download import data_root
from ssdlib.data.shapes_io import ensure_shapes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="default: DATA_ROOT/shapes")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = ensure_shapes(args.out or data_root() / "shapes", args.train, args.test, args.size, args.seed)
    print(f"Shapes ready in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
