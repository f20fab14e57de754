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

__all__ = ["IMAGE_SUFFIXES", "INFERENCE_DTYPES", "add_dtype_argument", "detect_files", "list_images",
           "load_model", "with_inference_dtype"]  # fmt: skip

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
INFERENCE_DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def add_dtype_argument(parser) -> None:
    """``--dtype fp32|bf16`` of the ``eval`` and ``demo`` commands."""
    parser.add_argument("--dtype", choices=list(INFERENCE_DTYPES), default="fp32",
                        help="network weights for inference: bf16 (post-processing stays fp32) "
                             "is 3-4x faster on CPUs with AMX or AVX512-BF16 and on recent GPUs; "
                             "README, Performance, gives its cost in mAP")  # fmt: skip


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


def list_images(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--images {folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"--images {folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


@torch.inference_mode()
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
    transform = build_test_transform(image_size, pixel_mean, pixel_std)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    out = []
    for start in range(0, len(paths), batch_size):
        images = [load_image(p) for p in paths[start : start + batch_size]]
        batch = torch.stack([transform(img, empty)[0] for img in images]).to(device)
        for img, det in zip(images, model.predict(batch, **postprocess)):
            h, w = img.shape[-2:]
            d = det.scaled(w, h)
            out.append((img, Detections(d.boxes.cpu(), d.scores.cpu(), d.labels.cpu())))
    return out
