"""Range checks of config values and bounded YAML parsing (used by :mod:`ssdlib.config`).

Types alone let nonsense through (``train.batch_size=0``, ``train.iou_threshold=.nan``,
``priors.variances=[0, 0]``): :func:`range_problem` names the first value out of its range.
:func:`safe_yaml_load` reads YAML within limits (file size, nesting depth, nodes after alias
expansion) so a few hundred hostile bytes cannot take gigabytes, and reads ``1e-3`` as the
float users mean (YAML 1.1 wants ``1.0e-3``). :func:`short_repr` keeps every message short.
"""

from __future__ import annotations

import math
import re
import reprlib
from typing import Any

import yaml

__all__ = ["MAX_BATCH", "MAX_CONFIG_BYTES", "MAX_DEPTH", "MAX_NODES", "YamlLimitError",
           "range_problem", "safe_yaml_load", "short_repr", "short_text"]  # fmt: skip

MAX_CONFIG_BYTES = 1 << 20  # shipped configs are ~2 KB; 1 MiB leaves room for long class lists
MAX_DEPTH = 64  # a config is 3 levels deep (section, key, list of lists)
MAX_NODES = 200_000  # scalars + collections after alias expansion
MAX_BATCH = 65_536  # per device; larger only allocates index tensors before failing
MAX_MESSAGE = 200  # characters of a value shown in an error message

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
# YAML 1.1's float pattern plus the forms without a dot or exponent sign ("1e-3", "2E5").
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxlist, _repr.maxtuple, _repr.maxdict = 2, 6, 6, 6
_repr.maxstring, _repr.maxother = 60, 60


def short_repr(value: Any) -> str:
    """``repr(value)`` bounded in time and length (never expands a huge nested value)."""
    text = _repr.repr(value)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def short_text(text: object) -> str:
    """``str(text)`` cut to a bounded length (for names and messages, without quotes)."""
    text = str(text)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


class YamlLimitError(ValueError):
    """The YAML text exceeds a size, depth or node limit."""


class _Loader(yaml.SafeLoader):
    """SafeLoader with a depth limit while composing and a node budget after it."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlLimitError(f"nested deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self):  # noqa: ANN201
        node = super().get_single_node()
        if node is not None:
            _count_nodes(node, {})
        return node


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
# The float resolver above must win over SafeLoader's int/str for "1e-3": put it first.
for _first, _resolvers in _Loader.yaml_implicit_resolvers.items():
    _resolvers.sort(key=lambda r: r[0] != "tag:yaml.org,2002:float")


def _count_nodes(node: yaml.Node, seen: dict[int, int]) -> int:
    """Nodes of ``node`` with aliases expanded, memoised per node (linear in the text)."""
    key = id(node)
    if key in seen:
        return seen[key]
    seen[key] = MAX_NODES + 1  # a node reached again while counting it: a cycle, refuse
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_count_nodes(n, seen) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_count_nodes(k, seen) + _count_nodes(v, seen) for k, v in node.value)
    if total > MAX_NODES:
        raise YamlLimitError(f"expands to more than {MAX_NODES} values (nested aliases?)")
    seen[key] = total
    return total


def safe_yaml_load(text: str) -> Any:
    """``yaml.safe_load`` within :data:`MAX_CONFIG_BYTES`, :data:`MAX_DEPTH` and
    :data:`MAX_NODES`; raises :class:`YamlLimitError` or ``yaml.YAMLError``."""
    if len(text) > MAX_CONFIG_BYTES:
        raise YamlLimitError(f"is {len(text)} characters; the limit is {MAX_CONFIG_BYTES}")
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


# --- ranges ------------------------------------------------------------------------------


def _positive(v: float) -> bool:
    return v > 0


def _non_negative(v: float) -> bool:
    return v >= 0


def _unit(v: float) -> bool:  # (0, 1]
    return 0 < v <= 1


def _closed_unit(v: float) -> bool:  # [0, 1]
    return 0 <= v <= 1


_RULES = {  # key -> (test, what is expected)
    "model.num_classes": (_positive, "> 0"),
    "model.width": (_positive, "> 0"),
    "priors.image_size": (_positive, "> 0"),
    "priors.feature_maps": (_positive, "> 0"),
    "priors.strides": (_positive, "> 0"),
    "priors.min_sizes": (_positive, "> 0"),
    "priors.max_sizes": (_positive, "> 0"),
    "priors.aspect_ratios": (_positive, "> 0"),
    "priors.variances": (_positive, "> 0"),
    "input.image_size": (_positive, "> 0"),
    "input.pixel_std": (_positive, "> 0"),
    "data.num_workers": (_non_negative, ">= 0"),
    "data.num_train": (_non_negative, ">= 0"),
    "data.num_test": (_non_negative, ">= 0"),
    "data.source_size": (_non_negative, ">= 0"),
    "train.batch_size": (lambda v: 0 < v <= MAX_BATCH, f"in 1..{MAX_BATCH}"),
    "train.lr": (_positive, "> 0"),
    "train.momentum": (_non_negative, ">= 0"),
    "train.weight_decay": (_non_negative, ">= 0"),
    "train.max_iter": (_positive, "> 0"),
    "train.lr_steps": (_non_negative, ">= 0"),
    "train.gamma": (_positive, "> 0"),
    "train.warmup_iters": (_non_negative, ">= 0"),
    "train.warmup_factor": (_unit, "in (0, 1]"),
    "train.iou_threshold": (_unit, "in (0, 1]"),
    "train.neg_pos_ratio": (_positive, "> 0"),
    "train.object_balance": (_closed_unit, "in [0, 1] (0: the paper's loss)"),
    "train.checkpoint_period": (_positive, "> 0"),
    "train.log_period": (_positive, "> 0"),
    "train.eval_period": (_non_negative, ">= 0 (0: only at the end)"),
    "train.max_nonfinite": (_positive, "> 0"),
    "test.score_threshold": (_closed_unit, "in [0, 1]"),
    "test.nms_threshold": (_unit, "in (0, 1]"),
    "test.max_per_image": (_positive, "> 0"),
    "test.top_k_candidates": (_positive, "> 0 (or null: all)"),
    "test.batch_size": (_positive, "> 0"),
}


def _numbers(value: Any) -> list[float]:
    """The numbers of a value that may be a list (of lists); None counts as no number."""
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, list | tuple):
        return [x for v in value for x in _numbers(v)]
    return [value]


def range_problem(values: dict[str, dict[str, Any]]) -> str | None:
    """The first out-of-range value of a config's nested dict, as ``"key is v; expected ..."``
    (None when all are fine). Every float anywhere must be finite: no setting means inf/NaN."""
    for section, keys in values.items():
        for name, value in keys.items():
            key = f"{section}.{name}"
            for v in _numbers(value):
                if isinstance(v, float) and not math.isfinite(v):
                    return f"{key} is {short_repr(value)}; expected a finite number"
            rule = _RULES.get(key)
            if rule and not all(rule[0](v) for v in _numbers(value)):
                return f"{key} is {short_repr(value)}; expected {rule[1]}"
    steps = values["train"]["lr_steps"]
    if list(steps) != sorted(steps):
        return f"train.lr_steps is {short_repr(steps)}; expected increasing iterations"
    device = values["train"]["device"]
    if not _DEVICE.match(device):
        return (f"train.device is {short_repr(device)}; expected auto, cpu, cuda, cuda:N "
                "or mps")  # fmt: skip
    return None
