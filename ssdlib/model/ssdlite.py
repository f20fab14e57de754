"""SSDLite320 with a MobileNetV3-Large backbone (Howard et al. 2019, section 6.3; Sandler et al.
2018, section 6.2), laid out exactly as torchvision's ``ssdlite320_mobilenet_v3_large``.

* Backbone: torchvision's ``mobilenet_v3_large`` ``features``, cut as the MobileNetV3 paper does:
  the first map is the expansion (1x1) output of the last stride-16 -> 32 block ("C4", 672
  channels at 20x20 for a 320 px input), the second the end of the network (960 channels, or 480
  with the "reduced tail" of the paper's table 6, 10x10). Four extra blocks (1x1 -> depthwise 3x3
  stride 2 -> 1x1, BN + ReLU6) halve the map down to 1x1: maps 20, 10, 5, 3, 2, 1.
* Heads: per map a depthwise 3x3 (BN + ReLU6) then a 1x1 convolution with bias, for the class
  logits and for the box offsets (:class:`SSDLiteHead`); the output layout is
  :class:`~ssdlib.model.heads.SSDHead`'s.
* BatchNorm everywhere with eps 0.001 and momentum 0.03 (torchvision's choice for this model).

Module names equal torchvision's under ``backbone.`` (``features.0``, ``features.1``,
``extra.N``), so its state dicts map by renaming the head only
(:func:`ssdlib.model.convert.state_dict_from_torchvision_ssdlite`).

torchvision uses the reduced tail exactly when no ImageNet backbone is loaded (its COCO_V1 weights
were trained from scratch that way); ssdlib makes it an explicit ``model.reduced_tail`` so that a
config describes one architecture whatever weights it starts from.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torchvision.models import mobilenet_v3_large
from torchvision.ops.misc import Conv2dNormActivation

from ssdlib.model.heads import flatten_head_output

__all__ = ["MobileNetV3Backbone", "SSDLiteHead", "normal_init"]

# torchvision's norm_layer for SSDLite: BN with a larger eps and a slower running average.
BatchNorm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)


def normal_init(module: nn.Module) -> None:
    """torchvision's SSDLite initialisation: every conv weight N(0, 0.03), biases 0."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, mean=0.0, std=0.03)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def extra_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 to half the width, depthwise 3x3 stride 2, 1x1 to ``out_channels``; BN + ReLU6 each.

    (B, in, H, W) -> (B, out, ceil(H / 2), ceil(W / 2)).
    """
    mid = out_channels // 2
    conv = partial(Conv2dNormActivation, norm_layer=BatchNorm, activation_layer=nn.ReLU6)
    return nn.Sequential(
        conv(in_channels, mid, kernel_size=1),
        conv(mid, mid, kernel_size=3, stride=2, groups=mid),
        conv(mid, out_channels, kernel_size=1),
    )


def prediction_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Depthwise 3x3 (BN + ReLU6) then a 1x1 convolution with bias: SSDLite's replacement of
    SSD's 3x3 head convolution. (B, in, H, W) -> (B, out, H, W)."""
    return nn.Sequential(
        Conv2dNormActivation(in_channels, in_channels, kernel_size=3, groups=in_channels,
                             norm_layer=BatchNorm, activation_layer=nn.ReLU6),
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
    )  # fmt: skip


def c4_position(features: nn.Sequential) -> int:
    """Index of the last strided block ("C4") in MobileNetV3's ``features``: the block before the
    final 1x1 convolution among the stage starts torchvision marks with ``_is_cn``."""
    stage_starts = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)]
    return [*stage_starts, len(features) - 1][-2]


class MobileNetV3Backbone(nn.Module):
    """SSDLite's MobileNetV3-Large feature extractor.

    forward(x: (B, 3, 320, 320)) -> [(B, 672, 20, 20), (B, 960 | 480, 10, 10), (B, 512, 5, 5),
    (B, 256, 3, 3), (B, 256, 2, 2), (B, 128, 1, 1)].

    Args:
        reduced_tail: halve the channels of the last stage (480 instead of 960), as torchvision
            does when it trains without ImageNet weights; ImageNet weights need ``False``.
    """

    def __init__(self, reduced_tail: bool = False) -> None:
        super().__init__()
        net = mobilenet_v3_large(weights=None, norm_layer=BatchNorm, reduced_tail=reduced_tail).features
        c4 = c4_position(net)
        if net[c4].use_res_connect:  # the cut sits inside a block: it must have no shortcut
            raise ValueError(f"mobilenet_v3_large block {c4} has a residual connection")
        self.features = nn.Sequential(
            nn.Sequential(*net[:c4], net[c4].block[0]),  # up to C4's expansion (stride 16)
            nn.Sequential(net[c4].block[1:], *net[c4 + 1:]),  # C4's depthwise to the end (stride 32)
        )
        tail = net[-1].out_channels
        self.extra = nn.ModuleList([
            extra_block(tail, 512), extra_block(512, 256), extra_block(256, 256), extra_block(256, 128),
        ])  # fmt: skip
        self.out_channels = [net[c4].block[0].out_channels, tail, 512, 256, 256, 128]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's initialisation without ImageNet weights: N(0, 0.03) convolutions (the
        BN layers keep weight 1, bias 0)."""
        normal_init(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for block in [*self.features, *self.extra]:
            x = block(x)
            outputs.append(x)
        return outputs


class SSDLiteHead(nn.Module):
    """forward(features: list of (B, C_k, H_k, W_k)) -> (cls_logits (B, P, K), box_deltas (B, P, 4)),
    the same layout as :class:`~ssdlib.model.heads.SSDHead`, with depthwise-separable blocks."""

    def __init__(
        self, in_channels: list[int], boxes_per_location: list[int], num_logits: int
    ) -> None:
        super().__init__()
        self.num_logits = num_logits
        pairs = list(zip(in_channels, boxes_per_location, strict=True))
        self.cls_heads = nn.ModuleList(prediction_block(c, n * num_logits) for c, n in pairs)
        self.reg_heads = nn.ModuleList(prediction_block(c, n * 4) for c, n in pairs)
        normal_init(self)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        cls = [flatten_head_output(h(f), self.num_logits) for h, f in zip(self.cls_heads, features)]
        reg = [flatten_head_output(h(f), 4) for h, f in zip(self.reg_heads, features)]
        return torch.cat(cls, dim=1), torch.cat(reg, dim=1)
