"""Pretrained weights: where each name's file comes from, downloads into the torch hub cache,
and loading ImageNet VGG16 into the backbone.

:data:`WEIGHTS` is the table of names: ``model.backbone_weights`` (``imagenet``,
``imagenet_features``) and the detectors of ``ssdlib demo --weights`` (``torchvision-coco``,
built by :func:`ssdlib.model.pretrained_model`). Each names a torchvision weights entry, whose
URL and SHA-256 prefix torchvision itself holds. Nothing is downloaded at import time; downloads
go to ``$TORCH_HOME/hub/checkpoints`` (shared with torchvision) through :func:`cached_download`,
which checks the SHA-256 prefix in the file name and, offline, says where to put the file. Key
conversions are in :mod:`ssdlib.model.convert`; files are read by
:func:`ssdlib.io.load_checkpoint_file` (``weights_only=True``).

* ``imagenet`` — ``VGG16_Weights.IMAGENET1K_V1``: conv1_1..conv5_3, and fc6/fc7 decimated into
  conv6/conv7 (:func:`~ssdlib.model.convert.vgg16_reduced_from_torchvision`); conv1_1 folded to
  the config's input normalisation (:func:`~ssdlib.model.convert.fold_input_normalization`).
* ``imagenet_features`` — ``VGG16_Weights.IMAGENET1K_FEATURES`` (amdegroot's Caffe VGG, trained on
  the Caffe convention already): conv layers only, conv6/conv7 stay freshly initialised, as in
  torchvision's ``ssd300_vgg16`` (its classifier is stored as NaNs and is ignored).
* ``torchvision-coco`` — ``SSD300_VGG16_Weights.COCO_V1``, 25.1 COCO AP.
* ``torchvision-ssdlite-coco`` — ``SSDLite320_MobileNet_V3_Large_Weights.COCO_V1``, 21.3 COCO AP.
* ``mobilenet_v3_large-imagenet`` — ``MobileNet_V3_Large_Weights.IMAGENET1K_V1``, what
  ``model.backbone_weights: imagenet`` loads into SSDLite's MobileNetV3 backbone
  (:func:`load_pretrained_mobilenet`).
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from ssdlib.config import CAFFE_PIXEL_MEAN
from ssdlib.io import CheckpointError, load_checkpoint_file
from ssdlib.model.convert import (
    fold_input_normalization,
    mobilenet_v3_large_from_torchvision,
    vgg16_reduced_from_torchvision,
)

__all__ = [
    "BACKBONE_WEIGHTS",
    "WEIGHTS",
    "cached_download",
    "fetch_weights",
    "hub_checkpoint_path",
    "load_pretrained_backbone",
    "load_pretrained_mobilenet",
    "sha256_of",
    "weight_url",
]

# name -> torchvision weights entry (``torchvision.models.get_weight`` reads its URL).
WEIGHTS: dict[str, str] = {
    "imagenet": "VGG16_Weights.IMAGENET1K_V1",
    "imagenet_features": "VGG16_Weights.IMAGENET1K_FEATURES",
    "torchvision-coco": "SSD300_VGG16_Weights.COCO_V1",
    "torchvision-ssdlite-coco": "SSDLite320_MobileNet_V3_Large_Weights.COCO_V1",
    "mobilenet_v3_large-imagenet": "MobileNet_V3_Large_Weights.IMAGENET1K_V1",
}
# The names ``model.backbone_weights`` accepts besides "none" (VGG16 backbones only).
BACKBONE_WEIGHTS = ("imagenet", "imagenet_features")

# Input conventions in 0..255 pixel units: x = (pixel - mean) / std.
IMAGENET_MEAN_255 = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD_255 = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def weight_url(name: str) -> str:
    """Download URL of the weights called ``name`` in :data:`WEIGHTS`."""
    from torchvision.models import get_weight

    if name not in WEIGHTS:
        raise ValueError(f"unknown weights {name!r}; expected one of {sorted(WEIGHTS)}")
    return get_weight(WEIGHTS[name]).url


def hub_checkpoint_path(url: str) -> Path:
    """Where :func:`cached_download` (and ``torch.hub``) keep the file of ``url``."""
    name = os.path.basename(urlparse(url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def cached_download(url: str, check_hash: bool = True, progress: bool = True) -> Path:
    """The local path of ``url``'s file, downloading it into the torch hub cache if missing.

    With ``check_hash``, the file name must embed the first hex digits of its SHA-256 after a
    dash (``vgg16-397923af.pth``), as torchvision's files do; a mismatch deletes the download.

    Raises:
        ConnectionError: the file is not cached and cannot be downloaded; the message says where
            to put it by hand.
    """
    path = hub_checkpoint_path(url)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = None
    if check_hash:
        match = re.search(r"-([a-f0-9]+)\.", path.name)
        if match is None:
            raise ValueError(f"check_hash: {path.name!r} embeds no '-<sha256 prefix>.' to check")
        prefix = match.group(1)
    try:
        # Writes to a temporary file and renames on success: no half file is left behind.
        torch.hub.download_url_to_file(url, str(path), hash_prefix=prefix, progress=progress)
    except (urllib.error.URLError, OSError) as e:
        host = urlparse(url).netloc
        raise ConnectionError(
            f"cannot download {path.name} from {host}: offline? put the file at {path} "
            f"(download it from {url}); cause: {e}"
        ) from e
    return path


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (for naming files that :func:`cached_download` checks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_weights(name: str, progress: bool = True) -> dict:
    """The state dict of the weights called ``name``, downloaded (hash-checked) if not cached."""
    return load_checkpoint_file(cached_download(weight_url(name), check_hash=True, progress=progress))


def load_pretrained_backbone(
    backbone: nn.Module,
    kind: str,
    pixel_mean: Sequence[float] = CAFFE_PIXEL_MEAN,
    pixel_std: Sequence[float] = (1.0, 1.0, 1.0),
    progress: bool = True,
) -> None:
    """Load torchvision's ImageNet VGG16 weights ("imagenet" or "imagenet_features") into a
    :class:`~ssdlib.model.VGG16Backbone`, downloading them into the torch hub cache if needed.

    ``pixel_mean``/``pixel_std`` (0..255 units) describe the input the backbone will be fed; the
    "imagenet" weights' conv1_1 is folded to it (see :func:`fold_input_normalization`).
    """
    if kind not in BACKBONE_WEIGHTS:
        raise ValueError(f"backbone weights {kind!r}: expected one of {list(BACKBONE_WEIGHTS)}")
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


def load_pretrained_mobilenet(backbone: nn.Module, progress: bool = True) -> None:
    """Load torchvision's ImageNet MobileNetV3-Large (``IMAGENET1K_V1``) into the ``features`` of
    a :class:`~ssdlib.model.ssdlite.MobileNetV3Backbone` (full tail), downloading it into the
    torch hub cache if needed. The extra blocks keep their initialisation.

    The input is not folded as for VGG: torchvision's SSDLite feeds these weights -1..1 images
    (mean 0.5, std 0.5), not ImageNet-standardised ones, and ssdlib does the same.
    """
    path = cached_download(weight_url("mobilenet_v3_large-imagenet"), check_hash=True, progress=progress)
    state = mobilenet_v3_large_from_torchvision(load_checkpoint_file(path))
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    fresh = [k for k in missing if not k.startswith("extra.")]
    if unexpected or fresh:
        raise CheckpointError(f"{path}: does not fit the backbone (model.reduced_tail must be false "
                              f"for ImageNet weights); unexpected {unexpected}, missing {fresh}")  # fmt: skip
