"""``ssdlite_b1`` / ``ssdlite_b8``: ssdlib's SSDLite320 MobileNetV3-Large ``predict`` against
torchvision's ``ssdlite320_mobilenet_v3_large`` in eval mode, same weights, same images, same run.

ssdlib's model holds torchvision's random initialisation (through
:func:`ssdlib.model.ssdlite320_from_torchvision`: same default boxes, post-processing settings
and box-size clamp), so both compute the same logits and run the same NMS: the rows compare
implementations. Both in fp32; ours in channels_last as ``inference_b*`` (prepare_for_inference).
"""

from __future__ import annotations

import copy

import torch

from ssdlib.bench.models import count_flops, peer_images
from ssdlib.bench.timing import Row, measure_pair

__all__ = ["build_ssdlite_pair", "ssdlite_rows", "to_minus1_1"]

SIZE = 320


def build_ssdlite_pair(seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(ours, peer): torchvision ``ssdlite320_mobilenet_v3_large(weights=None,
    weights_backbone=None)`` (91 classes) and the ssdlib model converted from it, both in eval."""
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large

    from ssdlib.model import ssdlite320_from_torchvision

    torch.manual_seed(seed)
    peer = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    return ssdlite320_from_torchvision(peer.state_dict()), peer


def to_minus1_1(images: list[torch.Tensor]) -> torch.Tensor:
    """ssdlib's input for torchvision's 0..1 images: (B, 3, S, S) in ssdlite320's convention,
    0..255 pixels minus 127.5 over 127.5 (torchvision: mean 0.5, std 0.5 on 0..1)."""
    return (torch.stack(images) * 255.0 - 127.5) / 127.5


ROW_NAMES = ("ssdlite_b1", "ssdlite_b8")


def ssdlite_rows(s) -> list[Row]:
    """Rows for batch 1 and ``s.big_batch`` (``s``: the bench Settings)."""
    from ssdlib.model.ssd import prepare_for_inference

    ours, peer = build_ssdlite_pair()
    flops = count_flops(ours, to_minus1_1(peer_images(1, SIZE)))
    fast = prepare_for_inference(copy.deepcopy(ours), channels_last=True)
    rows = []
    with torch.inference_mode():
        for name, batch in zip(ROW_NAMES, (1, s.big_batch)):
            images = peer_images(batch, SIZE)
            ours_s, peer_s = measure_pair(lambda x=images: fast.predict(to_minus1_1(x)),
                                          lambda x=images: peer(x), s.repeats, s.heavy_warmup)  # fmt: skip
            note = (f"SSDLite320 MobileNetV3 fp32 channels_last predict incl. normalise+NMS vs "
                    f"torchvision ssdlite320 eval; {flops / 1e9:.2f} GFLOP/img")  # fmt: skip
            if batch != (8 if name.endswith("b8") else 1):
                note += f" [quick: batch {batch}, not 8]"
            rows.append(Row(name, ours_s, peer_s, note, flops=flops * batch, dtype=torch.float32))
    return rows
