"""IoU of boxes with SSD's default boxes through the grid the priors lie on.

Feature map k contributes its priors in the order (row i, column j, box a) (see
:mod:`ssdlib.priors`): the x interval of a prior depends only on (j, a), its y interval only on
(i, a), clipping included. So the intersections of one box with the ``f x f x A`` priors of a
map are an outer product, ``inter[i, j, a] = h[i, a] * w[j, a]``, of per-axis overlaps with only
``f A`` intervals per axis (372 per axis for SSD300's 8732 priors). :class:`PriorAxes` finds
these blocks in any priors tensor (checking the property exactly; priors without it fall back
to one block of single priors) and writes each block's product with one broadcast multiply:
no ``(N, P, 2)`` broadcasts, no index gathers, and the same float values as the textbook
``box_iou`` (the same products, sums and quotient, per element).
"""

from __future__ import annotations

import math
import weakref

import torch
from torchvision.ops import box_area

from ssdlib.boxes import cxcywh_to_xyxy

# (offset, rows, cols, boxes per cell): priors offset .. offset + rows*cols*per_cell - 1.
Block = tuple[int, int, int, int]


class PriorAxes:
    """The priors as grid blocks: per block the x intervals of its first row and the y
    intervals of its first column, all blocks' intervals concatenated per axis.

    Attributes:
        blocks: the :data:`Block` s, in prior order, covering all P priors.
        order, inverse: (P,) grid order (block by block, (box a, row i, column j) within a
            block) -> prior index, and back.
        area: (P,) prior areas in grid order.
        x_lo, x_hi: (Ux,) x intervals, block by block, each (per_cell, cols) row-major.
        y_lo, y_hi: (Uy,) y intervals, block by block, each (per_cell, rows) row-major.
    """

    def __init__(self, priors_xyxy: torch.Tensor) -> None:
        x1, y1, x2, y2 = priors_xyxy.unbind(1)
        self.num_priors = priors_xyxy.shape[0]
        self.blocks = grid_blocks(x1, y1, x2, y2)
        xs, ys, order = [], [], []
        for offset, rows, cols, per_cell in self.blocks:
            cells = priors_xyxy[offset : offset + rows * cols * per_cell].view(rows, cols, per_cell, 4)
            # Grid order puts the box index a outermost, so that the product of a block is a
            # broadcast over rows and columns of contiguous rows (a innermost would make
            # every inner loop 4-6 elements long: ~6x slower).
            xs.append(cells[0, :, :, 0::2].transpose(0, 1).reshape(-1, 2))  # (per_cell, cols)
            ys.append(cells[:, 0, :, 1::2].transpose(0, 1).reshape(-1, 2))  # (per_cell, rows)
            index = torch.arange(offset, offset + rows * cols * per_cell, device=priors_xyxy.device)
            order.append(index.view(rows, cols, per_cell).permute(2, 0, 1).reshape(-1))
        x, y = torch.cat(xs), torch.cat(ys)
        self.x_lo, self.x_hi = x[:, 0].contiguous(), x[:, 1].contiguous()
        self.y_lo, self.y_hi = y[:, 0].contiguous(), y[:, 1].contiguous()
        # order[k]: the prior at position k of grid order; inverse: position of each prior.
        self.order = torch.cat(order)
        self.inverse = torch.empty_like(self.order)
        self.inverse[self.order] = torch.arange(self.num_priors, device=priors_xyxy.device)
        self.area = ((x2 - x1) * (y2 - y1))[self.order]  # (P,) in grid order

    @classmethod
    def from_priors(cls, priors_cxcywh: torch.Tensor) -> PriorAxes:
        """The axes of a priors tensor, cached while that tensor lives unmodified: finding the
        blocks costs more than matching one image."""
        key = id(priors_cxcywh)
        hit = _AXES_CACHE.get(key)
        # The weak reference proves it is the same object (ids are reused after death),
        # the version counter that it was not modified in place since.
        if hit is not None and hit[0]() is priors_cxcywh and hit[1] == priors_cxcywh._version:
            return hit[2]
        axes = cls(cxcywh_to_xyxy(priors_cxcywh))
        if len(_AXES_CACHE) >= _AXES_CACHE_SIZE:
            _AXES_CACHE.pop(next(iter(_AXES_CACHE)))
        _AXES_CACHE[key] = (weakref.ref(priors_cxcywh), priors_cxcywh._version, axes)
        return axes

    def overlaps(self, boxes_xyxy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 4) xyxy boxes -> their overlaps with the prior intervals of each axis, (N, Ux)
        and (N, Uy) (0 where disjoint)."""
        x1, y1, x2, y2 = boxes_xyxy.unbind(1)
        return _overlaps(x1, x2, self.x_lo, self.x_hi), _overlaps(y1, y2, self.y_lo, self.y_hi)

    def intersections(self, over_x: torch.Tensor, over_y: torch.Tensor) -> torch.Tensor:
        """Per-axis overlaps (:meth:`overlaps`) -> (N, P) intersection areas with the priors in
        grid order (``order``)."""
        n = over_x.shape[0]
        inter = over_x.new_empty(n, self.num_priors)
        ux = uy = 0
        for offset, rows, cols, per_cell in self.blocks:
            size = rows * cols * per_cell
            # (N, A, rows, 1) * (N, A, 1, cols) written straight into the block's columns.
            torch.mul(over_y[:, uy : uy + rows * per_cell].view(n, per_cell, rows, 1),
                      over_x[:, ux : ux + cols * per_cell].view(n, per_cell, 1, cols),
                      out=inter[:, offset : offset + size].view(n, per_cell, rows, cols))  # fmt: skip
            ux, uy = ux + cols * per_cell, uy + rows * per_cell
        return inter

    def iou_of_overlaps(
        self, over_x: torch.Tensor, over_y: torch.Tensor, areas: torch.Tensor
    ) -> torch.Tensor:
        """Per-axis overlaps (:meth:`overlaps`) and the boxes' (N,) areas -> (N, P) IoU with the
        priors in grid order: lets a caller find the overlaps of many boxes at once and take
        the IoU in slabs."""
        inter = self.intersections(over_x, over_y)
        union = torch.add(areas[:, None], self.area).sub_(inter)
        return inter.div_(union)

    def iou_grid_order(self, boxes_xyxy: torch.Tensor) -> torch.Tensor:
        """(N, 4) xyxy boxes -> (N, P) IoU with the priors in grid order (``order``)."""
        return self.iou_of_overlaps(*self.overlaps(boxes_xyxy), box_area(boxes_xyxy))

    def iou(self, boxes_xyxy: torch.Tensor) -> torch.Tensor:
        """(N, 4) xyxy boxes -> (N, P) IoU with the priors (same values as ``box_iou``)."""
        return self.iou_grid_order(boxes_xyxy).index_select(1, self.inverse)


# id(priors) -> (weak reference, version, PriorAxes); a few entries (one per model/device).
_AXES_CACHE: dict[int, tuple[weakref.ref, int, PriorAxes]] = {}
_AXES_CACHE_SIZE = 8


def grid_blocks(x1: torch.Tensor, y1: torch.Tensor, x2: torch.Tensor, y2: torch.Tensor) -> list[Block]:
    """Split (P,) prior corners into grid blocks, greedily from the first prior: at each
    offset the largest square grid whose x intervals repeat down its rows and y intervals
    along its columns (checked exactly), else one 1 x 1 block of all remaining priors."""
    xs = list(zip(x1.tolist(), x2.tolist()))
    ys = list(zip(y1.tolist(), y2.tolist()))
    blocks: list[Block] = []
    offset, total = 0, len(xs)
    while offset < total:
        block = _largest_block(x1, y1, x2, y2, xs, ys, offset)
        blocks.append(block)
        offset += block[1] * block[2] * block[3]
    return blocks


def _largest_block(x1, y1, x2, y2, xs: list, ys: list, offset: int) -> Block:
    rest = len(xs) - offset
    for side in range(math.isqrt(rest), 1, -1):
        for per_cell in range(1, rest // (side * side) + 1):
            # Cheap necessary conditions first: row 1 starts with row 0's x interval, cell
            # (0, 1) with cell (0, 0)'s y interval.
            if xs[offset + side * per_cell] != xs[offset] or ys[offset + per_cell] != ys[offset]:
                continue
            if _is_grid((x1, y1, x2, y2), offset, side, per_cell):
                return (offset, side, side, per_cell)
    return (offset, 1, 1, rest)


def _is_grid(corners: tuple[torch.Tensor, ...], offset: int, side: int, per_cell: int) -> bool:
    """Whether priors offset.. form a (side, side, per_cell) grid: x1/x2 the same in every row,
    y1/y2 the same in every column."""
    size = side * side * per_cell
    x1, y1, x2, y2 = (c[offset : offset + size].view(side, side, per_cell) for c in corners)
    return all(bool((t == t[:1]).all()) for t in (x1, x2)) and all(
        bool((t == t[:, :1]).all()) for t in (y1, y2)
    )


def _overlaps(lo: torch.Tensor, hi: torch.Tensor, p_lo: torch.Tensor, p_hi: torch.Tensor):
    """(N,) and (U,) intervals -> (N, U) lengths of their intersections (0 when disjoint)."""
    return (torch.minimum(hi[:, None], p_hi) - torch.maximum(lo[:, None], p_lo)).clamp_(min=0)
