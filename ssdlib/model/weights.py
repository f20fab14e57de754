"""Pretrained weights: torchvision's ImageNet VGG16 for the backbone, torchvision's COCO SSD300.

Nothing is downloaded at import time; downloads go to the torch hub cache
(``$TORCH_HOME/hub/checkpoints``, shared with torchvision) through
:func:`ssdlib.model.checkpoint_io.cached_download`, which checks the SHA-256 prefix in the file
name and, offline, says where to put the file.

Backbone (``model.backbone_weights``):

* ``imagenet`` — ``VGG16_Weights.IMAGENET1K_V1``: conv1_1..conv5_3 by index, and fc6/fc7
  decimated into conv6/conv7 as in the paper (section 3, "atrous"): fc6 (4096, 512*7*7) seen as
  (4096, 512, 7, 7) keeps every 4th output and every 3rd tap, ``[::4, :, ::3, ::3]`` ->
  (1024, 512, 3, 3) with dilation 6; fc7 ``[::4, ::4]`` -> (1024, 1024, 1, 1); biases ``[::4]``.
  These weights were trained on 0..1 images standardised with ImageNet's mean/std, while the VGG
  configs feed Caffe-style 0..255 pixels minus (123, 117, 104): :func:`fold_input_normalization`
  rescales conv1_1 so it sees the activations it was trained with (exact away from the zero
  padding at the image border).
* ``imagenet_features`` — ``VGG16_Weights.IMAGENET1K_FEATURES`` (amdegroot's Caffe VGG, trained on
  the Caffe convention already): conv layers only, conv6/conv7 stay freshly initialised, as in
  torchvision's ``ssd300_vgg16`` (its classifier is stored as NaNs and is ignored).

torchvision's SSD300 (:func:`ssd300_from_torchvision`): ssdlib's VGG16 backbone mirrors
``SSDFeatureExtractorVGG`` so its keys map 1:1 (``scale_weight`` -> ``l2norm.weight``,
``classification_head.module_list`` -> ``cls_heads``, ``regression_head.module_list`` ->
``reg_heads``), with config ``ssd300_coco_torchvision``. Conventions that differ:

* Boxes: torchvision decodes and returns pixels of the 300x300 transformed image (then rescales
  to the original image); ssdlib returns boxes relative to the input (``Detections.scaled``).
* Default boxes: torchvision clamps only w, h to [0, 1]; ssdlib (like lufficc/amdegroot) clamps
  cx, cy, w, h. Not a no-op: the 10x10 map has stride 32 and 10 * 32 > 300, so its last row and
  column have centres at 9.5 * 32 / 300 = 1.0133, which ssdlib moves to 1.0 (120 of 8732 boxes;
  the 38x38 map's last centre is exactly 1.0). :func:`ssd300_from_torchvision` therefore replaces
  the config's priors with :func:`torchvision_default_boxes`. torchvision also decodes against
  pixel xyxy anchors, so its boxes differ from ssdlib's by float32 rounding (~1e-7 relative).
* Box coding: BoxCoder weights (10, 10, 5, 5) are variances (0.1, 0.2). torchvision clamps
  dw, dh at log(1000/16) before ``exp``; the converted model sets the same clamp
  (``postprocess["max_log_scale"]``), ssdlib's default (and the references') does not clamp.
* Post-processing: torchvision thresholds (> 0.01) then keeps the 400 best per class; ssdlib
  keeps the 400 best then thresholds: the same set. Both run class-wise NMS (0.45) and keep
  200. Candidates with exactly tied scores may come out in another order.
* Labels: 1..90 are COCO category ids (:data:`COCO_V1_CATEGORIES`, "N/A" for unused ids).
* Input: torchvision normalises, then resizes bilinearly to 300x300; ssdlib resizes, then
  normalises (same mean: 0.48235.. x 255, std 1 on 0..255 pixels).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ssdlib.config import PriorsConfig
from ssdlib.model.checkpoint_io import (
    CheckpointError,
    cached_download,
    load_checkpoint_file,
    ssd_from_reference_checkpoint,
)
from ssdlib.model.shipped import SHIPPED, load_shipped
from ssdlib.model.ssd import SSD
from ssdlib.model.vgg import _VGG16
from ssdlib.priors import generate_priors_from

__all__ = [
    "COCO_V1_CATEGORIES",
    "fold_input_normalization",
    "load_pretrained_backbone",
    "pretrained_model",
    "ssd300_from_torchvision",
    "state_dict_from_torchvision_ssd",
    "torchvision_default_boxes",
    "vgg16_reduced_from_torchvision",
    "weight_url",
]

# torchvision.models._meta._COCO_CATEGORIES: index == label == COCO category id.
COCO_V1_CATEGORIES = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train",
    "truck", "boat", "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter",
    "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
    "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A", "handbag", "tie", "suitcase",
    "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot",
    "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "N/A",
    "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A", "book", "clock",
    "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

TORCHVISION_CONFIG = "ssd300_coco_torchvision"
# torchvision's BoxCoder clamp on dw, dh (``bbox_xform_clip``).
TORCHVISION_MAX_LOG_SCALE = math.log(1000.0 / 16)

# Input conventions in 0..255 pixel units: x = (pixel - mean) / std.
IMAGENET_MEAN_255 = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD_255 = (0.229 * 255, 0.224 * 255, 0.225 * 255)
CAFFE_MEAN = (123.0, 117.0, 104.0)

# VGG16 ``features`` indices of conv1_1 .. conv5_3.
_VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
_FEATURES_END = 23  # ssdlib/torchvision SSD: features = vgg16.features[:23]


def weight_url(name: str) -> str:
    """Download URL of "imagenet", "imagenet_features" or "torchvision-coco" weights."""
    from torchvision.models import VGG16_Weights
    from torchvision.models.detection import SSD300_VGG16_Weights

    urls = {
        "imagenet": VGG16_Weights.IMAGENET1K_V1.url,
        "imagenet_features": VGG16_Weights.IMAGENET1K_FEATURES.url,
        "torchvision-coco": SSD300_VGG16_Weights.COCO_V1.url,
    }
    if name not in urls:
        raise ValueError(f"unknown weights {name!r}; expected one of {sorted(urls)}")
    return urls[name]


def _vgg_conv_key(index: int) -> str:
    """Backbone key prefix of torchvision ``vgg16.features[index]`` (index <= 29)."""
    return f"features.{index}" if index < _FEATURES_END else f"extra.0.{index - _FEATURES_END}"


def _vgg16_conv_channels() -> list[tuple[int, int]]:
    """(in, out) channels of conv1_1 .. conv5_3."""
    widths = [v for v in _VGG16 if isinstance(v, int)]
    return list(zip([3, *widths[:-1]], widths))


def _has_usable_classifier(state: Mapping[str, torch.Tensor]) -> bool:
    keys = ("classifier.0.weight", "classifier.0.bias", "classifier.3.weight", "classifier.3.bias")
    if not all(k in state for k in keys):
        return False
    # IMAGENET1K_FEATURES stores the classifier, but filled with NaNs.
    return all(bool(torch.isfinite(state[k]).all()) for k in keys)


def vgg16_reduced_from_torchvision(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """:class:`~ssdlib.model.VGG16Backbone` weights from a torchvision ``vgg16`` state dict.

    IMAGENET1K_V1 layout (``features.*`` + ``classifier.*``): conv1_1..conv5_3 plus conv6
    (1024, 512, 3, 3) = fc6.view(4096, 512, 7, 7)[::4, :, ::3, ::3] and conv7 (1024, 1024, 1, 1)
    = fc7[::4, ::4]; biases [::4]. IMAGENET1K_FEATURES layout (no or non-finite classifier):
    conv1_1..conv5_3 only. ``l2norm`` and the extra layers are never included.

    Returns:
        a partial state dict of the backbone (keys ``features.N.*``, ``extra.0.*``).
    Raises:
        CheckpointError: neither layout (missing conv keys or wrong shapes).
    """
    out: dict[str, torch.Tensor] = {}
    for i, (cin, cout) in zip(_VGG16_CONVS, _vgg16_conv_channels(), strict=True):
        for name, shape in (("weight", (cout, cin, 3, 3)), ("bias", (cout,))):
            key = f"features.{i}.{name}"
            if key not in state_dict or state_dict[key].shape != shape:
                got = tuple(state_dict[key].shape) if key in state_dict else "missing"
                raise CheckpointError(
                    f"not a torchvision vgg16 state dict (IMAGENET1K_V1 or IMAGENET1K_FEATURES): "
                    f"{key} is {got}, expected {tuple(shape)}"
                )
            out[f"{_vgg_conv_key(i)}.{name}"] = state_dict[key]
    if _has_usable_classifier(state_dict):
        fc6_w, fc6_b = state_dict["classifier.0.weight"], state_dict["classifier.0.bias"]
        fc7_w, fc7_b = state_dict["classifier.3.weight"], state_dict["classifier.3.bias"]
        if fc6_w.shape != (4096, 512 * 7 * 7) or fc7_w.shape != (4096, 4096):
            raise CheckpointError(f"vgg16 classifier has shapes {tuple(fc6_w.shape)}, "
                                  f"{tuple(fc7_w.shape)}; expected (4096, 25088), (4096, 4096)")  # fmt: skip
        # fc6 acted on pool5's 7x7 map of conv5_3 (C, H, W flattened in that order).
        out["extra.0.7.1.weight"] = fc6_w.reshape(4096, 512, 7, 7)[::4, :, ::3, ::3].contiguous()
        out["extra.0.7.1.bias"] = fc6_b[::4].contiguous()
        out["extra.0.7.3.weight"] = fc7_w[::4, ::4].reshape(1024, 1024, 1, 1).contiguous()
        out["extra.0.7.3.bias"] = fc7_b[::4].contiguous()
    return out


def fold_input_normalization(
    weight: torch.Tensor,
    bias: torch.Tensor,
    trained_mean: Sequence[float],
    trained_std: Sequence[float],
    input_mean: Sequence[float],
    input_std: Sequence[float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """First-conv weights that give on ``(p - input_mean) / input_std`` what ``weight``, ``bias``
    gave on ``(p - trained_mean) / trained_std`` (all per channel, in the same pixel units).

    x_trained = x_input * input_std / trained_std + (input_mean - trained_mean) / trained_std,
    folded into the convolution. Exact except where the kernel overlaps zero padding.

    Args:
        weight: (O, C, kH, kW); bias: (O,).
    Returns:
        (weight', bias') of the same shapes.
    """
    kw = {"dtype": weight.dtype, "device": weight.device}
    scale = torch.tensor(input_std, **kw) / torch.tensor(trained_std, **kw)  # (C,)
    shift = (torch.tensor(input_mean, **kw) - torch.tensor(trained_mean, **kw)) / torch.tensor(
        trained_std, **kw
    )  # (C,)
    new_weight = weight * scale.view(1, -1, 1, 1)
    new_bias = bias + (weight.sum(dim=(2, 3)) * shift.view(1, -1)).sum(dim=1)
    return new_weight, new_bias


def load_pretrained_backbone(
    backbone: nn.Module,
    kind: str,
    pixel_mean: Sequence[float] = CAFFE_MEAN,
    pixel_std: Sequence[float] = (1.0, 1.0, 1.0),
    progress: bool = True,
) -> None:
    """Load torchvision's ImageNet VGG16 weights ("imagenet" or "imagenet_features") into a
    :class:`~ssdlib.model.VGG16Backbone`, downloading them into the torch hub cache if needed.

    ``pixel_mean``/``pixel_std`` (0..255 units) describe the input the backbone will be fed; the
    "imagenet" weights' conv1_1 is folded to it (see :func:`fold_input_normalization`).
    """
    if kind not in ("imagenet", "imagenet_features"):
        raise ValueError(f"backbone weights {kind!r}: expected 'imagenet' or 'imagenet_features'")
    path = cached_download(weight_url(kind), check_hash=True, progress=progress)
    state = vgg16_reduced_from_torchvision(load_checkpoint_file(path))
    if kind == "imagenet":
        if "extra.0.7.1.weight" not in state:
            raise CheckpointError(f"{path}: 'imagenet' needs IMAGENET1K_V1 weights with fc6/fc7")
        state["features.0.weight"], state["features.0.bias"] = fold_input_normalization(
            state["features.0.weight"], state["features.0.bias"],
            IMAGENET_MEAN_255, IMAGENET_STD_255, pixel_mean, pixel_std,
        )  # fmt: skip
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    # Left at their initialisation: L2Norm's scale, the extra layers, and conv6/conv7 for
    # "imagenet_features".
    fresh = [k for k in missing if not re.match(r"l2norm\.|extra\.0\.7\.|extra\.[1-9]\.", k)]
    if unexpected or fresh:
        raise CheckpointError(f"{path}: does not fit the backbone; unexpected {unexpected}, "
                              f"missing {fresh}")  # fmt: skip


def state_dict_from_torchvision_ssd(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ssdlib SSD keys from a ``torchvision.models.detection.ssd300_vgg16`` state dict."""
    renames = {
        "backbone.scale_weight": "backbone.l2norm.weight",
        "head.classification_head.module_list.": "head.cls_heads.",
        "head.regression_head.module_list.": "head.reg_heads.",
    }
    out = {}
    for key, value in state_dict.items():
        new = key
        for old, repl in renames.items():
            if key.startswith(old):
                new = repl + key[len(old):]
                break
        if not new.startswith(("backbone.features.", "backbone.extra.", "backbone.l2norm.",
                               "head.cls_heads.", "head.reg_heads.")):  # fmt: skip
            raise CheckpointError(f"not a torchvision ssd300_vgg16 state dict: key {key!r}")
        out[new] = value
    return out


def torchvision_default_boxes(cfg: PriorsConfig) -> torch.Tensor:
    """(P, 4) cx, cy, w, h like torchvision's ``DefaultBoxGenerator(clip=True)``: only the widths
    and heights are clamped to [0, 1], centres past the image border are kept."""
    priors = generate_priors_from(
        cfg.image_size, cfg.feature_maps, cfg.strides, cfg.min_sizes, cfg.max_sizes,
        cfg.aspect_ratios, clip=False,
    )  # fmt: skip
    if cfg.clip:
        priors[:, 2:] = priors[:, 2:].clamp(min=0.0, max=1.0)
    return priors


def ssd300_from_torchvision(state_dict: Mapping[str, torch.Tensor]) -> SSD:
    """An ssdlib SSD300 (config ``ssd300_coco_torchvision`` with :func:`torchvision_default_boxes`,
    91 logits, its post-processing settings and box-size clamp) holding the weights of a
    ``torchvision.models.detection.ssd300_vgg16`` state dict. In eval mode.

    ``model(x)`` equals torchvision's ``head(backbone(x))`` (cls_logits, bbox_regression) on the
    same normalised batch; ``model.predict(x)`` equals its ``postprocess_detections`` / 300.
    """
    from ssdlib.config import load_config
    from ssdlib.model import build_model

    num_logits = state_dict["head.classification_head.module_list.0.bias"].shape[0] // 4
    if num_logits != len(COCO_V1_CATEGORIES):
        raise CheckpointError(f"torchvision SSD300 with {num_logits} logits; expected 91 (COCO)")
    cfg = load_config(TORCHVISION_CONFIG)
    model = build_model(cfg)
    model.load_state_dict(state_dict_from_torchvision_ssd(state_dict), strict=True)
    model.priors.copy_(torchvision_default_boxes(cfg.priors))
    model.postprocess["max_log_scale"] = TORCHVISION_MAX_LOG_SCALE
    return model.eval()


def pretrained_model(name: str, progress: bool = True) -> tuple[SSD, list[str]]:
    """A ready detector and its class names (background excluded: label l is ``names[l - 1]``).

    ``name``: "shapes" (the shipped ``make demo`` model, :mod:`ssdlib.model.shipped`),
    "torchvision-coco" (downloads ``SSD300_VGG16_Weights.COCO_V1``, 25.1 COCO AP;
    labels are COCO category ids, unused ids named "N/A"), or the path of a torchvision SSD300,
    lufficc/SSD or amdegroot/ssd.pytorch checkpoint (read with ``weights_only=True``).
    """
    if name in SHIPPED:  # trained detectors inside the package (ssdlib/weights), offline
        model, cfg, _ = load_shipped(name)
        return model, list(cfg.data.class_names)
    if name == "torchvision-coco":
        state = load_checkpoint_file(
            cached_download(weight_url(name), check_hash=True, progress=progress)
        )
    elif os.path.isfile(name):
        state = load_checkpoint_file(name)
    else:
        raise ValueError(f"weights {name!r}: expected {', '.join(sorted(SHIPPED))}, "
                         "'torchvision-coco' or a checkpoint file")
    if "backbone.scale_weight" in state:
        return ssd300_from_torchvision(state), list(COCO_V1_CATEGORIES[1:])
    try:
        model = ssd_from_reference_checkpoint(state)
    except CheckpointError as e:
        raise CheckpointError(f"{name}: {e}") from e
    from ssdlib.config import VOC_CLASS_NAMES

    names = list(VOC_CLASS_NAMES) if model.num_classes == 20 else [
        str(i) for i in range(1, model.num_classes + 1)
    ]  # fmt: skip
    return model.eval(), names
