"""SSD's multibox heads: one 3x3 convolution per feature map for class scores and one for offsets.

Output layout (as in the reference implementations and torchvision): for each map, the channels
at a location are (anchor a, value v) with v fastest, flattened location by location in row-major
order — the same order as :func:`ssdlib.priors.generate_priors`.
"""

from __future__ import annotations

import torch
from torch import nn


def flatten_head_output(x: torch.Tensor, values: int) -> torch.Tensor:
    """(B, A * values, H, W) -> (B, H * W * A, values)."""
    b, _, h, w = x.shape
    return x.view(b, -1, values, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, values)


class SSDHead(nn.Module):
    """forward(features: list of (B, C_k, H_k, W_k)) -> (cls_logits (B, P, K), box_deltas (B, P, 4))."""

    def __init__(
        self, in_channels: list[int], boxes_per_location: list[int], num_logits: int
    ) -> None:
        super().__init__()
        self.num_logits = num_logits
        self.cls_heads = nn.ModuleList(
            nn.Conv2d(c, n * num_logits, kernel_size=3, padding=1)
            for c, n in zip(in_channels, boxes_per_location, strict=True)
        )
        self.reg_heads = nn.ModuleList(
            nn.Conv2d(c, n * 4, kernel_size=3, padding=1)
            for c, n in zip(in_channels, boxes_per_location, strict=True)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        cls = [flatten_head_output(h(f), self.num_logits) for h, f in zip(self.cls_heads, features)]
        reg = [flatten_head_output(h(f), 4) for h, f in zip(self.reg_heads, features)]
        return torch.cat(cls, dim=1), torch.cat(reg, dim=1)
