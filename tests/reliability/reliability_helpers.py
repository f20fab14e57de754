"""Shared pieces of the reliability suite (issue 8): a tiny Shapes config that trains in
seconds on a CPU and tiny VOC/COCO folders with chosen defects (imported by the test files;
pytest puts this folder on ``sys.path``).

Every test here runs offline, on the CPU, from fixed seeds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import yaml
from PIL import Image, ImageDraw

from ssdlib.config import Config, load_config

# A 0.25-width light model on 128 px Shapes, batch 4: one iteration takes a fraction of a second.
TINY: dict[str, dict] = {
    "model": {"width": 0.25},
    "data": {"num_train": 32, "source_size": 128, "num_workers": 0},
    "train": {
        "batch_size": 4, "max_iter": 10, "checkpoint_period": 2, "log_period": 1,
        "warmup_iters": 2, "lr": 0.01, "lr_steps": [100], "keep_checkpoints": 2, "seed": 0,
        "device": "cpu", "amp": "off",
    },
}  # fmt: skip
CLASSES = ["circle", "square", "triangle", "star", "hexagon"]  # shapes.yaml's data.class_names


def tiny_dict(**sections: dict) -> dict:
    """shapes.yaml with :data:`TINY` and then ``sections`` merged in (section -> keys)."""
    data = yaml.safe_load((resources.files("ssdlib") / "configs" / "shapes.yaml").read_text())
    for extra in (TINY, sections):
        for section, values in extra.items():
            data.setdefault(section, {}).update(values)
    return data


def write_config(path: Path, **sections: dict) -> Path:
    """A complete YAML config file (what a user passes to ``--config``)."""
    path.write_text(yaml.safe_dump(tiny_dict(**sections), sort_keys=False))
    return path


def tiny_config(tmp_path: Path, **sections: dict) -> Config:
    return load_config(write_config(tmp_path / "tiny.yaml", **sections))


# --- tiny VOC / COCO folders ---------------------------------------------------------------

SIZE = 64  # image side in pixels


def good_jpeg(path: Path) -> None:
    """A 64x64 grey image with a filled square at pixels 16..40 (its annotation below)."""
    img = Image.new("RGB", (SIZE, SIZE), (90, 90, 90))
    ImageDraw.Draw(img).rectangle([16, 16, 40, 40], fill=(220, 40, 40))
    img.save(path, format="JPEG", quality=95)


def truncated_jpeg(path: Path) -> None:
    good_jpeg(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # an interrupted copy: header fine, pixels cut


def zero_byte(path: Path) -> None:
    path.write_bytes(b"")


def voc_xml(objects: list[tuple[str, tuple]] | None = None) -> str:
    """Devkit XML; ``objects`` = [(name, (xmin, ymin, xmax, ymax)), ...] (1-based corners)."""
    objects = [("square", (17, 17, 41, 41))] if objects is None else objects
    body = "".join(
        f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b in objects
    )
    return f"<annotation><size><width>{SIZE}</width><height>{SIZE}</height></size>{body}</annotation>"


Sample = tuple[Callable[[Path], None] | None, str]  # (image writer or None = missing, xml)


def make_voc_root(root: Path, samples: dict[str, Sample]) -> Path:
    """``root/VOCdevkit/VOC2007`` with ``samples`` in split ``trainval``; returns ``root``
    (the config's ``data.root``)."""
    voc = root / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for stem, (write_image, xml) in samples.items():
        if write_image is not None:
            write_image(voc / "JPEGImages" / f"{stem}.jpg")
        (voc / "Annotations" / f"{stem}.xml").write_text(xml)
    (voc / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(samples) + "\n")
    return root


def good_samples(n: int) -> dict[str, Sample]:
    return {f"ok{i}": (good_jpeg, voc_xml()) for i in range(n)}


def voc_sections(root: Path, **train: object) -> dict[str, dict]:
    """Config sections that train on the VOC folder of :func:`make_voc_root`."""
    return {
        "data": {"dataset": "voc", "root": str(root), "train_splits": ["2007/trainval"]},
        "train": {"max_iter": 2, "checkpoint_period": 100, **train},
    }


def make_coco_root(root: Path, data: dict, images: dict[str, Callable[[Path], None]]) -> Path:
    """``root/coco/train2017/<images>`` + ``root/coco/annotations/instances_train2017.json``."""
    folder = root / "coco" / "train2017"
    folder.mkdir(parents=True)
    for name, write in images.items():
        write(folder / name)
    ann = root / "coco" / "annotations"
    ann.mkdir(parents=True)
    (ann / "instances_train2017.json").write_text(json.dumps(data))
    return root


def coco_dict(num_images: int = 2, categories: list[str] = CLASSES) -> dict:
    return {
        "images": [{"id": i + 1, "file_name": f"{i}.jpg", "width": SIZE, "height": SIZE}
                   for i in range(num_images)],
        "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 2, "bbox": [16, 16, 25, 25],
                         "area": 625, "iscrowd": 0} for i in range(num_images)],
        "categories": [{"id": k + 1, "name": c} for k, c in enumerate(categories)],
    }  # fmt: skip


def coco_sections(root: Path) -> dict[str, dict]:
    return {
        "data": {"dataset": "coco", "root": str(root), "train_splits": ["train2017"]},
        "train": {"max_iter": 2, "checkpoint_period": 100},
    }
