"""SSD networks: backbones, heads, the SSD assembly and builders by name."""

from __future__ import annotations

import torch

from ssdlib.config import Config, ConfigError
from ssdlib.model.heads import SSDHead
from ssdlib.model.light import LightBackbone
from ssdlib.model.ssd import SSD
from ssdlib.model.vgg import L2Norm, VGG16Backbone
from ssdlib.priors import boxes_per_location, generate_priors

__all__ = ["SSD", "L2Norm", "LightBackbone", "SSDHead", "VGG16Backbone", "build_model"]


def build_backbone(cfg: Config) -> torch.nn.Module:
    """The backbone named by ``cfg.model.name`` (weights as ``cfg.model.backbone_weights``)."""
    name = cfg.model.name
    if name in ("ssd300_vgg16", "ssd512_vgg16"):
        size = 300 if name == "ssd300_vgg16" else 512
        if cfg.priors.image_size != size:
            raise ConfigError(f"model.name {name} needs priors.image_size {size}, "
                              f"got {cfg.priors.image_size}")  # fmt: skip
        backbone = VGG16Backbone(size)
        if cfg.model.backbone_weights != "none":
            from ssdlib.model.weights import load_pretrained_backbone

            load_pretrained_backbone(
                backbone, cfg.model.backbone_weights, cfg.input.pixel_mean, cfg.input.pixel_std
            )
        return backbone
    if name == "ssd_light":
        if cfg.model.backbone_weights != "none":
            raise ConfigError("model.backbone_weights: the light backbone has no pretrained "
                              f"weights; use 'none', got {cfg.model.backbone_weights!r}")  # fmt: skip
        return LightBackbone(cfg.model.width, cfg.model.first_stride)
    raise ConfigError(f"model.name {name!r} unknown; expected ssd300_vgg16, ssd512_vgg16, ssd_light")


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
    head = SSDHead(backbone.out_channels, per_location, cfg.model.num_classes + 1)
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
