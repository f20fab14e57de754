"""SSD networks: backbones, heads, the SSD assembly, builders by name and pretrained weights."""

from __future__ import annotations

from ssdlib.io import CheckpointError, UnsafeCheckpointError, load_checkpoint_file
from ssdlib.model.build import (
    BACKBONES,
    DETECTORS,
    build_backbone,
    build_model,
    feature_map_sizes,
    load_shipped,
    pretrained_model,
    ssd300_from_torchvision,
    ssd_from_reference_checkpoint,
    ssdlite320_from_torchvision,
)
from ssdlib.model.convert import (
    COCO_V1_CATEGORIES,
    fold_input_normalization,
    reference_checkpoint_format,
    state_dict_from_amdegroot,
    state_dict_from_lufficc,
    state_dict_from_torchvision_ssd,
    state_dict_from_torchvision_ssdlite,
    torchvision_default_boxes,
    vgg16_reduced_from_torchvision,
)
from ssdlib.model.heads import SSDHead
from ssdlib.model.light import LightBackbone
from ssdlib.model.pretrained import (
    WEIGHTS,
    cached_download,
    hub_checkpoint_path,
    load_pretrained_backbone,
    weight_url,
)
from ssdlib.model.ssd import SSD
from ssdlib.model.ssdlite import MobileNetV3Backbone, SSDLiteHead
from ssdlib.model.vgg import L2Norm, VGG16Backbone

__all__ = [
    "BACKBONES", "COCO_V1_CATEGORIES", "DETECTORS", "SSD", "WEIGHTS", "CheckpointError", "L2Norm",
    "LightBackbone", "MobileNetV3Backbone", "SSDHead", "SSDLiteHead", "UnsafeCheckpointError",
    "VGG16Backbone", "build_backbone",
    "build_model", "cached_download", "feature_map_sizes", "fold_input_normalization",
    "hub_checkpoint_path", "load_checkpoint_file", "load_pretrained_backbone", "load_shipped",
    "pretrained_model",
    "reference_checkpoint_format", "ssd300_from_torchvision", "ssd_from_reference_checkpoint",
    "ssdlite320_from_torchvision", "state_dict_from_torchvision_ssdlite",
    "state_dict_from_amdegroot", "state_dict_from_lufficc", "state_dict_from_torchvision_ssd",
    "torchvision_default_boxes", "vgg16_reduced_from_torchvision", "weight_url",
]  # fmt: skip
