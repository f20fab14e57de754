"""Default boxes ("priors", "anchors") of SSD — Liu et al. 2016, section 2.2.

For feature map k of size f_k with stride s_k, location (i, j) has its centre at
((j + 0.5) * s_k, (i + 0.5) * s_k) / image_size. Each location carries

* a square of side ``min_sizes[k]``,
* a square of side ``sqrt(min_sizes[k] * max_sizes[k])`` (the paper's extra scale s'_k),
* for every aspect ratio r: (w sqrt(r), h / sqrt(r)) and (w / sqrt(r), h sqrt(r)).

SSD300 on VOC: 38²·4 + 19²·6 + 10²·6 + 5²·6 + 3²·4 + 1²·4 = 8732 boxes.
"""

from __future__ import annotations

import math

import torch

from ssdlib.config import PriorsConfig


def boxes_per_location(aspect_ratios: list[list[float]]) -> list[int]:
    """Number of default boxes at each location of every feature map: 2 + 2 per ratio."""
    return [2 + 2 * len(ratios) for ratios in aspect_ratios]


def location_priors(
    cx: float, cy: float, min_size: float, max_size: float, ratios: list[float], image_size: float
) -> list[list[float]]:
    """The default boxes of one location, in the SSD order: (n, 4) cx, cy, w, h relative."""
    s = min_size / image_size
    s_prime = math.sqrt(min_size * max_size) / image_size
    boxes = [[cx, cy, s, s], [cx, cy, s_prime, s_prime]]
    for r in ratios:
        q = math.sqrt(r)
        boxes += [[cx, cy, s * q, s / q], [cx, cy, s / q, s * q]]
    return boxes


def generate_priors_from(
    image_size: float,
    feature_maps: list[int],
    strides: list[float],
    min_sizes: list[float],
    max_sizes: list[float],
    aspect_ratios: list[list[float]],
    clip: bool = True,
) -> torch.Tensor:
    """Default boxes for explicit numbers; see :func:`generate_priors`.

    Returns:
        priors: (P, 4) float32 cx, cy, w, h relative to the image; order: feature map k, then
        row i, then column j, then the per-location order of :func:`location_priors`.
    """
    per_map = []
    for f, stride, lo, hi, ratios in zip(
        feature_maps, strides, min_sizes, max_sizes, aspect_ratios, strict=True
    ):
        # Computed in float64 and rounded once, as the reference implementations do in Python.
        scale = image_size / stride
        centres = (torch.arange(f, dtype=torch.float64) + 0.5) / scale
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        shapes = torch.tensor(
            location_priors(0.0, 0.0, lo, hi, ratios, image_size), dtype=torch.float64
        )[:, 2:]
        n = shapes.shape[0]
        centres_xy = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2).expand(-1, n, 2)
        wh = shapes.expand(f * f, n, 2)
        per_map.append(torch.cat([centres_xy, wh], dim=-1).reshape(-1, 4))
    priors = torch.cat(per_map).to(torch.float32)
    if clip:
        # The reference rule clamps all four numbers (centre form), not the corners.
        priors.clamp_(min=0.0, max=1.0)
    return priors


def generate_priors(cfg: PriorsConfig) -> torch.Tensor:
    """Default boxes of a priors config: (P, 4) float32 cx, cy, w, h relative to the image.

    >>> from ssdlib.config import load_config
    >>> generate_priors(load_config("ssd300_voc").priors).shape
    torch.Size([8732, 4])
    """
    return generate_priors_from(
        cfg.image_size, cfg.feature_maps, cfg.strides, cfg.min_sizes, cfg.max_sizes,
        cfg.aspect_ratios, cfg.clip,
    )  # fmt: skip


def priors_per_map(cfg: PriorsConfig) -> list[int]:
    """Number of priors contributed by each feature map (f_k² · boxes per location)."""
    return [f * f * n for f, n in zip(cfg.feature_maps, boxes_per_location(cfg.aspect_ratios))]
