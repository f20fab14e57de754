"""``ssdlib info``: build a model from a config and print its priors and parameters."""

from __future__ import annotations

import argparse

from ssdlib.config import load_config
from ssdlib.priors import boxes_per_location, priors_per_map


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="ssd300_voc", help="built-in name or YAML path")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides")


def model_summary(cfg) -> str:
    """A text table: priors per feature map and parameters per part of the model."""
    from ssdlib.model import build_model

    model = build_model(cfg)
    p = cfg.priors
    lines = [f"{cfg.model.name}: {p.image_size}x{p.image_size} input, "
             f"{cfg.model.num_classes} classes + background"]  # fmt: skip
    lines.append(f"{'map':>5} {'size':>9} {'stride':>7} {'min':>7} {'max':>7} {'boxes/loc':>9} "
                 f"{'priors':>7}")  # fmt: skip
    per_map = priors_per_map(p)
    # boxes_per_location counts densified squares too (2 + 2 * ratios would miss them)
    per_loc = boxes_per_location(p.aspect_ratios, p.densify)
    for k, (f, s, lo, hi, b, n) in enumerate(
        zip(p.feature_maps, p.strides, p.min_sizes, p.max_sizes, per_loc, per_map)
    ):
        lines.append(f"{k:>5} {f:>4}x{f:<4} {s:>7g} {lo:>7g} {hi:>7g} {b:>9} {n:>7}")
    lines.append(f"total priors: {sum(per_map)} (model buffer: {model.priors.shape[0]})")
    for name in ("backbone", "head"):
        count = sum(t.numel() for t in getattr(model, name).parameters())
        lines.append(f"{name} parameters: {count:,}")
    lines.append(f"total parameters: {sum(t.numel() for t in model.parameters()):,}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    overrides = ["model.backbone_weights=none", *args.overrides]
    print(model_summary(load_config(args.config, overrides)))
    return 0
