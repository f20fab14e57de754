"""Batching for detection: images stack, targets (different box counts) stay a list."""

from __future__ import annotations

import torch

__all__ = ["collate"]


def collate(batch: list[tuple[torch.Tensor, dict]]) -> tuple[torch.Tensor, list[dict]]:
    """``[(image (3, S, S), target), ...] -> (images (B, 3, S, S), [target, ...])``.

    All images must share one size (true after the SSD transforms); the error says which
    sample differs otherwise, rather than torch.stack's bare shape message.
    """
    images = [img for img, _ in batch]
    shape = images[0].shape
    for k, img in enumerate(images):
        if img.shape != shape:
            raise ValueError(
                f"collate: image {k} has shape {tuple(img.shape)}, image 0 has {tuple(shape)};"
                " apply a transform that resizes to a fixed size"
            )
    return torch.stack(images), [t for _, t in batch]
