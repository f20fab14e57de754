"""Box formats and SSD's box coding with variances.

``encode`` turns a matched ground-truth box g into the regression target of its prior d
(Liu et al. 2016, eq. 2, with the "variances" of the Caffe implementation):

    t_cx = (g_cx - d_cx) / d_w / v0     t_w = log(g_w / d_w) / v1
    t_cy = (g_cy - d_cy) / d_h / v0     t_h = log(g_h / d_h) / v1

with (v0, v1) = (0.1, 0.2). ``decode`` inverts it. Dividing by the variances scales the targets to
roughly unit variance, which balances the localisation loss against the confidence loss.
"""

from __future__ import annotations

import torch
from torchvision.ops import box_iou

__all__ = ["box_iou", "cxcywh_to_xyxy", "decode", "encode", "xyxy_to_cxcywh"]


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) cx, cy, w, h -> (..., 4) x1, y1, x2, y2."""
    centre, size = boxes[..., :2], boxes[..., 2:]
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) x1, y1, x2, y2 -> (..., 4) cx, cy, w, h."""
    lo, hi = boxes[..., :2], boxes[..., 2:]
    return torch.cat([(lo + hi) / 2, hi - lo], dim=-1)


def encode(
    boxes_xyxy: torch.Tensor,
    priors_cxcywh: torch.Tensor,
    variances: tuple[float, float] = (0.1, 0.2),
) -> torch.Tensor:
    """Regression targets of boxes with respect to priors.

    Args:
        boxes_xyxy: (..., P, 4) matched boxes, xyxy, relative (positive widths and heights).
        priors_cxcywh: (P, 4) default boxes, cx, cy, w, h, relative.
    Returns:
        deltas: (..., P, 4) t_cx, t_cy, t_w, t_h.
    """
    # The same operations as xyxy_to_cxcywh and eq. 2, element by element, on whole
    # coordinate columns: on (..., P, 2) slices every inner loop is 2 elements long, ~20x
    # slower on CPU. t_cx and t_cy are written straight into their columns of the result (add,
    # subtract and divide round the same wherever they write: no cat, ~15 % less time for
    # SSD300 at B=32); ``log`` still runs on one contiguous (..., P, 2) tensor, as it always
    # did: its vectorised and scalar paths may differ in the last bit.
    d = priors_cxcywh
    shape = torch.broadcast_shapes(boxes_xyxy.shape[:-1], d.shape[:-1])
    dtype = torch.result_type(boxes_xyxy, d)
    deltas = torch.empty(shape + (4,), dtype=dtype, device=boxes_xyxy.device)
    size = torch.empty(shape + (2,), dtype=dtype, device=boxes_xyxy.device)
    x1, y1, x2, y2 = (c.expand(shape) for c in boxes_xyxy.unbind(-1))  # boxes may broadcast
    for k, (lo, hi) in enumerate(((x1, x2), (y1, y2))):
        torch.add(lo, hi, out=deltas[..., k]).div_(2).sub_(d[..., k]).div_(d[..., k + 2]).div_(variances[0])
        torch.sub(hi, lo, out=size[..., k])
    deltas[..., 2:] = size.div_(d[..., 2:].contiguous()).log_().div_(variances[1])
    return deltas


def decode(
    deltas: torch.Tensor,
    priors_cxcywh: torch.Tensor,
    variances: tuple[float, float] = (0.1, 0.2),
    max_log_scale: float | None = None,
) -> torch.Tensor:
    """Boxes from regression outputs; the inverse of :func:`encode`.

    Args:
        deltas: (..., P, 4) predicted t_cx, t_cy, t_w, t_h (any leading batch dims).
        priors_cxcywh: (P, 4) default boxes, cx, cy, w, h, relative.
        max_log_scale: clamp t_w * v1 and t_h * v1 from above before ``exp`` (torchvision's
            BoxCoder uses log(1000 / 16)); None, as in the reference implementations, does not.
    Returns:
        boxes: (..., P, 4) xyxy, relative.
    """
    d = priors_cxcywh
    centre = deltas[..., :2] * variances[0] * d[..., 2:] + d[..., :2]
    log_scale = deltas[..., 2:] * variances[1]
    if max_log_scale is not None:
        log_scale = log_scale.clamp(max=max_log_scale)
    size = torch.exp(log_scale) * d[..., 2:]
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)
