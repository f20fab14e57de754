"""The two SSD300 detectors the benchmark compares, holding the same weights.

ssdlib's model gets torchvision's random initialisation (through
:func:`ssdlib.model.convert.state_dict_from_torchvision_ssd`), torchvision's default boxes and
its post-processing settings, so both produce the same logits, the same candidates and the same
NMS work: the rows then compare implementations, not random draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ssdlib.config import CAFFE_PIXEL_MEAN, load_config
from ssdlib.model import build_model
from ssdlib.model.convert import state_dict_from_torchvision_ssd, torchvision_default_boxes
from ssdlib.model.ssd import SSD


@dataclass
class Pair:
    ours: SSD
    peer: torch.nn.Module  # torchvision.models.detection.SSD

    def postprocess_kwargs(self) -> dict:
        """torchvision's post-processing settings in :func:`ssdlib.postprocess.detect` terms."""
        return {
            "score_threshold": self.peer.score_thresh,
            "nms_threshold": self.peer.nms_thresh,
            "max_per_image": self.peer.detections_per_img,
            "top_k_candidates": self.peer.topk_candidates,
            "clip": True,
            "max_log_scale": math.log(1000.0 / 16),
        }


def build_pair(num_classes: int = 20, seed: int = 0) -> Pair:
    """torchvision ``ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21)`` and an
    ssdlib SSD300 with the same weights, both in eval mode on the CPU."""
    from torchvision.models.detection import ssd300_vgg16

    torch.manual_seed(seed)
    peer = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=num_classes + 1).eval()
    cfg = load_config("ssd300_voc", ["model.backbone_weights=none", f"model.num_classes={num_classes}"])
    ours = build_model(cfg)
    ours.load_state_dict(state_dict_from_torchvision_ssd(peer.state_dict()), strict=True)
    with torch.no_grad():
        ours.priors.copy_(torchvision_default_boxes(cfg.priors))
    pair = Pair(ours.eval(), peer)
    ours.postprocess.update(pair.postprocess_kwargs())
    return pair


def peer_images(batch: int, size: int = 300, seed: int = 0) -> list[torch.Tensor]:
    """torchvision's input: a list of (3, S, S) float images in 0..1."""
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, size, size, generator=g) for _ in range(batch)]


def normalise(images: list[torch.Tensor]) -> torch.Tensor:
    """ssdlib's input for the same images: (B, 3, S, S), 0..255 minus the Caffe mean."""
    # torchvision's GeneralizedRCNNTransform for ssd300_vgg16: 0..1 images, mean of Caffe's
    # (123, 117, 104) / 255 and std 1 / 255, i.e. exactly ssdlib's 0..255-minus-mean convention.
    mean = torch.tensor(CAFFE_PIXEL_MEAN).view(1, 3, 1, 1)
    return torch.stack(images) * 255.0 - mean


def count_flops(model: torch.nn.Module, images: torch.Tensor) -> int:
    """Forward FLOPs (multiply-add = 2) of ``model(images)`` by ``FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(images)
    return int(counter.get_total_flops())


def random_targets(batch: int, seed: int = 0, max_boxes: int = 20):
    """B images' ground truth: 1..max_boxes boxes each, xyxy relative, labels 1..20."""
    g = torch.Generator().manual_seed(seed)
    boxes, labels = [], []
    for _ in range(batch):
        n = int(torch.randint(1, max_boxes + 1, (1,), generator=g))
        lo = torch.rand(n, 2, generator=g) * 0.8
        hi = (lo + 0.02 + torch.rand(n, 2, generator=g) * 0.5).clamp(max=1.0)
        boxes.append(torch.cat([lo, hi], dim=1))
        labels.append(torch.randint(1, 21, (n,), generator=g))
    return boxes, labels
