"""Default boxes ("priors", "anchors") of SSD — Liu et al. 2016, section 2.2.

For feature map k of size f_k with stride s_k, location (i, j) has its centre at
((j + 0.5) * s_k, (i + 0.5) * s_k) / image_size. Each location carries

* a square of side ``min_sizes[k]``,
* a square of side ``sqrt(min_sizes[k] * max_sizes[k])`` (the paper's extra scale s'_k),
* for every aspect ratio r: (w sqrt(r), h / sqrt(r)) and (w / sqrt(r), h sqrt(r)).

SSD300 on VOC: 38²·4 + 19²·6 + 10²·6 + 5²·6 + 3²·4 + 1²·4 = 8732 boxes.

Densification (``densify[k] = d > 1``, off in the paper's configs; Zhang et al. 2017, FaceBoxes,
sec. 3.3): the min-size square of map k is tiled d x d times per location, centres at offsets
``((a + 0.5) / d - 0.5) * stride`` for a in 0..d-1 along each axis. A square much smaller than
its stride otherwise leaves objects between two centres with no prior they overlap well: at
stride 8 an 8 px square reaches IoU 0.4 with a 10 px object only within 2 px of its centre.
"""

from __future__ import annotations

import math

import torch

from ssdlib.config import PriorsConfig


def densify_factors(densify: list[int] | None, num_maps: int) -> list[int]:
    """The tiling factor d of each of ``num_maps`` maps: ``densify``, or 1 everywhere when it
    is None or [] (the configs' default)."""
    return list(densify) if densify else [1] * num_maps


def boxes_per_location(
    aspect_ratios: list[list[float]], densify: list[int] | None = None
) -> list[int]:
    """Number of default boxes at each location of every feature map: d² min-size squares
    (d from :func:`densify_factors`), the s' square, and 2 per ratio."""
    dens = densify_factors(densify, len(aspect_ratios))
    return [d * d + 1 + 2 * len(ratios) for ratios, d in zip(aspect_ratios, dens, strict=True)]


def location_priors(
    cx: float,
    cy: float,
    min_size: float,
    max_size: float,
    ratios: list[float],
    image_size: float,
    densify: int = 1,
    stride: float = 0.0,
) -> list[list[float]]:
    """The default boxes of one location, in the SSD order: (n, 4) cx, cy, w, h relative.

    ``densify`` d > 1 tiles the min-size square d x d times around the centre (``stride`` in
    pixels sets the spacing, row-major: offsets in y, then x); see the module docstring."""
    s = min_size / image_size
    s_prime = math.sqrt(min_size * max_size) / image_size
    shifts = [((a + 0.5) / densify - 0.5) * stride / image_size for a in range(densify)]
    boxes = [[cx + ox, cy + oy, s, s] for oy in shifts for ox in shifts]
    boxes.append([cx, cy, s_prime, s_prime])
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
    densify: list[int] | None = None,
) -> torch.Tensor:
    """Default boxes for explicit numbers; see :func:`generate_priors`.

    Returns:
        priors: (P, 4) float32 cx, cy, w, h relative to the image; order: feature map k, then
        row i, then column j, then the per-location order of :func:`location_priors`.
    """
    per_map = []
    dens = densify_factors(densify, len(feature_maps))
    for f, stride, lo, hi, ratios, d in zip(
        feature_maps, strides, min_sizes, max_sizes, aspect_ratios, dens, strict=True
    ):
        # Computed in float64 and rounded once, as the reference implementations do in Python.
        scale = image_size / stride
        centres = (torch.arange(f, dtype=torch.float64) + 0.5) / scale
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        local = torch.tensor(
            location_priors(0.0, 0.0, lo, hi, ratios, image_size, d, stride), dtype=torch.float64
        )
        n = local.shape[0]
        centres_xy = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2).expand(-1, n, 2)
        if d > 1:  # offsets of the tiled squares (exactly 0 otherwise: skip the add)
            centres_xy = centres_xy + local[:, :2]
        wh = local[:, 2:].expand(f * f, n, 2)
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
        cfg.aspect_ratios, cfg.clip, cfg.densify,
    )  # fmt: skip


def priors_per_map(cfg: PriorsConfig) -> list[int]:
    """Number of priors contributed by each feature map (f_k² · boxes per location)."""
    per_loc = boxes_per_location(cfg.aspect_ratios, cfg.densify)
    return [f * f * n for f, n in zip(cfg.feature_maps, per_loc)]
