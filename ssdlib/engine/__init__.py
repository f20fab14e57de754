"""Training and evaluation: the loop (:mod:`.trainer`; its NaN/inf guards: :mod:`.nonfinite`),
checkpoints (:mod:`.checkpoint`), LR schedule (:mod:`.schedule`), DDP (:mod:`.distributed`),
deterministic data order (:mod:`.sampling`), datasets from configs (:mod:`.datasets`),
evaluation (:mod:`.evaluator`) and the ``train`` / ``eval`` / ``demo`` commands."""

from ssdlib.engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from ssdlib.engine.errors import NonFiniteLossError
from ssdlib.engine.evaluator import EvalResult, evaluate, run_inference
from ssdlib.engine.inference import load_model
from ssdlib.engine.schedule import WarmupMultiStep, build_optimizer, build_scheduler
from ssdlib.engine.trainer import StepResult, TrainResult, train, train_step

__all__ = [
    "EvalResult", "NonFiniteLossError", "StepResult", "TrainResult", "WarmupMultiStep",
    "build_optimizer", "build_scheduler", "evaluate", "latest_checkpoint", "load_checkpoint",
    "load_model", "run_inference", "save_checkpoint", "train", "train_step",
]  # fmt: skip
