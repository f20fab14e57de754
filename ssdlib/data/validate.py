"""Check a whole "bring your own data" folder before training and report EVERY problem at once.

Severity:

- ``error``: training would crash or learn from wrong data (missing/corrupt/empty image,
  malformed XML/json, missing field, unknown class, annotation pointing to nothing);
- ``warning``: handled by a documented policy but worth knowing (box outside the image ->
  clipped; NaN/zero-area/inverted box -> dropped; image without objects -> background only;
  XML ``<size>`` disagreeing with the decoded image).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ssdlib.data.coco import check_coco_dict
from ssdlib.data.common import DatasetError, load_image
from ssdlib.data.voc import parse_voc_xml, read_text_lines
from ssdlib.data.yolo import find_split_images, label_path, parse_yolo_labels, read_class_names

__all__ = [
    "Problem", "ValidationReport", "validate_coco", "validate_dataset", "validate_voc_folder",
    "validate_yolo_folder",
]  # fmt: skip


@dataclass(frozen=True)
class Problem:
    file: str
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        return f"{self.severity}: {self.file}: {self.message}"


@dataclass
class ValidationReport:
    problems: list[Problem] = field(default_factory=list)
    num_images: int = 0
    num_boxes: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, file, message: str, severity: str = "error") -> None:
        self.problems.append(Problem(str(file), message, severity))

    def format(self) -> str:
        head = (f"{self.num_images} images, {self.num_boxes} boxes: "
                f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)")  # fmt: skip
        return "\n".join([head, *map(str, self.problems)])


def _box_problem(box: Sequence[float], width: int | None, height: int | None) -> tuple[str, str]:
    """``(severity, message)`` for one xyxy box, or ``("", "")`` when it is fine."""
    x1, y1, x2, y2 = box
    if not all(math.isfinite(v) for v in box):
        return "warning", f"box {list(box)} has NaN/inf coordinates (will be dropped)"
    if x2 <= x1 or y2 <= y1:
        return "warning", f"box {list(box)} has x2<=x1 or y2<=y1 (will be dropped)"
    if width is not None and height is not None:
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            if x1 >= width or y1 >= height or x2 <= 0 or y2 <= 0:
                return "warning", f"box {list(box)} lies outside the {width}x{height} image (dropped)"
            return "warning", f"box {list(box)} exceeds the {width}x{height} image (will be clipped)"
    return "", ""


def _image_size(path: Path, report: ValidationReport) -> tuple[int | None, int | None]:
    try:
        image = load_image(path)
    except DatasetError as e:
        report.add(path, str(e).removeprefix(f"{path}: "))
        return None, None
    return int(image.shape[2]), int(image.shape[1])


def _check_exists(path: Path, report: ValidationReport) -> None:
    """Without decoding: the file must exist and not be empty (a 0-byte file is a common
    leftover of an interrupted copy, and costs nothing to catch)."""
    if not path.is_file():
        report.add(path, "image file not found")
    elif path.stat().st_size == 0:
        report.add(path, "image file is empty (0 bytes)")


def validate_voc_folder(
    voc_dir: str | os.PathLike,
    class_names: Sequence[str],
    splits: Sequence[str] | None = None,
    decode_images: bool = True,
) -> ValidationReport:
    """Check a VOC-format folder (``JPEGImages/``, ``Annotations/``, ``ImageSets/Main/*.txt``).

    ``splits=None`` checks every ``ImageSets/Main/*.txt``. ``decode_images`` fully decodes each
    image (catches truncation; slower)."""
    voc_dir = Path(voc_dir)
    report = ValidationReport()
    sets_dir = voc_dir / "ImageSets" / "Main"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        if not (voc_dir / sub).is_dir():
            report.add(voc_dir / sub, "folder not found")
    if not report.ok:
        return report
    if splits is None:
        split_files = sorted(sets_dir.glob("*.txt"))
        if not split_files:
            report.add(sets_dir, "no split files (*.txt)")
    else:
        split_files = [sets_dir / f"{s}.txt" for s in splits]
    ids: dict[str, None] = {}
    for f in split_files:
        if not f.is_file():
            report.add(f, "split file not found")
            continue
        try:
            lines = read_text_lines(f)
        except DatasetError as e:
            report.add(f, str(e).removeprefix(f"{f}: "))
            continue
        ids.update((line.split()[0], None) for line in lines if line.strip())
    known = set(class_names)
    for image_id in ids:
        img_path = voc_dir / "JPEGImages" / f"{image_id}.jpg"
        xml_path = voc_dir / "Annotations" / f"{image_id}.xml"
        report.num_images += 1
        width = height = None
        if decode_images:
            width, height = _image_size(img_path, report)
        else:
            _check_exists(img_path, report)
        try:
            ann = parse_voc_xml(xml_path)
        except DatasetError as e:
            report.add(xml_path, str(e).removeprefix(f"{xml_path}: "))
            continue
        if width is not None and ann.width is not None and (ann.width, ann.height) != (width, height):
            report.add(xml_path, f"<size> {ann.width}x{ann.height} but the image is "
                       f"{width}x{height} (the image size is used)", "warning")  # fmt: skip
        if not ann.names:
            report.add(xml_path, "no objects (trained as background only)", "warning")
        width, height = (width, height) if width is not None else (ann.width, ann.height)
        for name, box in zip(ann.names, ann.boxes):
            report.num_boxes += 1
            if name not in known:
                report.add(xml_path, f"unknown class {name!r}")
            pixel_box = [v - 1 for v in box]  # devkit 1-based -> the loader's 0-based
            severity, message = _box_problem(pixel_box, width, height)
            if severity:
                report.add(xml_path, f"{name}: {message}", severity)
    return report


def validate_coco(
    image_root: str | os.PathLike, ann_file: str | os.PathLike, decode_images: bool = True
) -> ValidationReport:
    """Check a COCO instances json and the images it names (relative to ``image_root``)."""
    image_root, ann_file = Path(image_root), Path(ann_file)
    report = ValidationReport()
    try:
        data = json.loads(ann_file.read_text())
    except FileNotFoundError:
        report.add(ann_file, "annotation file not found")
        return report
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        report.add(ann_file, f"malformed json ({e})")
        return report
    except RecursionError:
        report.add(ann_file, "json nested too deeply")
        return report
    for message in check_coco_dict(data, ann_file):
        report.add(ann_file, message.removeprefix(f"{ann_file}: "))
    if not report.ok:
        return report
    sizes: dict = {}
    for rec in data["images"]:
        report.num_images += 1
        path = image_root / rec["file_name"]
        if decode_images:
            sizes[rec["id"]] = _image_size(path, report)
        else:
            _check_exists(path, report)
            sizes[rec["id"]] = (rec.get("width"), rec.get("height"))
    with_boxes = set()
    for k, ann in enumerate(data["annotations"]):
        report.num_boxes += 1
        if ann.get("iscrowd", 0):
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        severity, message = _box_problem([x, y, x + w, y + h], *sizes.get(ann["image_id"], (None,) * 2))
        if severity:
            report.add(ann_file, f"annotations[{k}] (id={ann['id']}): {message}", severity)
        else:
            with_boxes.add(ann["image_id"])
    for rec in data["images"]:
        if rec["id"] not in with_boxes:
            report.add(image_root / rec["file_name"], "no usable (non-crowd) box: dropped for "
                       "training, kept for evaluation", "warning")  # fmt: skip
    return report


# Label files store 6 decimals: a box touching the border may round 5e-7 past it.
_SLACK = 1e-6


def _yolo_splits(root: Path) -> list[str]:
    if (root / "data.yaml").is_file():
        import yaml

        data = yaml.safe_load((root / "data.yaml").read_text()) or {}
        return [s for s in ("train", "val", "test") if data.get(s)]
    sub = sorted(p.name for p in (root / "images").glob("*") if p.is_dir())
    return sub or ["all"]


def _check_yolo_labels(labels, num_classes: int, report: ValidationReport) -> None:
    path = labels.path
    for lineno in labels.duplicates:
        report.add(path, f"line {lineno} repeats an earlier line (read once)", "warning")
    for k, (cls, box) in enumerate(zip(labels.class_ids, labels.boxes)):
        report.num_boxes += 1
        what = f"box #{k} (class {cls})"
        if cls >= num_classes:
            report.add(path, f"{what}: unknown class id {cls} (expected 0..{num_classes - 1})")
        if not all(math.isfinite(v) for v in box):
            report.add(path, f"{what}: NaN/inf values {list(box)} (will be dropped)", "warning")
        elif box[2] <= 0 or box[3] <= 0:
            report.add(path, f"{what}: width/height {box[2]} {box[3]} not > 0 (will be dropped)",
                       "warning")  # fmt: skip
        else:
            cx, cy, w, h = box
            corners = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            if not all(-_SLACK <= v <= 1.0 + _SLACK for v in (*box, *corners)):
                report.add(path, f"{what}: values {list(box)} outside [0, 1] (the box is clipped "
                           "to the image, or dropped when nothing is left)", "warning")  # fmt: skip


def validate_yolo_folder(
    root: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
    decode_images: bool = True,
) -> ValidationReport:
    """Check a YOLO-format folder (see :mod:`ssdlib.data.yolo`): class names, every label line
    (format, class id, values outside [0, 1], duplicates), missing/empty label files, label
    files without an image, images that do not decode. ``splits=None``: every split found."""
    root = Path(root)
    report = ValidationReport()
    try:
        names = read_class_names(root, class_names)
        split_list = list(splits) if splits is not None else _yolo_splits(root)
    except DatasetError as e:
        report.add(root, str(e).removeprefix(f"{root}: "))
        return report
    if class_names and list(class_names) != names:
        report.add(root, f"class names {names} differ from the given {list(class_names)}")
    label_dirs: set[Path] = set()
    seen_labels: set[Path] = set()
    for split in split_list:
        try:
            images = find_split_images(root, split)
        except DatasetError as e:
            report.add(root, str(e))
            continue
        for img in images:
            report.num_images += 1
            if decode_images:
                _image_size(img, report)
            else:
                _check_exists(img, report)
            lab = label_path(img)
            label_dirs.add(lab.parent)
            seen_labels.add(lab.resolve())
            try:
                labels = parse_yolo_labels(lab)
            except DatasetError as e:
                report.add(lab, str(e).removeprefix(f"{lab}: "))
                continue
            if not labels.exists:
                report.add(img, f"no label file {lab.name} (trained as background only)", "warning")
            elif not labels.class_ids:
                report.add(lab, "no objects (trained as background only)", "warning")
            _check_yolo_labels(labels, len(names), report)
    for folder in sorted(label_dirs):
        for lab in sorted(folder.glob("*.txt")):
            if lab.resolve() not in seen_labels:
                report.add(lab, "label file without an image (ignored)", "warning")
    return report


def is_yolo_folder(path: str | os.PathLike) -> bool:
    """A YOLO folder has a ``data.yaml`` or a ``labels/`` folder (VOC has ``Annotations/``)."""
    return (Path(path) / "data.yaml").is_file() or (Path(path) / "labels").is_dir()


def validate_dataset(
    path: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    ann_file: str | os.PathLike | None = None,
    decode_images: bool = True,
) -> ValidationReport:
    """VOC folder (give ``class_names``), COCO (give ``ann_file``; ``path`` = image folder) or a
    YOLO folder (recognised by its ``data.yaml`` or ``labels/`` folder)."""
    if ann_file is not None:
        return validate_coco(path, ann_file, decode_images)
    if is_yolo_folder(path):
        return validate_yolo_folder(path, class_names, decode_images=decode_images)
    if class_names is None:
        raise ValueError("validate_dataset: give class_names (VOC folder) or ann_file (COCO)")
    return validate_voc_folder(path, class_names, decode_images=decode_images)
