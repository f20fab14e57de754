"""The VGG16 backbone of SSD300/SSD512 (Liu et al. 2016, section 3 and fig. 2).

VGG16's conv1_1..conv5_3 with pool3 in ceil mode (so 75 -> 38 at 300 px), pool5 changed to 3x3
stride 1, and fc6/fc7 turned into convolutions: conv6 3x3 with dilation 6 (the "atrous" trick
that keeps fc6's receptive field after subsampling its weights) and conv7 1x1, both 1024 wide.
conv4_3's features are L2-normalised with a learnable per-channel scale (init 20) because their
magnitude is much larger than the deeper maps'. Extra layers then halve the resolution down to 1x1.

The module layout follows torchvision's ``SSDFeatureExtractorVGG`` (``features`` = conv1_1..
conv4_3, ``extra[0]`` = pool4..conv7), so ImageNet VGG16 weights map by index and torchvision's
SSD300 weights map by name (see :mod:`ssdlib.model.convert`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# VGG16 configuration "D"; "M" is a 2x2 max-pool, "C" the same in ceil mode (pool3).
VGG16_CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M", 512, 512, 512]
# ``features`` = layers[:CONV4_3_END] (conv1_1 .. conv4_3 + ReLU), as torchvision's SSD; the
# reference implementations' VGG lists and torchvision's vgg16.features split at the same index.
CONV4_3_END = 23


class L2Norm(nn.Module):
    """Per-location L2 normalisation across channels with a learnable scale per channel.

    x: (B, C, H, W) -> weight[c] * x / ||x||_2 over C.
    """

    def __init__(self, channels: int, scale: float = 20.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight.view(1, -1, 1, 1) * F.normalize(x, dim=1)


def vgg16_layers() -> list[nn.Module]:
    """conv1_1 .. conv5_3 + ReLUs, indexed exactly like ``torchvision.models.vgg16().features``."""
    layers: list[nn.Module] = []
    channels = 3
    for v in VGG16_CONFIG:
        if v in ("M", "C"):
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=v == "C"))
        else:
            layers += [nn.Conv2d(channels, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = int(v)
    return layers


def _extra_block(cin: int, mid: int, cout: int, **conv: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, mid, kernel_size=1), nn.ReLU(inplace=True),
        nn.Conv2d(mid, cout, **conv), nn.ReLU(inplace=True),
    )  # fmt: skip


def extra_blocks(image_size: int) -> list[nn.Sequential]:
    """conv8_2 .. conv11_2 (SSD300) or conv8_2 .. conv12_2 (SSD512), after conv7 (1024 wide)."""
    s2 = {"kernel_size": 3, "stride": 2, "padding": 1}
    if image_size == 300:
        return [
            _extra_block(1024, 256, 512, **s2),  # 19 -> 10
            _extra_block(512, 128, 256, **s2),  # 10 -> 5
            _extra_block(256, 128, 256, kernel_size=3),  # 5 -> 3
            _extra_block(256, 128, 256, kernel_size=3),  # 3 -> 1
        ]
    if image_size == 512:
        return [
            _extra_block(1024, 256, 512, **s2),  # 32 -> 16
            _extra_block(512, 128, 256, **s2),  # 16 -> 8
            _extra_block(256, 128, 256, **s2),  # 8 -> 4
            _extra_block(256, 128, 256, **s2),  # 4 -> 2
            _extra_block(256, 128, 256, kernel_size=4, padding=1),  # 2 -> 1
        ]
    raise ValueError(f"VGG16 SSD supports image_size 300 or 512, got {image_size}")


class VGG16Backbone(nn.Module):
    """SSD's VGG16 feature extractor.

    forward(x: (B, 3, S, S)) -> list of feature maps, S=300: (B, 512, 38, 38) [L2-normalised
    conv4_3], (B, 1024, 19, 19) [conv7], (B, 512, 10, 10), (B, 256, 5, 5), (B, 256, 3, 3),
    (B, 256, 1, 1); S=512: 64, 32, 16, 8, 4, 2, 1.
    """

    out_channels_300 = [512, 1024, 512, 256, 256, 256]
    out_channels_512 = [512, 1024, 512, 256, 256, 256, 256]

    def __init__(self, image_size: int = 300) -> None:
        super().__init__()
        layers = vgg16_layers()
        self.features = nn.Sequential(*layers[:CONV4_3_END])  # conv1_1 .. conv4_3 + ReLU
        self.l2norm = L2Norm(512)
        fc = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),  # pool5: keeps the resolution
            nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6),  # conv6 (fc6)
            nn.ReLU(inplace=True),
            nn.Conv2d(1024, 1024, kernel_size=1),  # conv7 (fc7)
            nn.ReLU(inplace=True),
        )
        self.extra = nn.ModuleList(
            [nn.Sequential(*layers[CONV4_3_END:], fc), *extra_blocks(image_size)]  # pool4 .. conv7
        )
        self.out_channels = self.out_channels_300 if image_size == 300 else self.out_channels_512
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """VGG layers as torchvision's VGG (Kaiming), new layers Xavier as in the reference code."""
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        for m in self.extra.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.features(x)
        outputs = [self.l2norm(x)]
        for block in self.extra:
            x = block(x)
            outputs.append(x)
        return outputs
