"""A light backbone that trains in minutes on a 2-core CPU (the Shapes lessons' default).

A slim VGG-style stack of 3x3 conv + BatchNorm + ReLU (BatchNorm lets it train from scratch
with a large learning rate in a few hundred iterations), with SSD's extra layers on top:

    stride 8 (64 ch) -> 16 (128) -> 32 (192) -> extras (128, 128)

~80 M multiply-adds per 160x160 image, 4 % of SSD300's 31 G.
"""

from __future__ import annotations

import torch
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
    """

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()

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
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs
