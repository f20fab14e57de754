"""Download and unpack Pascal VOC2007 trainval+test and VOC2012 trainval (~3.6 GB of
archives) into DATA_ROOT/VOCdevkit.

Usage: ``python data_setup/get_voc.py [--root DIR] [--delete-archives]``. DATA_ROOT is ``--root``,
else ``$SSDLIB_DATA``, else ``data/``. Interrupted downloads resume where they stopped; run
it again. Same as ``python -m ssdlib data voc``.
"""

from __future__ import annotations

import argparse
import sys

import _path  # noqa: F401  (repository root on sys.path)

from ssdlib.data.download import DownloadError, get_voc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default=None, help="data root (default $SSDLIB_DATA or data/)")
    parser.add_argument("--delete-archives", action="store_true")
    args = parser.parse_args()
    try:
        where = get_voc(args.root, keep_archive=not args.delete_archives)
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"ready: {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
