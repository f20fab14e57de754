"""YOLO-format folders (what Ultralytics, Roboflow, CVAT and Label Studio export).

Layouts (``root`` is the folder; the first that applies is used)::

    root/data.yaml                  train: images/train, val: images/val, names: [...] or {0: a}
    root/images/<split>/*.jpg       + root/labels/<split>/*.txt   (no data.yaml)
    root/images/*.jpg               + root/labels/*.txt           (split "all")

A data.yaml entry may be a folder, a ``.txt`` list of image paths, or a list of either,
relative to its ``path:`` key (else to the yaml's folder). The label file of an image is found
by the Ultralytics rule: the last ``images`` component of its path becomes ``labels`` and the
suffix ``.txt``. A label line is ``class cx cy w h`` normalised to [0, 1] (class ids 0-based);
a longer line with an odd count is a segmentation polygon ``class x1 y1 x2 y2 ...``, whose
bounding box is used. Class names: data.yaml ``names``, else ``classes.txt`` / ``obj.names``
in ``root``, else the names given (the config's ``data.class_names``).

Policies: a missing or empty label file is a background-only image (the YOLO convention);
exact duplicate lines are read once; boxes are converted to continuous pixel xyxy (the COCO
convention) and then clipped or dropped by :func:`ssdlib.data.common.make_target`. A line that
does not parse or names an unknown class id raises :class:`DatasetError` naming file and line.
``ssdlib data validate`` reports all of these up front.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from PIL import Image
from torch.utils.data import Dataset

from ssdlib.data.common import DatasetError, load_sample, make_target

__all__ = [
    "IMAGE_SUFFIXES", "YOLODataset", "YOLOLabels", "find_split_images", "label_path",
    "parse_yolo_labels", "read_class_names", "write_yolo",
]  # fmt: skip

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
NAME_FILES = ("classes.txt", "obj.names", "names.txt")


@dataclass
class YOLOLabels:
    """One parsed label file. ``boxes``: (N, 4) cx, cy, w, h normalised as written."""

    path: Path
    class_ids: list[int]
    boxes: list[tuple[float, float, float, float]]
    duplicates: list[int]  # 1-based line numbers repeating an earlier line (read once)
    exists: bool = True


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise DatasetError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping (train:, val:, names:)")
    return data


def _names_from_yaml(names, path: Path) -> list[str]:
    if isinstance(names, dict):
        keys = sorted(names)
        if keys != list(range(len(keys))):
            raise DatasetError(f"{path}: names keys must be 0..{len(keys) - 1}, got {keys}")
        return [str(names[k]) for k in keys]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise DatasetError(f"{path}: names must be a list or a {{id: name}} mapping")


def read_class_names(root: str | os.PathLike, fallback: Sequence[str] | None = None) -> list[str]:
    """Class names of a YOLO folder (index = class id); see the module docstring."""
    root = Path(root)
    if (root / "data.yaml").is_file():
        data = _load_yaml(root / "data.yaml")
        if "names" in data:
            return _names_from_yaml(data["names"], root / "data.yaml")
    for name in NAME_FILES:
        if (root / name).is_file():
            return [s.strip() for s in (root / name).read_text().splitlines() if s.strip()]
    if fallback:
        return list(fallback)
    raise DatasetError(
        f"{root}: no class names (expected data.yaml 'names:', classes.txt or obj.names, "
        "or data.class_names in the config)"
    )


def _images_in(entry: Path) -> list[Path]:
    if entry.is_dir():
        return sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if entry.suffix == ".txt" and entry.is_file():
        base = entry.parent
        lines = [s.strip() for s in entry.read_text().splitlines() if s.strip()]
        return [(base / s).resolve() if not Path(s).is_absolute() else Path(s) for s in lines]
    raise DatasetError(f"{entry}: image folder or list not found")


def find_split_images(root: str | os.PathLike, split: str) -> list[Path]:
    """The image files of ``split`` (sorted); raises :class:`DatasetError` naming what was
    expected when the split is not there."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: YOLO folder not found")
    yaml_path = root / "data.yaml"
    if yaml_path.is_file():
        data = _load_yaml(yaml_path)
        if split not in data or data[split] in (None, ""):
            raise DatasetError(f"{yaml_path}: no {split!r} entry (has {sorted(map(str, data))})")
        base = Path(data.get("path") or ".")
        base = base if base.is_absolute() else root / base
        entries = data[split] if isinstance(data[split], list) else [data[split]]
        return [p for e in entries for p in _images_in(base / str(e))]
    folder = root / "images" if split == "all" else root / "images" / split
    if not folder.is_dir():
        raise DatasetError(
            f"{folder}: split folder not found (expected {root}/data.yaml, images/<split>/ or, "
            "for split 'all', images/)"
        )
    return _images_in(folder)


def label_path(image: Path) -> Path:
    """The Ultralytics rule: .../images/x/a.jpg -> .../labels/x/a.txt."""
    parts = list(image.parts)
    for k in range(len(parts) - 2, -1, -1):
        if parts[k] == "images":
            parts[k] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")  # Darknet style: the label beside the image


def _parse_line(values: list[str], path: Path, lineno: int) -> tuple[int, tuple[float, ...]]:
    where = f"{path}: line {lineno}"
    if len(values) < 5 or (len(values) > 5 and len(values) % 2 == 0):
        raise DatasetError(f"{where}: expected 'class cx cy w h' (or a polygon), got {len(values)} values")
    try:
        cls_f, coords = float(values[0]), [float(v) for v in values[1:]]
    except ValueError:
        raise DatasetError(f"{where}: not a number in {' '.join(values)!r}") from None
    if cls_f != int(cls_f) or cls_f < 0:
        raise DatasetError(f"{where}: class id {values[0]!r} is not an integer >= 0")
    if len(coords) == 4:
        return int(cls_f), tuple(coords)
    xs, ys = coords[0::2], coords[1::2]  # polygon -> its bounding box
    x1, x2, y1, y2 = min(xs), max(xs), min(ys), max(ys)
    return int(cls_f), ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)


def parse_yolo_labels(path: str | os.PathLike) -> YOLOLabels:
    """Read one label file; a missing file is an empty one (``exists=False``)."""
    path = Path(path)
    if not path.is_file():
        return YOLOLabels(path, [], [], [], exists=False)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM from Windows editors is not a digit
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a text file") from None
    seen: set[tuple[str, ...]] = set()
    out = YOLOLabels(path, [], [], [])
    for lineno, line in enumerate(text.splitlines(), 1):
        values = line.split()
        if not values:
            continue
        if tuple(values) in seen:
            out.duplicates.append(lineno)
            continue
        seen.add(tuple(values))
        cls, box = _parse_line(values, path, lineno)
        out.class_ids.append(cls)
        out.boxes.append(box)  # type: ignore[arg-type]
    return out


def labels_to_target(
    labels: YOLOLabels, num_classes: int, image_id: str, height: int, width: int
) -> dict:
    """Parsed labels -> target dict (pixel xyxy ``(N, 4)``, labels ``1..C`` = id + 1)."""
    for cls in labels.class_ids:
        if cls >= num_classes:
            raise DatasetError(
                f"{labels.path}: unknown class id {cls} (expected 0..{num_classes - 1})"
            )
    b = torch.tensor(labels.boxes, dtype=torch.float64).reshape(-1, 4)
    scale = torch.tensor([width, height, width, height], dtype=torch.float64)
    xyxy = torch.cat([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], dim=1) * scale
    ids = torch.tensor(labels.class_ids, dtype=torch.int64) + 1
    difficult = torch.zeros(len(labels.class_ids), dtype=torch.bool)
    return make_target(xyxy, ids, difficult, image_id, height, width, labels.path)


class YOLODataset(Dataset):
    """A YOLO-format split returning ``(image (3, H, W) uint8, target)`` like the VOC and COCO
    datasets; ``target["image_id"]`` is the image path relative to ``root``."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transform: Callable | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.root, self.split, self.transform = Path(root), split, transform
        self.class_names = tuple(read_class_names(self.root, class_names))
        self.images = find_split_images(self.root, split)

    def __len__(self) -> int:
        return len(self.images)

    def image_path(self, index: int) -> Path:
        return self.images[index]

    def annotation_path(self, index: int) -> Path:
        return label_path(self.images[index])

    def image_id(self, index: int) -> str:
        path = self.images[index]
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    def get_target(self, index: int, height: int | None = None, width: int | None = None) -> dict:
        """Target of sample ``index``; without a size, the image header is read (no decode)."""
        if height is None or width is None:
            try:
                with Image.open(self.images[index]) as img:
                    width, height = img.size
            except OSError as e:
                raise DatasetError(f"{self.images[index]}: not a readable image ({e})") from e
        labels = parse_yolo_labels(self.annotation_path(index))
        return labels_to_target(labels, len(self.class_names), self.image_id(index), height, width)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        return load_sample(index, self.images[index], self.get_target, self.transform)

    def __repr__(self) -> str:
        return f"YOLODataset({self.root}, split={self.split!r}, n={len(self)})"


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _yolo_rows(target: dict, width: int, height: int) -> tuple[list[int], list[list[float]]]:
    """Labels and ``(N, 4)`` normalised cx, cy, w, h of a target's non-difficult boxes, clipped
    to the image first (a label file's values are meant to lie in [0, 1])."""
    boxes = target["boxes"].to(torch.float64).reshape(-1, 4)
    keep = ~target["difficult"] if "difficult" in target else torch.ones(len(boxes), dtype=torch.bool)
    boxes, labels = boxes[keep], target["labels"][keep]
    scale = torch.tensor([width, height, width, height], dtype=torch.float64)
    rel = torch.minimum(boxes.clamp(min=0), scale) / scale
    cxcywh = torch.cat([(rel[:, :2] + rel[:, 2:]) / 2, rel[:, 2:] - rel[:, :2]], dim=1)
    return labels.tolist(), cxcywh.tolist()


def write_yolo(
    out: str | os.PathLike,
    splits: dict[str, Dataset],
    class_names: Sequence[str],
    quality: int = 95,
) -> Path:
    """Export datasets returning ``(uint8 image (3, H, W), target with pixel xyxy boxes)`` (any
    :mod:`ssdlib.data` dataset without transform) to ``out/images/<split>/``,
    ``out/labels/<split>/`` and ``out/data.yaml``. Difficult objects are not written (YOLO
    has no such flag). Files are written atomically; returns ``out``."""
    import io

    out = Path(out)
    for split, dataset in splits.items():
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(len(dataset)):
            image, target = dataset[i]
            h, w = image.shape[-2:]
            buf = io.BytesIO()
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=quality,
                                                                 subsampling=0)  # fmt: skip
            _atomic_write(out / "images" / split / f"{i:06d}.jpg", buf.getvalue())
            lines = [
                f"{c - 1} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}" for c, (x, y, bw, bh) in
                zip(*_yolo_rows(target, w, h))
            ]  # fmt: skip
            text = "\n".join(lines) + ("\n" if lines else "")
            _atomic_write(out / "labels" / split / f"{i:06d}.txt", text.encode())
    meta = {"path": ".", **{s: f"images/{s}" for s in splits}, "names": list(class_names)}
    _atomic_write(out / "data.yaml", yaml.safe_dump(meta, sort_keys=False).encode())
    return out
