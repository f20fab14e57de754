"""``python -m ssdlib train --config NAME|PATH [key=value ...] [--output DIR] [--resume [CKPT]]``

Resuming: by default a run continues from the newest complete checkpoint found in ``--output``
(so re-running the same command after a crash picks up where it stopped); ``--resume`` makes
that mandatory, ``--resume CKPT`` starts from a given file, ``--no-resume`` starts afresh.
Multi-GPU: ``torchrun --nproc_per_node=N -m ssdlib train ...`` (``train.batch_size`` is per GPU).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssdlib.engine.errors import USER_ERRORS, report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="shapes", help="built-in name or YAML path (default shapes)")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.lr=0.01")
    parser.add_argument("--output", type=Path, default=None,
                        help="output folder (default outputs/<config name>)")  # fmt: skip
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", nargs="?", const=True, default="auto", metavar="CKPT",
                       help="require resuming (from CKPT, or the newest checkpoint in --output)")
    group.add_argument("--no-resume", dest="resume", action="store_const", const=False,
                       help="start afresh even if --output holds checkpoints")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def default_output(config: str) -> Path:
    return Path("outputs") / Path(config).stem


def run(args: argparse.Namespace) -> int:
    import torch

    from ssdlib.config import load_config
    from ssdlib.engine.cpu_features import announce_training_precision
    from ssdlib.engine.device import resolve_device
    from ssdlib.engine.host_memory import keep_freed_memory
    from ssdlib.engine.trainer import train

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        cfg = load_config(args.config, args.overrides)
        if resolve_device(cfg.train.device).type == "cpu":
            keep_freed_memory()  # no page faults per step (host_memory)
        announce_training_precision(cfg.train.amp, cfg.train.device)
        out = args.output or default_output(args.config)
        eval_fn = _periodic_eval(cfg) if cfg.train.eval_period > 0 else None
        result = train(cfg, out, resume=args.resume, progress=not args.no_progress, eval_fn=eval_fn)
    except USER_ERRORS as e:
        return report(e)
    print(f"trained to iteration {result.iteration}; checkpoint {result.checkpoint}", file=sys.stderr)
    return 0


def _periodic_eval(cfg):
    """VOC mAP on the test split, for ``train.eval_period``."""
    from ssdlib.engine.datasets import build_test_data
    from ssdlib.engine.evaluator import evaluate

    data = build_test_data(cfg, progress=False)

    def eval_fn(model) -> dict[str, float]:
        device = next(model.parameters()).device
        result = evaluate(model, data.dataset, cfg.test.batch_size, device, ("voc",),
                          use_07_metric=cfg.test.use_07_metric, progress=False)  # fmt: skip
        return {"mAP": float(result.voc["map"])}

    return eval_fn
