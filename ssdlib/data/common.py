"""Pieces shared by every dataset: the error type, robust image decoding, box cleaning.

Target format (every dataset in :mod:`ssdlib.data` returns ``(image, target)``):

- ``image``: ``torch.uint8`` tensor ``(3, H, W)``, RGB, when no transform is given.
- ``target["boxes"]``: ``(N, 4)`` float32, xyxy, pixels (0-based).
- ``target["labels"]``: ``(N,)`` int64 in ``1..C`` (0 is reserved for background).
- ``target["difficult"]``: ``(N,)`` bool.
- ``target["image_id"]``: ``str`` (VOC/Shapes-VOC file stem) or ``int`` (COCO id).
- ``target["orig_size"]``: ``(2,)`` int64, ``(H, W)`` of the decoded image.

Invalid boxes policy (:func:`clean_boxes`): boxes are clipped to the image; boxes that are
NaN/inf, have ``x2 <= x1`` or ``y2 <= y1`` (before or after clipping) are dropped, with one
``warnings.warn`` per file giving the count. ``validate_*`` in :mod:`ssdlib.data.validate`
reports all of them up front, so a clean dataset never warns during training.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = ["DatasetError", "load_image", "load_sample", "clean_boxes", "make_target"]


class DatasetError(RuntimeError):
    """A problem with dataset files; the message always names the file (and sample index)."""


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """PIL image of any mode -> ``(H, W, 3)`` uint8 RGB array."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # PIL's convert("RGB") clips 16-bit values at 255 (a white image); rescale instead.
        arr = np.asarray(img, dtype=np.int64)
        peak = 65535 if img.mode.startswith("I;16") or arr.max() > 255 else 255
        arr = np.clip(arr * 255 // peak, 0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float32))
        arr = np.clip(arr, 0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if img.mode != "RGB":
        # Palette/grey/CMYK/YCbCr/RGBA/LA: PIL knows the colour maths; alpha is dropped
        # (annotations refer to the stored pixels, not to a composite on some background).
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)  # a writable copy: torch warns on read-only arrays


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Decode an image file to RGB.

    Returns ``(3, H, W)`` uint8. EXIF orientation is NOT applied: VOC/COCO boxes refer to the
    stored pixel grid. Raises :class:`DatasetError` naming the file for a missing, empty,
    undecodable or truncated file.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: image file not found")
    if path.stat().st_size == 0:
        raise DatasetError(f"{path}: image file is empty (0 bytes)")
    try:
        with Image.open(path) as img:
            img.load()  # decodes now, so a truncated file fails here and not later
            arr = _to_rgb_array(img)
    except UnidentifiedImageError as e:
        raise DatasetError(f"{path}: not a readable image (corrupt or unknown format)") from e
    except Image.DecompressionBombError as e:  # a header claiming e.g. 20000 x 20000 pixels
        raise DatasetError(f"{path}: image too large to decode ({e})") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"{path}: corrupt or truncated image ({e})") from e
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def clean_boxes(
    boxes: torch.Tensor, width: int, height: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip boxes to the image and find the ones worth keeping.

    Args:
        boxes: ``(N, 4)`` xyxy, pixels, any float dtype.
        width, height: image size in pixels.
    Returns:
        ``(clipped (N, 4) float32, keep (N,) bool)``. ``keep`` is False for NaN/inf
        coordinates and for boxes with no area after clipping (x2 <= x1 or y2 <= y1).
    """
    boxes = boxes.to(torch.float32).reshape(-1, 4)
    finite = torch.isfinite(boxes).all(dim=1)
    clipped = boxes.clone()
    clipped[:, 0::2] = clipped[:, 0::2].clamp(0, width)
    clipped[:, 1::2] = clipped[:, 1::2].clamp(0, height)
    keep = finite & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    clipped[~finite] = 0
    return clipped, keep


def make_target(
    boxes: torch.Tensor,
    labels: torch.Tensor,
    difficult: torch.Tensor,
    image_id: str | int,
    height: int,
    width: int,
    source: str | os.PathLike,
) -> dict:
    """Assemble a target dict, clipping boxes and dropping invalid ones (with a warning).

    Args:
        boxes: ``(N, 4)`` xyxy pixels; labels: ``(N,)`` int64; difficult: ``(N,)`` bool.
        source: the annotation file, named in the warning.
    """
    boxes, keep = clean_boxes(boxes, width, height)
    dropped = int((~keep).sum())
    if dropped:
        warnings.warn(
            f"{source}: dropped {dropped} invalid box(es) (NaN, zero area or x2<x1 / y2<y1)",
            stacklevel=3,
        )
    return {
        "boxes": boxes[keep],
        "labels": labels.to(torch.int64).reshape(-1)[keep],
        "difficult": difficult.to(torch.bool).reshape(-1)[keep],
        "image_id": image_id,
        "orig_size": torch.tensor([height, width], dtype=torch.int64),
    }


def load_sample(index: int, path: Path, get_target, transform) -> tuple[torch.Tensor, dict]:
    """``(image, target)`` of one dataset sample: decode ``path``, build the target for the
    decoded size with ``get_target(index, height, width)``, apply ``transform``.

    Any failure becomes a :class:`DatasetError` naming the sample index and the file:
    DataLoader workers re-raise it in the main process, where it must be findable.
    """
    try:
        image = load_image(path)
        target = get_target(index, *image.shape[-2:])
        if transform is not None:
            image, target = transform(image, target)
    except Exception as e:
        raise DatasetError(f"sample {index} ({path}): {e}") from e
    return image, target
