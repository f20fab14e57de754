"""Models from checkpoints, and detection on image files (the ``demo`` command's core)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ssdlib.config import Config, ConfigError
from ssdlib.data import build_test_transform, load_image
from ssdlib.engine.checkpoint import load_checkpoint
from ssdlib.model import SSD, build_model
from ssdlib.model import ssd as ssd_module
from ssdlib.postprocess import Detections

__all__ = ["IMAGE_SUFFIXES", "INFERENCE_DTYPES", "detect_files", "detect_images",
           "list_images", "load_detector", "load_model", "with_inference_dtype"]  # fmt: skip

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
INFERENCE_DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def with_inference_dtype(model: SSD, name: str) -> SSD:
    """``model`` unchanged for ``"fp32"``; for ``"bf16"`` :func:`prepare_for_inference` with bf16
    weights and channels_last (in place)."""
    dtype = INFERENCE_DTYPES[name]
    if dtype is None:
        return model
    return ssd_module.prepare_for_inference(model, channels_last=True, dtype=dtype)


def load_model(cfg: Config, ckpt_path: str | os.PathLike, device: torch.device | str = "cpu") -> SSD:
    """``cfg``'s model with the weights of a training checkpoint (or a bare state dict), in
    eval mode. A checkpoint made for another number of classes is refused with a clear error."""
    from ssdlib.engine.resume import check_checkpoint

    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"--ckpt {path}: no such file")
    ckpt = load_checkpoint(path)
    if "config" in ckpt:
        check_checkpoint(ckpt, cfg, path)
    state = ckpt.get("model", ckpt)
    model = build_model(cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ConfigError(f"{path}: weights do not fit {cfg.model.name} with "
                          f"{cfg.model.num_classes} classes: {str(e)[:300]}") from e  # fmt: skip
    return model.to(device).eval()


def load_detector(
    config: str | None,
    overrides: Sequence[str],
    ckpt: str | os.PathLike | None = None,
    weights: str | None = None,
    device: torch.device | str = "cpu",
) -> tuple[SSD, Config, list[str]]:
    """``(model in eval mode, config, class names)`` from a training checkpoint (config default
    ``shapes``) or pretrained weights (config default ``ssd300_coco_torchvision``, whose input
    section gives the preprocessing): the ``demo`` and ``export`` commands' sources."""
    from ssdlib.config import load_config

    if weights:
        from ssdlib.config import apply_overrides
        from ssdlib.model import load_shipped, pretrained_model  # pretrained_model may download
        from ssdlib.model.shipped import SHIPPED

        model, class_names = pretrained_model(weights)
        if weights in SHIPPED and not config:  # its own preprocessing and test settings
            cfg = apply_overrides(load_shipped(weights)[1], list(overrides))
        else:
            cfg = load_config(config or "ssd300_coco_torchvision", list(overrides))
        model.image_size = cfg.input.image_size
        return model.to(device).eval(), cfg, class_names
    cfg = load_config(config or "shapes", list(overrides))
    return load_model(cfg, ckpt, device), cfg, list(cfg.data.class_names)


def list_images(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--images {folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"--images {folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def detect_files(
    model: SSD,
    paths: Sequence[Path],
    image_size: int,
    pixel_mean: Sequence[float],
    pixel_std: Sequence[float],
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    **postprocess,
) -> list[tuple[torch.Tensor, Detections]]:
    """``(image (3, H, W) uint8, detections in its pixels)`` for every file, in order."""
    out = []
    for start in range(0, len(paths), batch_size):
        images = [load_image(p) for p in paths[start : start + batch_size]]
        dets = detect_images(model, images, image_size, pixel_mean, pixel_std, device, **postprocess)
        out.extend(zip(images, dets))
    return out


@torch.inference_mode()
def detect_images(
    model: SSD,
    images: Sequence[torch.Tensor],
    image_size: int,
    pixel_mean: Sequence[float],
    pixel_std: Sequence[float],
    device: torch.device | str = "cpu",
    **postprocess,
) -> list[Detections]:
    """Detections (boxes in each image's pixels, on the CPU) of a batch of ``(3, H, W)`` uint8
    images: the test transform, ``model.predict`` (an :class:`SSD` or an
    :class:`ssdlib.export.OnnxDetector`), then scaling back. Images, video frames and ONNX
    files all go through this."""
    transform = build_test_transform(image_size, pixel_mean, pixel_std)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    batch = torch.stack([transform(img, empty)[0] for img in images]).to(device)
    out = []
    for img, det in zip(images, model.predict(batch, **postprocess)):
        h, w = img.shape[-2:]
        d = det.scaled(w, h)
        out.append(Detections(d.boxes.cpu(), d.scores.cpu(), d.labels.cpu()))
    return out
