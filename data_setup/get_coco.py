"""Download and unpack COCO 2017 train/val images + annotations (~19 GB of archives) into DATA_ROOT/coco.

Usage: ``python data_setup/get_coco.py [--root DIR] [--delete-archives]``. DATA_ROOT is ``--root``,
else ``$SSDLIB_DATA``, else ``data/``. Interrupted downloads resume where they stopped; run
it again. Same as ``python -m ssdlib data coco``.
"""

import sys

import _path  # noqa: F401  (repository root on sys.path)

from ssdlib.cli import main

if __name__ == "__main__":
    sys.exit(main(["data", "coco", *sys.argv[1:]]))
