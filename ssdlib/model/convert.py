"""State-dict conversions: torchvision's VGG16 and SSD300, lufficc/SSD and amdegroot/ssd.pytorch
checkpoints -> ssdlib keys. Pure functions on tensors: no files, no downloads, no models built
(:mod:`ssdlib.model.pretrained` fetches the files, :mod:`ssdlib.model.build` builds the models).

ImageNet VGG16 (:func:`vgg16_reduced_from_torchvision`): conv1_1..conv5_3 by index, and fc6/fc7
decimated into conv6/conv7 as in the paper (section 3, "atrous"): fc6 (4096, 512*7*7) seen as
(4096, 512, 7, 7) keeps every 4th output and every 3rd tap, ``[::4, :, ::3, ::3]`` ->
(1024, 512, 3, 3) with dilation 6; fc7 ``[::4, ::4]`` -> (1024, 1024, 1, 1); biases ``[::4]``.
These weights were trained on 0..1 images standardised with ImageNet's mean/std, while the VGG
configs feed Caffe-style 0..255 pixels minus (123, 117, 104): :func:`fold_input_normalization`
rescales conv1_1 so it sees the activations it was trained with (exact away from the zero
padding at the image border).

torchvision's SSD300 (:func:`ssdlib.model.ssd300_from_torchvision`): ssdlib's VGG16 backbone mirrors
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

torchvision's SSDLite320 (:func:`ssdlib.model.ssdlite320_from_torchvision`): ssdlib's
MobileNetV3 backbone has torchvision's module names, so only the heads are renamed
(:func:`state_dict_from_torchvision_ssdlite`); its default boxes come out of the config
``ssdlite320_coco`` exactly (no centre lies past the border at 320 px), and the box clamp and
post-processing notes above hold with its settings (score > 0.001, top 300 per class, NMS 0.55,
300 kept). ImageNet MobileNetV3-Large (:func:`mobilenet_v3_large_from_torchvision`): ``features.N``
by index, C4 (block 13) split between the first two maps as SSDLite splits it.

Reference layouts (both build VGG with the same ``add_vgg``/``vgg`` list, background = class 0,
heads flattened with ``permute(0, 2, 3, 1).view(B, -1, K)`` like :class:`ssdlib.model.SSDHead`):

====================  =========================  ======================  ======================
ssdlib                lufficc/SSD                amdegroot/ssd.pytorch   note
====================  =========================  ======================  ======================
backbone.features.N   backbone.vgg.N             vgg.N                   N < 23: conv1_1..conv4_3
backbone.extra.0.M    backbone.vgg.(23+M)        vgg.(23+M)              pool4..conv5_3 (M < 7)
backbone.extra.0.7.1  backbone.vgg.31            vgg.31                  conv6 (dilation 6)
backbone.extra.0.7.3  backbone.vgg.33            vgg.33                  conv7
backbone.l2norm       backbone.l2_norm           L2Norm                  conv4_3 scale
backbone.extra.I.J    backbone.extras.K          extras.K                I = 1 + K // 2,
                                                                         J = 0 (K even) or 2
head.cls_heads.N      box_head.predictor         conf.N
                      .cls_headers.N
head.reg_heads.N      box_head.predictor         loc.N
                      .reg_headers.N
====================  =========================  ======================  ======================

The references' extras are bare convolutions with ``F.relu`` applied in ``forward``; ssdlib keeps
the ReLUs as modules (indices 1 and 3 of each block), hence J in {0, 2}. Their L2Norm divides by
``norm + 1e-10`` where ssdlib's uses ``max(norm, 1e-12)``: equal unless a location is all zeros.
Both expect RGB images in 0..255 minus (123, 117, 104), the ``ssd300_voc`` input convention.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import torch

from ssdlib.config import PriorsConfig
from ssdlib.io import CheckpointError
from ssdlib.model.vgg import CONV4_3_END, VGG16_CONFIG
from ssdlib.priors import generate_priors_from

__all__ = [
    "COCO_V1_CATEGORIES",
    "TORCHVISION_MAX_LOG_SCALE",
    "fold_input_normalization",
    "reference_checkpoint_format",
    "reference_ssd_layout",
    "state_dict_from_amdegroot",
    "state_dict_from_lufficc",
    "state_dict_from_torchvision_ssd",
    "state_dict_from_torchvision_ssdlite",
    "mobilenet_v3_large_from_torchvision",
    "torchvision_default_boxes",
    "vgg16_reduced_from_torchvision",
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

# torchvision's BoxCoder clamp on dw, dh (``bbox_xform_clip``).
TORCHVISION_MAX_LOG_SCALE = math.log(1000.0 / 16)

# VGG16 ``features`` indices of conv1_1 .. conv5_3.
_VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def _vgg_conv_key(index: int) -> str:
    """Backbone key prefix of torchvision ``vgg16.features[index]`` (index <= 29)."""
    return f"features.{index}" if index < CONV4_3_END else f"extra.0.{index - CONV4_3_END}"


def _vgg16_conv_channels() -> list[tuple[int, int]]:
    """(in, out) channels of conv1_1 .. conv5_3."""
    widths = [v for v in VGG16_CONFIG if isinstance(v, int)]
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


def state_dict_from_torchvision_ssd(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ssdlib SSD keys from a ``torchvision.models.detection.ssd300_vgg16`` state dict."""
    renames = {
        "backbone.scale_weight": "backbone.l2norm.weight",
        "head.classification_head.module_list.": "head.cls_heads.",
        "head.regression_head.module_list.": "head.reg_heads.",
    }
    allowed = ("backbone.features.", "backbone.extra.", "backbone.l2norm.", "head.cls_heads.",
               "head.reg_heads.")  # fmt: skip
    return _renamed(state_dict, renames, allowed, "torchvision ssd300_vgg16")


def _renamed(
    state_dict: Mapping[str, torch.Tensor], renames: Mapping[str, str], allowed: tuple[str, ...], what: str
) -> dict[str, torch.Tensor]:
    """``state_dict`` with the first matching prefix of ``renames`` replaced in each key; a key
    that then starts with none of ``allowed`` is a CheckpointError naming ``what`` was expected."""
    out = {}
    for key, value in state_dict.items():
        new = next((repl + key[len(old):] for old, repl in renames.items() if key.startswith(old)), key)
        if not new.startswith(allowed):
            raise CheckpointError(f"not a {what} state dict: key {key!r}")
        out[new] = value
    return out


# torchvision's SSDLite320 head keys -> ssdlib's; its backbone keys are ssdlib's already
# (:class:`ssdlib.model.ssdlite.MobileNetV3Backbone` mirrors SSDLiteFeatureExtractorMobileNet).
_SSDLITE_HEAD_RENAMES = {
    "head.classification_head.module_list.": "head.cls_heads.",
    "head.regression_head.module_list.": "head.reg_heads.",
}
# Index of MobileNetV3-Large's last strided block ("C4") in ``mobilenet_v3_large().features``,
# where SSDLite cuts its first map (:func:`ssdlib.model.ssdlite.c4_position` finds the same).
MOBILENET_V3_LARGE_C4 = 13


def state_dict_from_torchvision_ssdlite(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ssdlib SSD keys from a ``torchvision.models.detection.ssdlite320_mobilenet_v3_large`` state
    dict: the heads' ``module_list`` become ``cls_heads`` / ``reg_heads``, the rest is unchanged."""
    allowed = ("backbone.features.", "backbone.extra.", "head.cls_heads.", "head.reg_heads.")
    return _renamed(state_dict, _SSDLITE_HEAD_RENAMES, allowed, "torchvision ssdlite320_mobilenet_v3_large")


def _mobilenet_key(index: int, rest: str, c4: int) -> str:
    """:class:`~ssdlib.model.ssdlite.MobileNetV3Backbone` key of ``features.{index}.{rest}``."""
    if index < c4:
        return f"features.0.{index}.{rest}"
    if index > c4:
        return f"features.1.{index - c4}.{rest}"
    # C4 itself is split: its expansion ends map 0, the rest of its block starts map 1 (a slice
    # of an nn.Sequential keeps the original indices: block[1:] holds keys 1, 2, 3).
    match = re.fullmatch(r"block\.(\d+)\.(.+)", rest)
    if match is None:
        raise CheckpointError(f"mobilenet_v3_large features.{c4}.{rest}: expected block.N.*")
    j = int(match[1])
    return f"features.0.{c4}.{match[2]}" if j == 0 else f"features.1.0.{j}.{match[2]}"


def mobilenet_v3_large_from_torchvision(
    state_dict: Mapping[str, torch.Tensor], c4: int = MOBILENET_V3_LARGE_C4
) -> dict[str, torch.Tensor]:
    """:class:`~ssdlib.model.ssdlite.MobileNetV3Backbone` weights (``features.*``; the extra
    blocks are not included) from a torchvision ``mobilenet_v3_large`` state dict (ImageNet
    ``IMAGENET1K_V1``); its classifier is dropped.

    Raises:
        CheckpointError: a key outside ``features.*`` / ``classifier.*``.
    """
    out = {}
    for key, value in state_dict.items():
        if key.startswith("classifier."):
            continue
        match = re.fullmatch(r"features\.(\d+)\.(.+)", key)
        if match is None:
            raise CheckpointError(f"not a torchvision mobilenet_v3_large state dict: key {key!r}")
        out[_mobilenet_key(int(match[1]), match[2], c4)] = value
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


def _vgg_key(index: int) -> str:
    """ssdlib module path of entry ``index`` of the references' VGG list (0..34)."""
    if index < CONV4_3_END:
        return f"backbone.features.{index}"
    if index < 30:
        return f"backbone.extra.0.{index - CONV4_3_END}"
    # 30 pool5, 31 conv6, 32 relu, 33 conv7, 34 relu == the ``fc`` Sequential at extra.0.7
    return f"backbone.extra.0.7.{index - 30}"


def _extras_key(index: int) -> str:
    return f"backbone.extra.{1 + index // 2}.{0 if index % 2 == 0 else 2}"


_LUFFICC = (
    (re.compile(r"backbone\.vgg\.(\d+)\.(weight|bias)"), lambda m: _vgg_key(int(m[1]))),
    (re.compile(r"backbone\.extras\.(\d+)\.(weight|bias)"), lambda m: _extras_key(int(m[1]))),
    (re.compile(r"backbone\.l2_norm\.(weight)"), lambda m: "backbone.l2norm"),
    (re.compile(r"box_head\.predictor\.cls_headers\.(\d+)\.(weight|bias)"),
     lambda m: f"head.cls_heads.{m[1]}"),
    (re.compile(r"box_head\.predictor\.reg_headers\.(\d+)\.(weight|bias)"),
     lambda m: f"head.reg_heads.{m[1]}"),
)  # fmt: skip
_AMDEGROOT = (
    (re.compile(r"vgg\.(\d+)\.(weight|bias)"), lambda m: _vgg_key(int(m[1]))),
    (re.compile(r"extras\.(\d+)\.(weight|bias)"), lambda m: _extras_key(int(m[1]))),
    (re.compile(r"L2Norm\.(weight)"), lambda m: "backbone.l2norm"),
    (re.compile(r"conf\.(\d+)\.(weight|bias)"), lambda m: f"head.cls_heads.{m[1]}"),
    (re.compile(r"loc\.(\d+)\.(weight|bias)"), lambda m: f"head.reg_heads.{m[1]}"),
)


def _unwrap(checkpoint: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """The state dict inside a training checkpoint, without DataParallel's ``module.``."""
    state = checkpoint.get("model", checkpoint)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"checkpoint['model'] is a {type(state).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _remap(state: Mapping[str, torch.Tensor], rules, source: str) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for pattern, target in rules:
            match = pattern.fullmatch(key)
            if match:
                out[f"{target(match)}.{match.groups()[-1]}"] = value
                break
        else:
            raise CheckpointError(f"{source} checkpoint: unexpected key {key!r}")
    return out


def state_dict_from_lufficc(checkpoint: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """ssdlib state dict (backbone + head) of a lufficc/SSD VGG checkpoint (``{"model": ...}``)."""
    return _remap(_unwrap(checkpoint), _LUFFICC, "lufficc/SSD")


def state_dict_from_amdegroot(checkpoint: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """ssdlib state dict (backbone + head) of an amdegroot/ssd.pytorch ``SSD.state_dict()``."""
    return _remap(_unwrap(checkpoint), _AMDEGROOT, "amdegroot/ssd.pytorch")


def reference_checkpoint_format(checkpoint: Mapping[str, object]) -> str:
    """"lufficc" or "amdegroot", from the key names; :class:`CheckpointError` otherwise."""
    keys = set(_unwrap(checkpoint))
    if "backbone.l2_norm.weight" in keys:
        return "lufficc"
    if "L2Norm.weight" in keys:
        return "amdegroot"
    sample = ", ".join(sorted(keys)[:5])
    raise CheckpointError(
        "not a lufficc/SSD (backbone.l2_norm.weight) nor an amdegroot/ssd.pytorch "
        f"(L2Norm.weight) VGG SSD checkpoint; keys start with: {sample}"
    )


def reference_ssd_layout(state: Mapping[str, torch.Tensor], fmt: str) -> tuple[int, int]:
    """``(image_size, num_logits)`` of a converted reference state dict: the size from the
    number of extra convolutions (8: SSD300, 10: SSD512), the logits (classes + background) from
    the first classification head (4 boxes per location)."""
    extras = {k.split(".")[2] for k in state if k.startswith("backbone.extra.") and
              not k.startswith("backbone.extra.0.")}  # fmt: skip
    sizes = {4: 300, 5: 512}
    if len(extras) not in sizes:
        raise CheckpointError(f"{fmt} checkpoint: {len(extras) * 2} extra convolutions; "
                              "expected 8 (SSD300) or 10 (SSD512)")  # fmt: skip
    return sizes[len(extras)], state["head.cls_heads.0.weight"].shape[0] // 4
