"""Pascal VOC (and any VOC-format folder, e.g. the generated Shapes set).

Layout: ``root/VOC{year}/{JPEGImages/<id>.jpg, Annotations/<id>.xml, ImageSets/Main/<split>.txt}``
(``root`` is the ``VOCdevkit`` folder of the official archives).

Pixel convention: the devkit writes 1-based inclusive corners; like lufficc/SSD and
amdegroot/ssd.pytorch we subtract 1 from all four, so ``boxes`` are 0-based and ``x2`` is the
index of the last pixel inside the box (1 px narrower than the continuous COCO convention;
irrelevant for SSD's IoU 0.5 matching but worth knowing when comparing loaders).

Difficult objects: dropped when ``keep_difficult=False`` (the SSD training recipe), kept and
flagged in ``target["difficult"]`` otherwise (evaluation ignores them, as in VOC07 mAP).
An annotation with no (kept) objects yields empty ``(0, 4)`` boxes: the sample is kept and the
training transform passes it through (the loss then sees only background).
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, Dataset

from ssdlib.config import VOC_CLASS_NAMES
from ssdlib.data.common import DatasetError, load_sample, make_target

__all__ = [
    "VOCAnnotation",
    "VOCDataset",
    "parse_voc_xml",
    "read_image_set",
    "voc0712_trainval",
]


@dataclass
class VOCAnnotation:
    """One parsed XML file. ``boxes`` are devkit coordinates (1-based inclusive) as read."""

    path: Path
    width: int | None
    height: int | None
    names: list[str] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    difficult: list[bool] = field(default_factory=list)


def _number(node: ET.Element, tag: str, path: Path, what: str) -> float:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise DatasetError(f"{path}: {what} has no <{tag}>")
    try:
        return float(child.text)  # "nan" parses: such boxes are dropped later, with a warning
    except ValueError:
        raise DatasetError(f"{path}: {what} <{tag}> is not a number: {child.text!r}") from None


def parse_voc_xml(path: str | os.PathLike) -> VOCAnnotation:
    """Read a VOC annotation file; raise :class:`DatasetError` naming the file on bad structure."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: annotation file not found")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DatasetError(f"{path}: malformed XML ({e})") from e
    size = root.find("size")
    width = height = None
    if size is not None:
        w, h = _number(size, "width", path, "<size>"), _number(size, "height", path, "<size>")
        if not (w > 0 and h > 0 and math.isfinite(w) and math.isfinite(h)):
            raise DatasetError(f"{path}: invalid <size> {w}x{h}")
        width, height = int(w), int(h)
    ann = VOCAnnotation(path=path, width=width, height=height)
    for k, obj in enumerate(root.iter("object")):
        what = f"object #{k}"
        name = obj.findtext("name")
        if name is None or not name.strip():
            raise DatasetError(f"{path}: {what} has no <name>")
        bb = obj.find("bndbox")
        if bb is None:
            raise DatasetError(f"{path}: {what} ({name.strip()}) has no <bndbox>")
        corners = ("xmin", "ymin", "xmax", "ymax")
        box = tuple(_number(bb, t, path, f"{what} <bndbox>") for t in corners)
        diff = obj.findtext("difficult")
        ann.names.append(name.strip())
        ann.boxes.append(box)  # type: ignore[arg-type]
        ann.difficult.append(diff is not None and diff.strip() not in ("", "0"))
    return ann


def read_image_set(voc_dir: str | os.PathLike, split: str) -> list[str]:
    """Image ids listed in ``voc_dir/ImageSets/Main/{split}.txt``."""
    path = Path(voc_dir) / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        raise DatasetError(f"{path}: image set file not found (split {split!r})")
    return [line.split()[0] for line in read_text_lines(path) if line.strip()]


def read_text_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 list file; a stray byte (0xFF from a bad copy) is an error naming it."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DatasetError(f"{path}: line {line} is not UTF-8 text (byte 0x{data[e.start]:02X}); "
                           "expected one image id per line") from e


def annotation_to_target(
    ann: VOCAnnotation,
    class_to_label: dict[str, int],
    image_id: str,
    height: int,
    width: int,
    keep_difficult: bool,
) -> dict:
    """Devkit annotation -> target dict (0-based boxes ``(N, 4)``, labels ``(N,)``)."""
    for name in ann.names:
        if name not in class_to_label:
            raise DatasetError(
                f"{ann.path}: unknown class {name!r} (expected one of {sorted(class_to_label)})"
            )
    keep = [keep_difficult or not d for d in ann.difficult]
    boxes = torch.tensor([b for b, k in zip(ann.boxes, keep) if k], dtype=torch.float64)
    boxes = boxes.reshape(-1, 4) - 1.0
    labels = torch.tensor(
        [class_to_label[n] for n, k in zip(ann.names, keep) if k], dtype=torch.int64
    )
    difficult = torch.tensor([d for d, k in zip(ann.difficult, keep) if k], dtype=torch.bool)
    return make_target(boxes, labels, difficult, image_id, height, width, ann.path)


class VOCDataset(Dataset):
    """VOC-format detection dataset returning ``(image (3, H, W) uint8, target)``.

    ``class_names`` maps names to labels ``1..C`` (index + 1); pass your own names to read
    custom VOC-format data. ``transform(image, target) -> (image, target)`` is applied last.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "trainval",
        year: str = "2007",
        keep_difficult: bool = False,
        transform: Callable | None = None,
        class_names: Sequence[str] = VOC_CLASS_NAMES,
    ) -> None:
        self.voc_dir = Path(root) / f"VOC{year}"
        if not self.voc_dir.is_dir():
            raise DatasetError(f"{self.voc_dir}: VOC folder not found (root={root}, year={year})")
        self.split, self.year = split, year
        self.keep_difficult = keep_difficult
        self.transform = transform
        self.class_names = tuple(class_names)
        self.class_to_label = {n: i + 1 for i, n in enumerate(self.class_names)}
        self.ids = read_image_set(self.voc_dir, split)

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        return self.voc_dir / "JPEGImages" / f"{self.ids[index]}.jpg"

    def annotation_path(self, index: int) -> Path:
        return self.voc_dir / "Annotations" / f"{self.ids[index]}.xml"

    def get_target(self, index: int, height: int | None = None, width: int | None = None) -> dict:
        """Target of sample ``index`` for an image of ``height`` x ``width`` (the decoded
        image's size); without them, the XML ``<size>`` (evaluation without decoding)."""
        ann = parse_voc_xml(self.annotation_path(index))
        if height is None or width is None:
            if ann.width is None or ann.height is None:
                raise DatasetError(f"{ann.path}: no <size> element")
            height, width = ann.height, ann.width
        return annotation_to_target(
            ann, self.class_to_label, self.ids[index], height, width, self.keep_difficult
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        return load_sample(index, self.image_path(index), self.get_target, self.transform)

    def __repr__(self) -> str:
        return f"VOCDataset({self.voc_dir}, split={self.split!r}, n={len(self)})"


def voc0712_trainval(root: str | os.PathLike, **kwargs) -> ConcatDataset:
    """The SSD paper's "07+12" training set: VOC2007 trainval + VOC2012 trainval."""
    return ConcatDataset(
        [VOCDataset(root, split="trainval", year=y, **kwargs) for y in ("2007", "2012")]
    )
