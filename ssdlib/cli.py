"""``python -m ssdlib`` / ``ssdlib``: a table of sub-commands, each living beside its code.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int``, so a command's
options are documented where they are used and the dispatcher stays a table.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("ssdlib.model.summary", "build a model from a config and print priors/parameters"),
    "data": ("ssdlib.data.cli", "generate Shapes, download VOC/COCO, validate a dataset folder"),
    "anchors": ("ssdlib.anchors.cli", "how well the priors cover your objects; fit better ones"),
    "bench": ("ssdlib.bench", "time ssdlib against torchvision and reference loops (--quick, --json)"),
    "train": ("ssdlib.engine.cli_train", "train a detector (resumes from --output's checkpoints)"),
    "eval": ("ssdlib.engine.cli_eval", "evaluate a checkpoint: VOC/COCO metrics table + JSON"),
    "demo": ("ssdlib.engine.cli_demo", "draw detections of a checkpoint or pretrained model"),
    "demo-shapes": ("ssdlib.engine.demo_shapes", "make demo: Shapes data, train, evaluate, pictures"),
    "export": ("ssdlib.engine.cli_export", "write a checkpoint or pretrained model as an ONNX file"),
    "figures": ("ssdlib.viz.figures", "regenerate every figure of the README and notebooks"),
}


def add_dtype_argument(parser: argparse.ArgumentParser) -> None:
    """``--dtype fp32|bf16`` of the ``eval`` and ``demo`` commands."""
    from ssdlib.engine.inference import INFERENCE_DTYPES

    parser.add_argument("--dtype", choices=list(INFERENCE_DTYPES), default="fp32",
                        help="network weights for inference: bf16 (post-processing stays fp32) "
                             "is 3-4x faster on CPUs with AMX or AVX512-BF16 and on recent GPUs; "
                             "README, Performance, gives its cost in mAP")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssdlib", description="SSD object detection toolkit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ssdlib.engine.errors import USER_ERRORS, report

    args = build_parser().parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except USER_ERRORS as e:  # every command: a user-caused failure is one line, no traceback
        return report(e)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
