"""SSD data augmentation with ``torchvision.transforms.v2``.

Both pipelines take and return ``(image, target)`` in the format of :mod:`ssdlib.data.common`
(``image (3, H, W)`` uint8, ``target["boxes"] (N, 4)`` xyxy pixels) and return
``image (3, S, S)`` float32 normalised as ``(x - mean) / std`` on 0..255 values (Caffe/SSD
convention) and ``target["boxes"] (N, 4)`` xyxy RELATIVE to the image, in ``[0, 1]``.
``labels``/``difficult`` (and ``masks`` when present) are filtered with the kept boxes;
``image_id``/``orig_size`` are left untouched.

Training (Liu et al. 2016, sec. 2.2 / 3.6): photometric distortion -> zoom-out on a canvas
filled with the pixel mean (side x1..x4, p=0.5) -> IoU-constrained random crop -> drop
boxes that became degenerate -> horizontal flip -> resize to ``S x S``.

Randomness comes from torch's global RNG. Training seeds it per sample
(:class:`ssdlib.engine.sampling.SeededDataset`: a seed derived from ``(train.seed, position)``
before each transform), so the augmentation of every sample is the same whatever
``num_workers`` is and across a resume; called directly, ``torch.manual_seed(k)`` first makes
it reproducible.

Where target matching happens: in the training step, batched (``ssdlib.matching.match_batch``
+ ``ssdlib.boxes.encode``), not in the data workers, which stay pure augmentation: it keeps the
priors and IoU threshold (model config) out of the datasets, lets the same dataset serve
training and evaluation, and puts the work on the GPU when there is one.
``python data_setup/bench_matching.py`` times both placements (in-worker per image with one
thread, in-step batched on the CPU and on CUDA) on the machine at hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ssdlib.config import CAFFE_PIXEL_MEAN

__all__ = [
    "AUGMENT_POLICIES", "DetectionTransform", "ResizeNormalize", "build_train_transform",
    "build_test_transform", "denormalize",
]  # fmt: skip

PIXEL_STD = (1.0, 1.0, 1.0)


def _labels_and_flags(inputs):
    """SanitizeBoundingBoxes' ``labels_getter``: every per-box tensor to filter alongside.

    Module-level (not a lambda) so the transform pickles into DataLoader workers."""
    target = inputs[1]
    return tuple(target[k] for k in ("labels", "difficult") if k in target)


class DetectionTransform:
    """Wrap a v2 pipeline: tensors -> tv_tensors -> pipeline -> relative boxes, plain tensors."""

    def __init__(self, pipeline: v2.Transform) -> None:
        self.pipeline = pipeline

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        h, w = image.shape[-2:]
        target = dict(target)
        target["boxes"] = tv_tensors.BoundingBoxes(
            target["boxes"].reshape(-1, 4), format="XYXY", canvas_size=(h, w)
        )
        if "masks" in target:
            target["masks"] = tv_tensors.Mask(target["masks"])
        image, target = self.pipeline(tv_tensors.Image(image), target)
        out_h, out_w = image.shape[-2:]
        scale = torch.tensor([out_w, out_h, out_w, out_h], dtype=torch.float32)
        target["boxes"] = (target["boxes"].as_subclass(torch.Tensor) / scale).clamp_(0.0, 1.0)
        if "masks" in target:
            target["masks"] = target["masks"].as_subclass(torch.Tensor)
        return image.as_subclass(torch.Tensor), target

    def __repr__(self) -> str:
        return f"DetectionTransform({self.pipeline})"


class ResizeNormalize:
    """Resize to ``S x S`` and normalise, on plain tensors: the same kernels and results as
    ``DetectionTransform(Compose(Resize, ToDtype, Normalize))``, without wrapping every sample
    in tv_tensors: 0.03 instead of 0.15 ms per 160 px Shapes sample (one core), which the
    training process pays serially when it renders its own images (``num_workers=0``)."""

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.image_size = image_size
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        s = self.image_size
        h, w = image.shape[-2:]
        target = dict(target)
        boxes = target["boxes"].reshape(-1, 4)
        if (h, w) != (s, s):
            image = F.resize_image(image, [s, s], antialias=True)
            boxes, _ = F.resize_bounding_boxes(boxes, (h, w), [s, s])
            if "masks" in target:
                target["masks"] = F.resize_mask(target["masks"], [s, s])
        scale = torch.tensor([s, s, s, s], dtype=torch.float32)
        target["boxes"] = (boxes / scale).clamp_(0.0, 1.0)
        return image.to(torch.float32).sub_(self.mean).div_(self.std), target

    def __repr__(self) -> str:
        return f"ResizeNormalize(size={self.image_size}, mean={self.mean.flatten().tolist()}, " \
            f"std={self.std.flatten().tolist()})"


def _finish(image_size: int, mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    return [
        v2.Resize((image_size, image_size), antialias=True),
        v2.ToDtype(torch.float32, scale=False),  # keep 0..255: the mean/std are in that range
        v2.Normalize(mean=list(mean), std=list(std)),
    ]


AUGMENT_POLICIES = ("ssd", "light", "none")


def build_train_transform(
    image_size: int,
    pixel_mean: Sequence[float] = CAFFE_PIXEL_MEAN,
    pixel_std: Sequence[float] = PIXEL_STD,
    policy: str = "ssd",
) -> DetectionTransform | ResizeNormalize:
    """SSD training augmentation. In: ``(3, H, W)`` uint8 + pixel boxes; out: ``(3, S, S)``
    float32 + relative boxes ``(N', 4)`` (see the module docstring).

    ``policy``: ``"ssd"`` the paper's full pipeline; ``"light"`` photometric distortion and
    flip only (geometry kept: for generated data, where fresh images beat zoom-out and crops);
    ``"none"`` resize and normalise, like the test transform."""
    if policy not in AUGMENT_POLICIES:
        raise ValueError(f"augmentation policy {policy!r}: expected one of {AUGMENT_POLICIES}")
    if policy == "none":
        return ResizeNormalize(image_size, pixel_mean, pixel_std)
    fill = {tv_tensors.Image: [int(round(m)) for m in pixel_mean], "others": 0}
    steps: list[v2.Transform] = [v2.RandomPhotometricDistort(p=0.5)]
    if policy == "ssd":
        steps += [
            v2.RandomZoomOut(fill=fill, side_range=(1.0, 4.0), p=0.5),
            v2.RandomIoUCrop(),
            v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=_labels_and_flags),
        ]
    steps.append(v2.RandomHorizontalFlip(p=0.5))
    return DetectionTransform(v2.Compose([*steps, *_finish(image_size, pixel_mean, pixel_std)]))


def build_test_transform(
    image_size: int,
    pixel_mean: Sequence[float] = CAFFE_PIXEL_MEAN,
    pixel_std: Sequence[float] = PIXEL_STD,
) -> ResizeNormalize:
    """Evaluation preprocessing: resize to ``S x S`` and normalise; boxes become relative."""
    return ResizeNormalize(image_size, pixel_mean, pixel_std)


def denormalize(
    image: torch.Tensor,
    mean: Sequence[float] = CAFFE_PIXEL_MEAN,
    std: Sequence[float] = PIXEL_STD,
) -> torch.Tensor:
    """Undo the normalisation for drawing: ``(..., 3, H, W)`` float -> same shape uint8."""
    mean_t = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std_t = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * std_t + mean_t).round_().clamp_(0, 255).to(torch.uint8)
