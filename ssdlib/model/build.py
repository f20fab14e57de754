"""Every way to get an SSD: from a config (:func:`build_model`), from torchvision's SSD300
weights, from a lufficc/amdegroot checkpoint, or from a pretrained name (:func:`pretrained_model`).

:data:`BACKBONES` maps ``model.name`` to its backbone builder; ``validate_config`` reads its
names, so a new backbone is one entry here. Pretrained names are in
:data:`ssdlib.model.pretrained.WEIGHTS`, the detectors among them in :data:`DETECTORS`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import torch

from ssdlib.config import VOC_CLASS_NAMES, Config, ConfigError, load_config
from ssdlib.io import CheckpointError, load_checkpoint_file
from ssdlib.model import convert, pretrained, shipped
from ssdlib.model.heads import SSDHead
from ssdlib.model.light import LightBackbone
from ssdlib.model.ssd import SSD
from ssdlib.model.ssdlite import MobileNetV3Backbone, SSDLiteHead
from ssdlib.model.vgg import VGG16Backbone
from ssdlib.priors import boxes_per_location, generate_priors

__all__ = [
    "BACKBONES",
    "DETECTORS",
    "build_backbone",
    "build_model",
    "feature_map_sizes",
    "load_shipped",
    "pretrained_model",
    "ssd300_from_torchvision",
    "ssd_from_reference_checkpoint",
    "ssdlite320_from_torchvision",
]

TORCHVISION_CONFIG = "ssd300_coco_torchvision"
SSDLITE_CONFIG = "ssdlite320_coco"


def _vgg16(size: int) -> Callable[[Config], torch.nn.Module]:
    def build(cfg: Config) -> torch.nn.Module:
        if cfg.priors.image_size != size:
            raise ConfigError(f"model.name {cfg.model.name} needs priors.image_size {size}, "
                              f"got {cfg.priors.image_size}")  # fmt: skip
        backbone = VGG16Backbone(size)
        if cfg.model.backbone_weights != "none":
            pretrained.load_pretrained_backbone(
                backbone, cfg.model.backbone_weights, cfg.input.pixel_mean, cfg.input.pixel_std
            )
        return backbone

    return build


def _light(cfg: Config) -> torch.nn.Module:
    if cfg.model.backbone_weights != "none":
        raise ConfigError("model.backbone_weights: the light backbone has no pretrained "
                          f"weights; use 'none', got {cfg.model.backbone_weights!r}")  # fmt: skip
    return LightBackbone(cfg.model.width, cfg.model.first_stride)


def _ssdlite320(cfg: Config) -> torch.nn.Module:
    if cfg.priors.image_size != 320:
        raise ConfigError(f"model.name {cfg.model.name} needs priors.image_size 320, "
                          f"got {cfg.priors.image_size}")  # fmt: skip
    if cfg.model.backbone_weights not in ("none", "imagenet"):
        raise ConfigError("model.backbone_weights: MobileNetV3 has 'imagenet' weights or 'none', "
                          f"got {cfg.model.backbone_weights!r}")  # fmt: skip
    if cfg.model.backbone_weights == "imagenet" and cfg.model.reduced_tail:
        raise ConfigError("model.reduced_tail: the ImageNet MobileNetV3 weights have the full tail; "
                          "set model.reduced_tail=false or model.backbone_weights=none")  # fmt: skip
    backbone = MobileNetV3Backbone(cfg.model.reduced_tail)
    if cfg.model.backbone_weights == "imagenet":
        pretrained.load_pretrained_mobilenet(backbone)
    return backbone


# model.name -> backbone builder (weights as cfg.model.backbone_weights).
BACKBONES: dict[str, Callable[[Config], torch.nn.Module]] = {
    "ssd300_vgg16": _vgg16(300),
    "ssd512_vgg16": _vgg16(512),
    "ssd_light": _light,
    "ssdlite320_mobilenet_v3_large": _ssdlite320,
}
# model.name -> head class, where it is not SSD's 3x3 convolutions (SSDHead).
HEADS: dict[str, type[torch.nn.Module]] = {"ssdlite320_mobilenet_v3_large": SSDLiteHead}


def build_backbone(cfg: Config) -> torch.nn.Module:
    """The backbone named by ``cfg.model.name`` (weights as ``cfg.model.backbone_weights``)."""
    if cfg.model.name not in BACKBONES:
        raise ConfigError(f"model.name {cfg.model.name!r} unknown; expected one of {list(BACKBONES)}")
    return BACKBONES[cfg.model.name](cfg)


def build_model(cfg: Config) -> SSD:
    """An :class:`SSD` from a config; checks that the backbone's maps match ``cfg.priors``."""
    backbone = build_backbone(cfg)
    sizes = feature_map_sizes(backbone, cfg.priors.image_size)
    if sizes != list(cfg.priors.feature_maps):
        raise ConfigError(
            f"priors.feature_maps is {cfg.priors.feature_maps} but {cfg.model.name} at "
            f"{cfg.priors.image_size} px produces maps of sizes {sizes}"
        )
    per_location = boxes_per_location(cfg.priors.aspect_ratios, cfg.priors.densify)
    head_class = HEADS.get(cfg.model.name, SSDHead)
    head = head_class(backbone.out_channels, per_location, cfg.model.num_classes + 1)
    postprocess = {
        "score_threshold": cfg.test.score_threshold,
        "nms_threshold": cfg.test.nms_threshold,
        "max_per_image": cfg.test.max_per_image,
        "top_k_candidates": cfg.test.top_k_candidates,
        "clip": cfg.test.clip_boxes,
    }
    priors = generate_priors(cfg.priors)
    model = SSD(backbone, head, priors, tuple(cfg.priors.variances), postprocess)
    model.image_size = cfg.input.image_size  # the input side export and demo --onnx need
    return model


def feature_map_sizes(backbone: torch.nn.Module, image_size: int) -> list[int]:
    """Spatial size of each map the backbone returns for an ``image_size``² input.

    Runs on the meta device: shapes only, no compute and no memory, whatever the backbone.
    """
    state = {
        name: torch.empty_like(t, device="meta")
        for name, t in [*backbone.named_parameters(), *backbone.named_buffers()]
    }
    x = torch.empty(2, 3, image_size, image_size, device="meta")
    with torch.no_grad():
        maps = torch.func.functional_call(backbone, state, (x,))
    return [int(m.shape[-1]) for m in maps]


def ssd300_from_torchvision(state_dict: Mapping[str, torch.Tensor]) -> SSD:
    """An ssdlib SSD300 (config ``ssd300_coco_torchvision`` with
    :func:`~ssdlib.model.convert.torchvision_default_boxes`, 91 logits, its post-processing
    settings and box-size clamp) holding the weights of a
    ``torchvision.models.detection.ssd300_vgg16`` state dict. In eval mode.

    ``model(x)`` equals torchvision's ``head(backbone(x))`` (cls_logits, bbox_regression) on the
    same normalised batch; ``model.predict(x)`` equals its ``postprocess_detections`` / 300.
    """
    num_logits = state_dict["head.classification_head.module_list.0.bias"].shape[0] // 4
    if num_logits != len(convert.COCO_V1_CATEGORIES):
        raise CheckpointError(f"torchvision SSD300 with {num_logits} logits; expected 91 (COCO)")
    cfg = load_config(TORCHVISION_CONFIG)
    model = build_model(cfg)
    model.load_state_dict(convert.state_dict_from_torchvision_ssd(state_dict), strict=True)
    model.priors.copy_(convert.torchvision_default_boxes(cfg.priors))
    model.postprocess["max_log_scale"] = convert.TORCHVISION_MAX_LOG_SCALE
    return model.eval()


def ssdlite320_from_torchvision(state_dict: Mapping[str, torch.Tensor]) -> SSD:
    """An ssdlib SSDLite320 (config ``ssdlite320_coco``: torchvision's default boxes, input
    scaling and post-processing settings, plus its box-size clamp) holding the weights of a
    ``torchvision.models.detection.ssdlite320_mobilenet_v3_large`` state dict. In eval mode.

    The number of classes and the tail width come from the weights (91 logits = COCO_V1's
    category ids with their names; other counts get names "1".."N"). ``model(x)`` equals
    torchvision's ``head(backbone(x))`` on the same -1..1 batch; ``model.predict(x)`` equals its
    ``postprocess_detections`` / 320.
    """
    num_logits = state_dict["head.classification_head.module_list.0.1.bias"].shape[0] // 6
    tail = state_dict["backbone.extra.0.0.0.weight"].shape[1]  # 480: reduced, 960: full
    overrides = [f"model.num_classes={num_logits - 1}", f"model.reduced_tail={tail == 480}"]
    if num_logits != len(convert.COCO_V1_CATEGORIES):
        overrides.append(f"data.class_names={[str(i) for i in range(1, num_logits)]!r}")
    model = build_model(load_config(SSDLITE_CONFIG, overrides))
    model.load_state_dict(convert.state_dict_from_torchvision_ssdlite(state_dict), strict=True)
    model.postprocess["max_log_scale"] = convert.TORCHVISION_MAX_LOG_SCALE
    return model.eval()


def ssd_from_reference_checkpoint(
    checkpoint: Mapping[str, object] | str | os.PathLike, class_names: list[str] | None = None
) -> SSD:
    """An ssdlib SSD300/SSD512 (VOC config: priors, input and test settings) holding the weights
    of a lufficc/SSD or amdegroot/ssd.pytorch VGG checkpoint (a dict or a file path).

    The size and number of classes come from the weights
    (:func:`~ssdlib.model.convert.reference_ssd_layout`). ``class_names`` (background excluded)
    default to VOC's when there are 20 classes.
    """
    if not isinstance(checkpoint, Mapping):
        checkpoint = load_checkpoint_file(checkpoint)
    fmt = convert.reference_checkpoint_format(checkpoint)
    to_ssdlib = convert.state_dict_from_lufficc if fmt == "lufficc" else convert.state_dict_from_amdegroot
    state = to_ssdlib(checkpoint)
    size, num_logits = convert.reference_ssd_layout(state, fmt)
    overrides = ["model.backbone_weights=none", f"model.num_classes={num_logits - 1}"]
    if class_names is not None or num_logits != 21:
        overrides.append(f"data.class_names={list(class_names or [])!r}")
    model = build_model(load_config(f"ssd{size}_voc", overrides))
    model.load_state_dict(state, strict=True)
    return model


def load_shipped(name: str) -> tuple[SSD, Config, dict]:
    """``(model, config, meta)`` of a detector shipped in the package
    (:mod:`ssdlib.model.shipped`): float32, eval mode, on the CPU."""
    cfg, state, meta = shipped.read_shipped(name)
    model = build_model(cfg)
    model.load_state_dict(state)
    return model.eval(), cfg, meta


# Detector names of pretrained.WEIGHTS -> (model from the downloaded state dict, class names).
DETECTORS: dict[str, tuple[Callable[[Mapping[str, torch.Tensor]], SSD], tuple[str, ...]]] = {
    "torchvision-coco": (ssd300_from_torchvision, convert.COCO_V1_CATEGORIES[1:]),
    "torchvision-ssdlite-coco": (ssdlite320_from_torchvision, convert.COCO_V1_CATEGORIES[1:]),
}


def pretrained_model(name: str, progress: bool = True) -> tuple[SSD, list[str]]:
    """A ready detector and its class names (background excluded: label l is ``names[l - 1]``).

    ``name``: a shipped model ("shapes", the ``make demo`` model, :mod:`ssdlib.model.shipped`),
    one of :data:`DETECTORS` ("torchvision-coco" downloads
    ``SSD300_VGG16_Weights.COCO_V1``, 25.1 COCO AP; "torchvision-ssdlite-coco"
    ``SSDLite320_MobileNet_V3_Large_Weights.COCO_V1``, 21.3 AP; labels are COCO category ids,
    unused ids named "N/A"), or the path of a torchvision SSD300 or SSDLite320, lufficc/SSD or
    amdegroot/ssd.pytorch checkpoint (read with ``weights_only=True``). In eval mode.
    """
    if name in shipped.SHIPPED:  # trained detectors inside the package (ssdlib/weights), offline
        model, cfg, _ = load_shipped(name)
        return model, list(cfg.data.class_names)
    if name in DETECTORS:
        from_state, names = DETECTORS[name]
        return from_state(pretrained.fetch_weights(name, progress)).eval(), list(names)
    if not os.path.isfile(name):
        raise ValueError(f"weights {name!r}: expected one of {sorted(shipped.SHIPPED)}, "
                         f"{list(DETECTORS)} or a checkpoint file")  # fmt: skip
    state = load_checkpoint_file(name)
    if "backbone.scale_weight" in state:
        return ssd300_from_torchvision(state), list(convert.COCO_V1_CATEGORIES[1:])
    if "head.classification_head.module_list.0.1.bias" in state:  # SSDLite's 1x1 after the dw 3x3
        model = ssdlite320_from_torchvision(state)
        return model, list(convert.COCO_V1_CATEGORIES[1:]) if model.num_classes == 90 else [
            str(i) for i in range(1, model.num_classes + 1)
        ]  # fmt: skip
    try:
        model = ssd_from_reference_checkpoint(state)
    except CheckpointError as e:
        raise CheckpointError(f"{name}: {e}") from e
    names = list(VOC_CLASS_NAMES) if model.num_classes == 20 else [
        str(i) for i in range(1, model.num_classes + 1)
    ]  # fmt: skip
    return model.eval(), names
