"""Reading weight files safely, downloading them into the torch hub cache, and importing the
checkpoints of the two reference PyTorch SSD implementations.

* :func:`load_checkpoint_file` is the only way ssdlib reads a ``.pth`` file: ``torch.load`` with
  ``weights_only=True``, so a file that carries pickled code (``os.system`` in a ``__reduce__``)
  is refused before anything runs, with an error naming the file.
* :func:`cached_download` fetches a URL once into ``$TORCH_HOME/hub/checkpoints`` (the same cache
  ``torchvision`` uses, so files downloaded by either are shared) and, with no network, says
  where to put the file by hand.
* :func:`ssd_from_reference_checkpoint` maps lufficc/SSD (``vgg_ssd300_voc0712.pth``) and
  amdegroot/ssd.pytorch (``ssd300_mAP_77.43_v2.pth``) state dicts onto an ssdlib SSD by key.

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

import hashlib
import os
import pickle
import re
import urllib.error
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "cached_download",
    "hub_checkpoint_path",
    "load_checkpoint_file",
    "reference_checkpoint_format",
    "ssd_from_reference_checkpoint",
    "state_dict_from_amdegroot",
    "state_dict_from_lufficc",
]


class CheckpointError(ValueError):
    """A weight file that cannot be used: unreadable, or of an unexpected layout."""


class UnsafeCheckpointError(CheckpointError):
    """A weight file that holds pickled objects other than tensors and plain containers."""


def load_checkpoint_file(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """``torch.load(path, weights_only=True)`` with errors that name the file.

    Raises:
        UnsafeCheckpointError: the file would run code or build arbitrary objects when unpickled.
        CheckpointError: not a PyTorch checkpoint, or its top level is not a dict.
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only's restricted unpickler raises this for any global it does not allow
        # (os.system, a custom class ...): nothing from the file has been executed.
        raise UnsafeCheckpointError(
            f"{path}: refused to load: it contains pickled objects other than tensors and "
            f"plain containers (a callable or custom class), which could run code. Only load "
            f"files you trust, and convert them to a plain state dict. Details: "
            f"{str(e).splitlines()[0]}"
        ) from e
    except (RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint: {e}") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict (state dict), got {type(obj).__name__}")
    return obj


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


# --- reference implementations -------------------------------------------------------------


def _vgg_key(index: int) -> str:
    """ssdlib module path of entry ``index`` of the references' VGG list (0..34)."""
    if index < 23:
        return f"backbone.features.{index}"
    if index < 30:
        return f"backbone.extra.0.{index - 23}"
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


def ssd_from_reference_checkpoint(
    checkpoint: Mapping[str, object] | str | os.PathLike, class_names: list[str] | None = None
):
    """An ssdlib SSD300/SSD512 (VOC config: priors, input and test settings) holding the weights
    of a lufficc/SSD or amdegroot/ssd.pytorch VGG checkpoint (a dict or a file path).

    The size comes from the number of extra convolutions (8: SSD300, 10: SSD512), the number of
    classes from the first classification head (4 boxes per location). ``class_names`` (background
    excluded) default to VOC's when there are 20 classes.
    """
    from ssdlib.config import load_config
    from ssdlib.model import build_model

    if not isinstance(checkpoint, Mapping):
        checkpoint = load_checkpoint_file(checkpoint)
    fmt = reference_checkpoint_format(checkpoint)
    convert = state_dict_from_lufficc if fmt == "lufficc" else state_dict_from_amdegroot
    state = convert(checkpoint)
    extras = {k.split(".")[2] for k in state if k.startswith("backbone.extra.") and
              not k.startswith("backbone.extra.0.")}  # fmt: skip
    sizes = {4: 300, 5: 512}
    if len(extras) not in sizes:
        raise CheckpointError(f"{fmt} checkpoint: {len(extras) * 2} extra convolutions; "
                              "expected 8 (SSD300) or 10 (SSD512)")  # fmt: skip
    num_logits = state["head.cls_heads.0.weight"].shape[0] // 4
    overrides = ["model.backbone_weights=none", f"model.num_classes={num_logits - 1}"]
    if class_names is not None or num_logits != 21:
        overrides.append(f"data.class_names={list(class_names or [])!r}")
    model = build_model(load_config(f"ssd{sizes[len(extras)]}_voc", overrides))
    model.load_state_dict(state, strict=True)
    return model
