"""Download and unpack Pascal VOC2007 trainval+test and VOC2012 trainval (~3.6 GB of
archives) into DATA_ROOT/VOCdevkit.

Usage: ``python data_setup/get_voc.py [--root DIR] [--delete-archives]``. DATA_ROOT is ``--root``,
else ``$SSDLIB_DATA``, else ``data/``. Interrupted downloads resume where they stopped; run
it again. Same as ``python -m ssdlib data voc``.
"""

import sys

import _path  # noqa: F401  (repository root on sys.path)

from ssdlib.cli import main

if __name__ == "__main__":
    sys.exit(main(["data", "voc", *sys.argv[1:]]))
