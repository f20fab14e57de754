"""``python -m ssdlib data shapes|voc|coco|validate``: prepare and check datasets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssdlib.data.download import DownloadError, data_root, get_coco, get_voc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    p = sub.add_parser("shapes", help="generate the synthetic Shapes dataset (VOC + COCO layout)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: DATA_ROOT/shapes)")
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--test", type=int, default=500)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=["voc", "yolo"], default="voc",
                   help="voc: VOC + COCO layout (default); yolo: images/, labels/, data.yaml")  # fmt: skip
    for name, what in (("voc", "VOC2007 trainval+test, VOC2012 trainval"),
                       ("coco", "COCO 2017 train/val images + annotations")):  # fmt: skip
        p = sub.add_parser(name, help=f"download and unpack {what}")
        p.add_argument("--root", type=Path, default=None, help="data root (default $SSDLIB_DATA or data/)")
        p.add_argument("--delete-archives", action="store_true", help="remove archives once unpacked")
    p = sub.add_parser("validate", help="check a VOC or YOLO folder or a COCO json, list every problem")
    p.add_argument("path", type=Path, help="VOC folder (JPEGImages/...), YOLO folder (data.yaml or "
                   "images/ + labels/) or COCO image folder")  # fmt: skip
    p.add_argument("--classes", default=None, help="comma-separated class names (VOC folder; "
                   "YOLO folder without data.yaml names or classes.txt)")  # fmt: skip
    p.add_argument("--ann-file", type=Path, default=None, help="COCO instances json")
    p.add_argument("--no-decode", action="store_true", help="do not decode images (faster)")


def run(args: argparse.Namespace) -> int:
    if args.data_command == "shapes":
        from ssdlib.data.shapes_io import write_shapes
        from ssdlib.engine.outdir import ensure_output_dir

        for name in ("train", "test", "size"):
            value, least = getattr(args, name), 1 if name == "size" else 0
            if value < least:
                print(f"error: --{name} is {value}; expected >= {least}", file=sys.stderr)
                return 2
        out = args.out or data_root() / ("shapes" if args.format == "voc" else "shapes_yolo")
        ensure_output_dir(out, "--out")  # before rendering, not after it
        if args.format == "yolo":
            from ssdlib.data.shapes import ShapesDataset
            from ssdlib.data.yolo import write_yolo

            splits = {"train": ShapesDataset("train", args.train, args.size, args.seed),
                      "val": ShapesDataset("test", args.test, args.size, args.seed)}  # fmt: skip
            write_yolo(out, splits, ShapesDataset.class_names)
        else:
            write_shapes(out, args.train, args.test, args.size, args.seed)
        print(f"Shapes written to {out}")
        return 0
    if args.data_command in ("voc", "coco"):
        fetch = get_voc if args.data_command == "voc" else get_coco
        try:
            where = fetch(args.root, keep_archive=not args.delete_archives)
        except DownloadError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"{args.data_command.upper()} ready in {where}")
        return 0
    from ssdlib.data.validate import is_yolo_folder, validate_dataset

    classes = args.classes.split(",") if args.classes else None
    if classes is None and args.ann_file is None and not is_yolo_folder(args.path):
        from ssdlib.config import VOC_CLASS_NAMES

        classes = list(VOC_CLASS_NAMES)
    report = validate_dataset(args.path, classes, args.ann_file, not args.no_decode)
    print(report.format())
    return 0 if report.ok else 1
