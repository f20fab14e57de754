"""A light backbone that trains in minutes on a 2-core CPU (the Shapes lessons' default).

A slim VGG-style stack of 3x3 conv + BatchNorm + ReLU (BatchNorm lets it train from scratch
with a large learning rate in a few hundred iterations), with SSD's extra layers on top:

    stride 8 (64 ch) -> 16 (128) -> 32 (192) -> extras (128, 128)

85 M multiply-adds per 160x160 image in the backbone, 115 M with the ``shapes`` config's
heads (FlopCounterMode): 0.4 % of SSD300's 31 G.

``first_stride=4`` adds a finer first map for small objects: the stride-4 stem output plus the
stride-8 map upsampled through a 1x1 conv (one top-down step of a feature pyramid, Lin et al.
2017). The stem alone is only three convolutions deep (receptive field 15 px), too shallow to
tell a circle from a hexagon; the top-down path brings the deeper stride-8 features down.
A default box must sit within about a quarter of its side of an object to reach IoU 0.5, so
objects of 8-16 px need priors every 4 px: at stride 8 only 47 % of them have one, with the
priors 8/16/32/56/88/120 px on the 40/20/10/5/3/1 maps 95 %.

Measured on Shapes (bf16 on the 2-core CPU, same recipe otherwise), it did not pay for itself:
2,600 iterations in 12.0 min gave mAP 0.855 (0.547 on objects under 16 px), the stride-8
``shapes`` config 4,000 iterations in 12.6 min 0.867 (0.627). The stem's features, not the
priors' spacing, limit the small objects there; the option stays for data where they do not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn(cin: int, cout: int, stride: int = 1, kernel_size: int = 3, padding: int = 1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class LightBackbone(nn.Module):
    """forward(x: (B, 3, S, S)) -> 5 feature maps at strides 8, 16, 32, then ~S/53 and 1x1
    for S=160: (B, 64w, 20, 20), (B, 128w, 10, 10), (B, 192w, 5, 5), (B, 128w, 3, 3), (B, 128w, 1, 1).
    With ``first_stride=4`` a sixth map comes first: (B, 32w, 40, 40) for S=160.
    """

    def __init__(self, width: float = 1.0, first_stride: int = 8) -> None:
        super().__init__()
        if first_stride not in (4, 8):
            raise ValueError(f"first_stride must be 4 or 8, got {first_stride}")

        def c(n: int) -> int:
            return max(8, int(round(n * width / 8)) * 8)

        self.stem = nn.Sequential(
            conv_bn(3, c(16), 2), conv_bn(c(16), c(32), 2), conv_bn(c(32), c(32))
        )
        self.stages = nn.ModuleList([
            nn.Sequential(conv_bn(c(32), c(64), 2), conv_bn(c(64), c(64))),  # stride 8
            nn.Sequential(conv_bn(c(64), c(128), 2), conv_bn(c(128), c(128))),  # 16
            nn.Sequential(conv_bn(c(128), c(192), 2), conv_bn(c(192), c(192))),  # 32
            nn.Sequential(  # 5 -> 3
                conv_bn(c(192), c(128), kernel_size=1, padding=0), conv_bn(c(128), c(128), 2)
            ),
            nn.Sequential(  # 3 -> 1
                conv_bn(c(128), c(128), kernel_size=1, padding=0),
                conv_bn(c(128), c(128), padding=0),
            ),
        ])  # fmt: skip
        self.out_channels = [c(64), c(128), c(192), c(128), c(128)]
        self.lateral = None
        if first_stride == 4:
            self.lateral = conv_bn(c(64), c(32), kernel_size=1, padding=0)
            self.out_channels.insert(0, c(32))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = fine = self.stem(x)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        if self.lateral is not None:
            top_down = F.interpolate(self.lateral(outputs[0]), size=fine.shape[-2:], mode="nearest")
            outputs.insert(0, fine + top_down)
        return outputs
