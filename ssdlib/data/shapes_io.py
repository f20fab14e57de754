"""Write the Shapes dataset to disk in BOTH VOC and COCO layout, so the real loaders (and
COCOeval / the VOC metric) are exercised on it.

Layout under ``out_dir``::

    VOCshapes/JPEGImages/{split}_{index:06d}.jpg       (quality 95, written once)
    VOCshapes/Annotations/{split}_{index:06d}.xml      (devkit 1-based inclusive corners)
    VOCshapes/ImageSets/Main/{train,test}.txt
    annotations/instances_{train,test}.json            (file_name relative to JPEGImages/)
    shapes.json                                         (parameters; written last = complete)

Read back with ``VOCDataset(out_dir, split="test", year="shapes", class_names=SHAPES_CLASSES)``
or ``COCODataset(out_dir / "VOCshapes/JPEGImages", out_dir / "annotations/instances_test.json")``.
COCO category ids are deliberately non-contiguous (:data:`SHAPES_COCO_CAT_IDS`) to exercise the
label mapping. COCO annotations carry a non-standard ``"difficult"`` flag that
:class:`~ssdlib.data.coco.COCODataset` reads when present.

Every file is written with :func:`ssdlib.io.atomic_write` (temporary name + ``os.replace``), so
an interrupted run never leaves a half-written file; ``shapes.json`` marks a complete folder. Only
that marker is fsync'ed: the data files can be regenerated, and fsyncing each of them tripled the
time to write the set.
"""

from __future__ import annotations

import io
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from ssdlib.data.shapes import JPEG_OPTIONS, SHAPES_CLASSES, ShapesSample, render_shapes
from ssdlib.io import atomic_write

__all__ = ["SHAPES_COCO_CAT_IDS", "ensure_shapes", "write_shapes"]

SHAPES_COCO_CAT_IDS: tuple[int, ...] = (1, 2, 3, 5, 7)
MARKER = "shapes.json"

SHAPES_FILES_VERSION = 2  # 2: JPEG without chroma subsampling


def _save_jpeg(path: Path, image) -> None:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, **JPEG_OPTIONS)
    atomic_write(path, buffer.getvalue(), durable=False)


def voc_xml(stem: str, sample: ShapesSample) -> bytes:
    """Devkit-style annotation; continuous boxes -> 1-based inclusive (``xmin = x1 + 1``,
    ``xmax = x2`` because ``x2`` is one past the last pixel)."""
    h, w = sample.image.shape[:2]
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOCshapes"
    ET.SubElement(root, "filename").text = f"{stem}.jpg"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", w), ("height", h), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    for box, label, diff, trunc in zip(
        sample.boxes, sample.labels, sample.difficult, sample.truncated
    ):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = SHAPES_CLASSES[label - 1]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = str(int(trunc))
        ET.SubElement(obj, "difficult").text = str(int(diff))
        bb = ET.SubElement(obj, "bndbox")
        x1, y1, x2, y2 = (int(v) for v in box)
        for tag, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bb, tag).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8")


def _coco_records(image_id: int, stem: str, sample: ShapesSample, next_ann_id: int):
    h, w = sample.image.shape[:2]
    image = {"id": image_id, "file_name": f"{stem}.jpg", "height": h, "width": w}
    anns = []
    for k, (box, label, diff) in enumerate(zip(sample.boxes, sample.labels, sample.difficult)):
        x1, y1, x2, y2 = (float(v) for v in box)
        anns.append({
            "id": next_ann_id + k,
            "image_id": image_id,
            "category_id": SHAPES_COCO_CAT_IDS[label - 1],
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "area": int(sample.visible_area[k]),  # visible pixels, like a COCO segment area
            "iscrowd": 0,
            "difficult": int(diff),
        })  # fmt: skip
    return image, anns


def write_shapes(
    out_dir: str | os.PathLike,
    num_train: int = 2000,
    num_test: int = 500,
    image_size: int = 256,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Render and write the Shapes dataset (see the module docstring). Returns ``out_dir``."""
    out = Path(out_dir)
    voc = out / "VOCshapes"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    (out / MARKER).unlink(missing_ok=True)  # incomplete until rewritten at the end
    categories = [
        {"id": c, "name": n, "supercategory": "shape"}
        for c, n in zip(SHAPES_COCO_CAT_IDS, SHAPES_CLASSES)
    ]
    for split, count in (("train", num_train), ("test", num_test)):
        stems, images, anns = [], [], []
        for index in tqdm(range(count), desc=f"shapes {split}", disable=not progress):
            stem = f"{split}_{index:06d}"
            sample = render_shapes(seed, index, image_size, split, with_masks=False)
            _save_jpeg(voc / "JPEGImages" / f"{stem}.jpg", sample.image)
            atomic_write(voc / "Annotations" / f"{stem}.xml", voc_xml(stem, sample), durable=False)
            image, records = _coco_records(index + 1, stem, sample, len(anns) + 1)
            stems.append(stem)
            images.append(image)
            anns.extend(records)
        image_set = ("\n".join(stems) + "\n").encode()
        atomic_write(voc / "ImageSets/Main" / f"{split}.txt", image_set, durable=False)
        coco = json.dumps({"images": images, "annotations": anns, "categories": categories})
        atomic_write(out / "annotations" / f"instances_{split}.json", coco.encode(), durable=False)
    params = _marker_params(num_train, num_test, image_size, seed)
    atomic_write(out / MARKER, json.dumps(params).encode())
    return out


def ensure_shapes(
    root: str | os.PathLike,
    num_train: int = 2000,
    num_test: int = 500,
    image_size: int = 256,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Generate Shapes into ``root`` unless a complete copy with the same parameters is there."""
    root = Path(root)
    params = _marker_params(num_train, num_test, image_size, seed)
    marker = root / MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == params:
                return root
        except json.JSONDecodeError:
            pass  # unreadable marker: regenerate
    return write_shapes(root, num_train, num_test, image_size, seed, progress)


def _marker_params(num_train: int, num_test: int, image_size: int, seed: int) -> dict:
    # The version changes whenever the generator or the files change, so that an old copy on
    # disk is regenerated instead of silently evaluated against a different test set.
    return {"version": SHAPES_FILES_VERSION, "num_train": num_train, "num_test": num_test,
            "image_size": image_size, "seed": seed}  # fmt: skip
