"""Datasets from a config: where the files are, which loader, which transform.

Data root: ``data.root`` if set, else ``$SSDLIB_DATA``, else ``data/``. Expected layouts::

    voc:    ROOT/VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main}  (+ VOC2012)
    coco:   ROOT/coco/{train2017,val2017}/*.jpg, ROOT/coco/annotations/instances_*.json
    shapes: ROOT/shapes/  (test split written on demand by ``ensure_shapes``; training renders
            its images on the fly)
    yolo:   ROOT itself: ROOT/data.yaml or ROOT/images/<split>/ + ROOT/labels/<split>/
            (splits are data.yaml keys or folder names, e.g. train_splits [train], test_split val)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import ConcatDataset, Dataset

from ssdlib.config import Config, ConfigError
from ssdlib.data import (
    SHAPES_COCO_CAT_IDS,
    COCODataset,
    DatasetError,
    ShapesDataset,
    VOCDataset,
    YOLODataset,
    build_test_transform,
    build_train_transform,
    ensure_shapes,
)
from ssdlib.data.download import data_root
from ssdlib.data.validate import (
    ValidationReport,
    validate_coco,
    validate_voc_folder,
    validate_yolo_folder,
)

__all__ = [
    "EvalData", "build_split_dataset", "build_test_data", "build_train_dataset", "check_class_names",
    "check_train_data", "resolve_root",
]  # fmt: skip

SHAPES_SEED = 0  # the dataset's identity (as written by ``ssdlib data shapes``), not the run's


@dataclass
class EvalData:
    """An evaluation dataset and what the COCO metric needs to read its ground truth.

    ``coco_image_ids`` maps a target's ``image_id`` to the json's image id; ``label_to_cat_id``
    maps a model label (1..C) to the json's category id.
    """

    dataset: Dataset
    class_names: tuple[str, ...]
    gt_json: Path | None = None
    coco_image_ids: dict | None = None
    label_to_cat_id: dict[int, int] | None = None


def resolve_root(cfg: Config) -> Path:
    return data_root(cfg.data.root or None)


def _voc_dir(root: Path, year: str) -> Path:
    devkit = root / "VOCdevkit"
    voc = devkit / f"VOC{year}"
    if not (voc / "JPEGImages").is_dir():
        raise DatasetError(
            f"VOC data not found: expected {voc}/JPEGImages, Annotations and ImageSets/Main "
            f"(data root {root}; set data.root or $SSDLIB_DATA, or run 'python -m ssdlib data voc')"
        )
    return devkit


def _coco_paths(root: Path, split: str) -> tuple[Path, Path]:
    images, ann = root / "coco" / split, root / "coco" / "annotations" / f"instances_{split}.json"
    if not images.is_dir() or not ann.is_file():
        raise DatasetError(
            f"COCO data not found: expected {images}/*.jpg and {ann} (data root {root}; set "
            "data.root or $SSDLIB_DATA, or run 'python -m ssdlib data coco')"
        )
    return images, ann


def _voc_split(split: str) -> tuple[str, str]:
    year, sep, name = split.partition("/")
    if not sep:
        raise ConfigError(f"VOC split {split!r}: expected 'YEAR/SET', e.g. '2007/trainval'")
    return year, name


def check_class_names(cfg: Config, names: tuple[str, ...], what: str) -> None:
    """Raise before any work when the dataset's classes disagree with the model's."""
    if len(names) != cfg.model.num_classes:
        raise ConfigError(
            f"{what} has {len(names)} classes {list(names)[:6]}... but model.num_classes is "
            f"{cfg.model.num_classes}; set model.num_classes and data.class_names to match"
        )
    if cfg.data.class_names and tuple(cfg.data.class_names) != tuple(names):
        raise ConfigError(
            f"{what} classes {list(names)} differ from data.class_names {cfg.data.class_names} "
            "(same count, different names or order: labels would be mixed up)"
        )


def check_train_data(cfg: Config) -> ValidationReport | None:
    """Validate the VOC/COCO training folders before any work: raise one :class:`DatasetError`
    listing EVERY error (missing/empty image, malformed XML/json, missing field, unknown class,
    ...). Images are not decoded here (fast); a truncated image is reported by the loader,
    with the sample index and file. Warnings (boxes to be clipped or dropped) do not stop
    training: they are summarised in the returned report. Shapes (generated) returns None."""
    d, root = cfg.data, resolve_root(cfg)
    report = ValidationReport()
    if d.dataset == "voc":
        for split in d.train_splits:
            year, name = _voc_split(split)
            voc = _voc_dir(root, year) / f"VOC{year}"
            part = validate_voc_folder(voc, d.class_names, [name], decode_images=False)
            _merge(report, part)
    elif d.dataset == "coco":
        for split in d.train_splits:
            _merge(report, validate_coco(*_coco_paths(root, split), decode_images=False))
    elif d.dataset == "yolo":
        _merge(report, validate_yolo_folder(root, d.class_names, d.train_splits, decode_images=False))
    else:
        return None
    if not report.ok:
        lines = [f"  {p}" for p in report.errors]
        raise DatasetError(
            f"training data ({d.dataset}, root {root}) has {len(report.errors)} error(s); fix them "
            "and run again ('python -m ssdlib data validate PATH' lists them too):\n"
            + "\n".join(lines)
        )
    return report


def _merge(into: ValidationReport, part: ValidationReport) -> None:
    into.problems += part.problems
    into.num_images += part.num_images
    into.num_boxes += part.num_boxes


def build_train_dataset(cfg: Config, validate: bool = True) -> Dataset:
    """The training set of ``cfg`` with SSD augmentation; boxes relative after the transform.

    ``validate``: check VOC/COCO folders first (:func:`check_train_data`)."""
    d, root = cfg.data, resolve_root(cfg)
    if validate:
        report = check_train_data(cfg)
        if report is not None and report.warnings:
            print(f"training data: {len(report.warnings)} warning(s) (boxes clipped or dropped, "
                  "images without objects); 'python -m ssdlib data validate' lists them",
                  file=sys.stderr)  # fmt: skip
    tf = build_train_transform(cfg.input.image_size, cfg.input.pixel_mean, cfg.input.pixel_std,
                               d.augment)  # fmt: skip
    if d.dataset == "shapes":
        # Rendered on the fly, no disk: the pixels write_shapes saves (after a JPEG round trip
        # when data.jpeg is set), each rendering shared by data.views samples.
        ds = ShapesDataset("train", d.num_train, d.source_size, SHAPES_SEED, tf, d.keep_difficult,
                           views=d.views, jpeg=d.jpeg)  # fmt: skip
        names = ds.class_names
    elif d.dataset == "voc":
        parts = []
        for split in d.train_splits:
            year, name = _voc_split(split)
            parts.append(VOCDataset(_voc_dir(root, year), name, year, d.keep_difficult, tf,
                                    d.class_names))  # fmt: skip
        ds, names = (parts[0] if len(parts) == 1 else ConcatDataset(parts)), parts[0].class_names
    elif d.dataset == "yolo":
        parts = [YOLODataset(root, s, tf, d.class_names) for s in d.train_splits]
        ds, names = (parts[0] if len(parts) == 1 else ConcatDataset(parts)), parts[0].class_names
    else:
        parts = [COCODataset(*_coco_paths(root, s), transform=tf) for s in d.train_splits]
        ds, names = (parts[0] if len(parts) == 1 else ConcatDataset(parts)), parts[0].class_names
    check_class_names(cfg, tuple(names), f"training set ({d.dataset})")
    return ds


def build_split_dataset(cfg: Config, split: str, root: Path | None = None) -> Dataset:
    """One split of the config's dataset as files give it: no transform (uint8 images, pixel
    boxes), difficult objects kept and flagged. ``split`` is written as in ``data.train_splits``
    (``2007/trainval`` for VOC, ``train2017`` for COCO, a data.yaml key for YOLO, ``train`` /
    ``test`` for Shapes: ``num_train / views`` resp. ``num_test`` renderings, not written)."""
    d = cfg.data
    root = resolve_root(cfg) if root is None else Path(root)
    if d.dataset == "shapes":
        n = d.num_train // max(d.views, 1) if split == "train" else d.num_test
        return ShapesDataset(split, n, d.source_size, SHAPES_SEED)  # boxes as trained, no JPEG
    if d.dataset == "voc":
        year, name = _voc_split(split)
        return VOCDataset(_voc_dir(root, year), name, year, True, None, d.class_names)
    if d.dataset == "yolo":
        return YOLODataset(root, split, None, d.class_names)
    return COCODataset(*_coco_paths(root, split), remove_images_without_annotations=False)


def build_test_data(cfg: Config, progress: bool = True) -> EvalData:
    """The evaluation set (difficult objects kept and flagged) plus its COCO ground truth."""
    d, root = cfg.data, resolve_root(cfg)
    tf = build_test_transform(cfg.input.image_size, cfg.input.pixel_mean, cfg.input.pixel_std)
    if d.dataset == "shapes":
        # Only the test split goes to disk (VOC + COCO files, read back by the real loaders and
        # COCOeval); training renders its images on the fly, so num_train can be large.
        folder = ensure_shapes(root / "shapes", 0, d.num_test, d.source_size, SHAPES_SEED,
                               progress)  # fmt: skip
        ds = VOCDataset(folder, d.test_split, "shapes", True, tf, ShapesDataset.class_names)
        gt_json = folder / "annotations" / f"instances_{d.test_split}.json"
        ids = {f"{d.test_split}_{i:06d}": i + 1 for i in range(len(ds))}  # as write_shapes
        cats = {k + 1: c for k, c in enumerate(SHAPES_COCO_CAT_IDS)}
        data = EvalData(ds, ds.class_names, gt_json, ids, cats)
    elif d.dataset == "voc":
        year, name = _voc_split(d.test_split)
        ds = VOCDataset(_voc_dir(root, year), name, year, True, tf, d.class_names)
        data = EvalData(ds, ds.class_names)
    elif d.dataset == "yolo":
        ds = YOLODataset(root, d.test_split, tf, d.class_names)
        data = EvalData(ds, ds.class_names)
    else:
        images, ann = _coco_paths(root, d.test_split)
        ds = COCODataset(images, ann, tf, remove_images_without_annotations=False)
        data = EvalData(ds, ds.class_names, ann, None, dict(ds.label_to_cat_id))
    check_class_names(cfg, tuple(data.class_names), f"test set ({d.dataset})")
    return data
