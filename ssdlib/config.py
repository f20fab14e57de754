"""Typed configuration: dataclasses filled from YAML, with overrides and clear errors.

Only builders (``build_model``, the training and evaluation entry points) read a ``Config``;
every other function in ssdlib takes explicit tensors and numbers, so its parts stay reusable.

>>> cfg = load_config("ssd300_voc", ["train.lr=0.002", "priors.clip=false"])
>>> cfg.train.lr, cfg.priors.clip
(0.002, False)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ssdlib.config_checks import (
    MAX_CONFIG_BYTES,
    YamlLimitError,
    range_problem,
    safe_yaml_load,
    short_repr,
    short_text,
)

VOC_CLASS_NAMES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
# Caffe's (and the reference SSDs') RGB pixel mean on 0..255 images: the VGG configs' input.
CAFFE_PIXEL_MEAN = (123.0, 117.0, 104.0)


class ConfigError(ValueError):
    """A configuration problem; the message names the key, the file and what was expected."""


@dataclass
class ModelConfig:
    name: str = "ssd300_vgg16"  # ssd300_vgg16 | ssd512_vgg16 | ssd_light | ssdlite320_mobilenet_v3_large
    num_classes: int = 20  # object classes, background excluded
    # none | imagenet (IMAGENET1K_V1, fc6/fc7 decimated into conv6/conv7) |
    # imagenet_features (IMAGENET1K_FEATURES: conv layers only, conv6/conv7 fresh)
    backbone_weights: str = "none"
    width: float = 1.0  # channel multiplier of the light backbone
    first_stride: int = 8  # light backbone: 4 adds a finer first map for small objects
    # ssdlite320_mobilenet_v3_large: last stage 480 wide, not 960 (torchvision's choice without
    # ImageNet weights, so its COCO weights need it; ImageNet weights need false)
    reduced_tail: bool = False


@dataclass
class PriorsConfig:
    image_size: int = 300
    feature_maps: list[int] = field(default_factory=lambda: [38, 19, 10, 5, 3, 1])
    strides: list[float] = field(default_factory=lambda: [8, 16, 32, 64, 100, 300])
    min_sizes: list[float] = field(default_factory=lambda: [30, 60, 111, 162, 213, 264])
    max_sizes: list[float] = field(default_factory=lambda: [60, 111, 162, 213, 264, 315])
    aspect_ratios: list[list[float]] = field(
        default_factory=lambda: [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
    )
    variances: list[float] = field(default_factory=lambda: [0.1, 0.2])
    clip: bool = True
    # Per map: tile the min-size square d x d per location (FaceBoxes' densification); [] = 1s.
    densify: list[int] = field(default_factory=list)


@dataclass
class InputConfig:
    image_size: int = 300
    # Caffe convention: images in 0..255, minus the mean, divided by std (1 = no scaling).
    pixel_mean: list[float] = field(default_factory=lambda: list(CAFFE_PIXEL_MEAN))
    pixel_std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])


@dataclass
class DataConfig:
    dataset: str = "voc"  # voc | coco | shapes | yolo (data.root = the YOLO folder)
    root: str = ""  # empty: $SSDLIB_DATA, else data/
    train_splits: list[str] = field(default_factory=lambda: ["2007/trainval", "2012/trainval"])
    test_split: str = "2007/test"
    class_names: list[str] = field(default_factory=lambda: list(VOC_CLASS_NAMES))
    keep_difficult: bool = False
    # Training augmentation: ssd (the paper's: photometric, zoom-out, IoU crop, flip) |
    # light (photometric + flip) | none. Zoom-out and crops stand in for data one does not have.
    augment: str = "ssd"
    num_workers: int = 4
    # Shapes only: how many images to generate per split and their size.
    num_train: int = 0
    num_test: int = 0
    source_size: int = 0
    # Shapes training only: samples per rendered image (1..8 of its flips and quarter turns,
    # ssdlib.data.shapes.dihedral_view); the sampler then keeps index order.
    views: int = 1
    # Shapes training only: JPEG-encode renderings as the written test files are (quality 95).
    jpeg: bool = False


@dataclass
class TrainConfig:
    batch_size: int = 32
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    max_iter: int = 120_000
    lr_schedule: str = "step"  # step (lr_steps, gamma) | cosine (to 0 at max_iter)
    lr_steps: list[int] = field(default_factory=lambda: [80_000, 100_000])
    gamma: float = 0.1
    warmup_iters: int = 500
    warmup_factor: float = 1.0 / 3.0
    iou_threshold: float = 0.5
    neg_pos_ratio: int = 3
    # Weigh each positive by (priors its object matched) ** -object_balance (loss.object_balance_weights):
    # small objects, which match few priors, count more. 0: the paper's loss; 1: objects count equally.
    object_balance: float = 0.0
    checkpoint_period: int = 5000
    keep_checkpoints: int = 3
    log_period: int = 10
    eval_period: int = 0  # 0: evaluate only at the end
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # auto: CUDA bf16 if supported else fp16; CPU bf16 with AMX/AVX512-BF16 else off | off | bf16 | fp16
    amp: str = "auto"
    # auto: chosen for this CPU kind / GPU (engine.cpu_features.channels_last_for_training) | on | off
    channels_last: str = "auto"
    compile: bool = False
    max_nonfinite: int = 5  # stop after this many non-finite losses in a row
    # Fine-tuning: start from torchvision-coco | shapes | a checkpoint FILE ("" = fresh weights);
    # tensors whose name and shape fit are loaded, the rest (the class head) re-initialised.
    init_weights: str = ""


@dataclass
class EvalConfig:
    score_threshold: float = 0.01
    nms_threshold: float = 0.45
    max_per_image: int = 100
    top_k_candidates: int | None = None
    clip_boxes: bool = False
    batch_size: int = 16
    metric: str = "voc"  # voc | coco
    use_07_metric: bool = True


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    priors: PriorsConfig = field(default_factory=PriorsConfig)
    input: InputConfig = field(default_factory=InputConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def builtin_names() -> list[str]:
    """Names of the YAML configs shipped inside the package (``ssdlib/configs``)."""
    files = resources.files("ssdlib") / "configs"
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".yaml"))


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load a built-in config by name (``"ssd300_voc"``) or a YAML file by path.

    ``overrides`` are ``"section.key=value"`` strings; values are parsed as YAML
    (``"priors.clip=false"``, ``"train.lr_steps=[10,20]"``).
    """
    text, source = _read_source(str(name_or_path))
    try:
        data = safe_yaml_load(text) or {}
    except YamlLimitError as e:
        raise ConfigError(f"{source}: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {short_text(e)}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    for item in overrides or []:
        _apply_override(data, item, source)
    return config_from_dict(data, source)


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> Config:
    """Build and validate a ``Config`` from nested dicts (missing keys take defaults)."""
    cfg = _build(Config, data, source, prefix="")
    validate_config(cfg, source)
    return cfg


def apply_overrides(cfg: Config, overrides: list[str], source: str = "<overrides>") -> Config:
    """A copy of ``cfg`` with ``section.key=value`` overrides applied (validated again)."""
    data = cfg.to_dict()
    for item in overrides:
        _apply_override(data, item, source)
    return config_from_dict(data, source)


def dump_config(cfg: Config, path: str | Path | None = None) -> str:
    """YAML text of ``cfg`` (written to ``path`` too when given); ``load_config`` reads it back."""
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None)
    if path is not None:
        Path(path).write_text(text)
    return text


def validate_config(cfg: Config, source: str = "<config>") -> None:
    """Value ranges (:func:`ssdlib.config_checks.range_problem`) and cross-field checks."""
    problem = range_problem(cfg.to_dict())
    if problem:
        raise ConfigError(f"{source}: {problem}")
    p = cfg.priors
    n = len(p.feature_maps)
    for key in ("strides", "min_sizes", "max_sizes", "aspect_ratios"):
        if len(getattr(p, key)) != n:
            raise ConfigError(
                f"{source}: priors.{key} has {len(getattr(p, key))} entries but "
                f"priors.feature_maps has {n}; expected one per feature map"
            )
    if p.densify and (len(p.densify) != n or min(p.densify) < 1):
        raise ConfigError(
            f"{source}: priors.densify is {p.densify}; expected [] or one integer >= 1 per "
            f"feature map ({n})"
        )
    if len(p.variances) != 2:
        raise ConfigError(f"{source}: priors.variances must be [center, size], got {p.variances}")
    if cfg.input.image_size != p.image_size:
        raise ConfigError(
            f"{source}: input.image_size ({cfg.input.image_size}) differs from "
            f"priors.image_size ({p.image_size}); they must be equal"
        )
    for key in ("pixel_mean", "pixel_std"):
        if len(getattr(cfg.input, key)) != 3:
            raise ConfigError(f"{source}: input.{key} must have 3 values (RGB)")
    if cfg.data.class_names and len(cfg.data.class_names) != cfg.model.num_classes:
        raise ConfigError(
            f"{source}: model.num_classes is {cfg.model.num_classes} but data.class_names has "
            f"{len(cfg.data.class_names)} names; they must agree (background is not listed)"
        )
    from ssdlib.model.build import BACKBONES  # the names build_model knows (lazily: torch)
    from ssdlib.model.pretrained import BACKBONE_WEIGHTS

    choices = {
        "model.name": (cfg.model.name, tuple(BACKBONES)),
        "model.backbone_weights": (cfg.model.backbone_weights, ("none", *BACKBONE_WEIGHTS)),
        "model.first_stride": (cfg.model.first_stride, (4, 8)),
        "data.dataset": (cfg.data.dataset, ("voc", "coco", "shapes", "yolo")),
        "data.augment": (cfg.data.augment, ("ssd", "light", "none")),
        "data.views": (cfg.data.views, tuple(range(1, 9))),
        "train.amp": (cfg.train.amp, ("auto", "off", "bf16", "fp16")),
        "train.lr_schedule": (cfg.train.lr_schedule, ("step", "cosine")),
        "train.channels_last": (cfg.train.channels_last, ("auto", "on", "off", "true", "false")),
        "test.metric": (cfg.test.metric, ("voc", "coco")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{source}: {key} is {short_repr(value)}; expected one of "
                              f"{list(allowed)}")  # fmt: skip


# --- internals ---------------------------------------------------------------------------


def _read_source(name_or_path: str) -> tuple[str, str]:
    if name_or_path in builtin_names():
        res = resources.files("ssdlib") / "configs" / f"{name_or_path}.yaml"
        return res.read_text(), f"ssdlib/configs/{name_or_path}.yaml"
    path = Path(name_or_path)
    if path.is_file():
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: config file is {size} bytes; the limit is "
                              f"{MAX_CONFIG_BYTES} (is it a config?)")  # fmt: skip
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from e
    raise ConfigError(
        f"config {short_repr(name_or_path)}: no such file and not a built-in name; "
        f"built-in configs: {', '.join(builtin_names())}"
    )


def _apply_override(data: dict[str, Any], item: str, source: str) -> None:
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) != 2 or not all(parts):
        raise ConfigError(f"override {short_repr(item)}: expected 'section.key=value'")
    try:
        value = safe_yaml_load(raw)
    except YamlLimitError as e:
        raise ConfigError(f"override {short_repr(key)}: value {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"override {short_repr(item)}: value is not valid YAML: "
                          f"{short_text(e)}") from e  # fmt: skip
    section = data.setdefault(parts[0], {})
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: section {parts[0]!r} must be a mapping")
    section[parts[1]] = value


def _build(cls: type, data: Any, source: str, prefix: str) -> Any:
    where = prefix.rstrip(".") or "top level"
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {where} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in valid]
    if unknown:
        raise ConfigError(
            f"{source}: unknown key '{prefix}{short_text(unknown[0])}'; valid keys in {where}: "
            f"{', '.join(valid)}"
        )
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, source, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, f"{prefix}{name}", source)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        return _coerce(value, inner[0], key, source)
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise _type_error(key, source, hint, value)
        return [_coerce(v, item_hint, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            # YAML 1.1 reads off/no/false as False and on/yes/true as True; for a text option
            # (train.amp=off) the user meant the word. A wrong word then fails the choices check.
            return "on" if value else "off"
    raise _type_error(key, source, hint, value)


def _type_error(key: str, source: str, hint: Any, value: Any) -> ConfigError:
    name = hint.__name__ if isinstance(hint, type) else str(hint)
    return ConfigError(
        f"{source}: {key} must be {name}, got {short_repr(value)} ({type(value).__name__})"
    )
