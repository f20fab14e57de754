"""Numerics: non-finite losses/gradients skip the step (and stop the run after
``train.max_nonfinite`` in a row, with a message); degenerate boxes never reach the encoder;
fp16 overflow is handled by the GradScaler (CPU GradScaler, no mocks).

(tests/test_engine_train.py covers a NaN batch and an inf gradient hook on train_step alone.)
"""

from __future__ import annotations

import math

import pytest
import torch
from reliability_helpers import tiny_config
from torch.utils.data import Dataset

from ssdlib.engine import NonFiniteLossError, train, train_step
from ssdlib.engine.checkpoint import latest_checkpoint, load_checkpoint
from ssdlib.engine.datasets import build_train_dataset
from ssdlib.engine.run_log import read_metrics
from ssdlib.engine.sampling import batch_items
from ssdlib.loss import MultiBoxLoss, prepare_targets
from ssdlib.model import build_model


class PoisonIterations(Dataset):
    """The training set, with NaN images in the batches of the given (1-based) iterations."""

    def __init__(self, dataset: Dataset, iterations: set[int], batch_size: int, seed: int) -> None:
        self.dataset, self.class_names = dataset, dataset.class_names
        # Which samples an iteration loads is a pure function of (seed, iteration).
        self.bad = {i for it in iterations
                    for i, _ in batch_items(it - 1, batch_size, len(dataset), seed)}  # fmt: skip

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, target = self.dataset[index]
        return (torch.full_like(image, math.nan) if index in self.bad else image), target


def _poisoned_run(tmp_path, iterations: set[int], max_nonfinite: int, max_iter: int = 6):
    cfg = tiny_config(tmp_path, train={"max_iter": max_iter, "max_nonfinite": max_nonfinite})
    data = PoisonIterations(build_train_dataset(cfg), iterations, cfg.train.batch_size, cfg.train.seed)
    return train(cfg, tmp_path / "out", dataset=data, progress=False)


def test_non_finite_losses_are_skipped_and_only_a_run_of_them_stops_training(tmp_path, capsys):
    # 32 samples, batch 4: iterations 1..8 of epoch 0 load disjoint samples.
    result = _poisoned_run(tmp_path, {2, 4}, max_nonfinite=2)  # never 2 in a row: runs through
    nan_at = [i for i, v in enumerate(result.losses, start=1) if math.isnan(v)]
    assert nan_at == [2, 4] and len(result.losses) == 6
    out = capsys.readouterr().out
    assert "iteration 2: non-finite loss" in out and "step skipped" in out
    assert [r["iteration"] for r in read_metrics(tmp_path / "out")] == [1, 3, 5, 6]
    assert all(torch.isfinite(v).all() for v in result.model.state_dict().values())


def test_a_run_of_non_finite_losses_stops_with_a_message(tmp_path):
    with pytest.raises(NonFiniteLossError) as info:
        _poisoned_run(tmp_path, {3, 4, 5}, max_nonfinite=3)
    message = str(info.value)
    assert "stopping at iteration 5: 3 non-finite" in message and "train.max_nonfinite=3" in message
    assert "lower train.lr" in message  # says what to do
    # Checkpoint 4 was taken amid the trouble: it holds the weights of checkpoint 2, untouched
    # by the skipped steps 3 and 4, so a resume (e.g. with a lower lr) starts from clean weights.
    last = load_checkpoint(latest_checkpoint(tmp_path / "out"))
    assert last["iteration"] == 4
    clean = load_checkpoint(tmp_path / "out" / "model_0000002.pth")["model"]
    assert all(torch.equal(clean[k], v) for k, v in last["model"].items())


def _batch(cfg, n: int = 2):
    ds = build_train_dataset(cfg)
    samples = [ds[i] for i in range(n)]
    return (torch.stack([s[0] for s in samples]), [s[1]["boxes"] for s in samples],
            [s[1]["labels"] for s in samples])  # fmt: skip


def _step(model, opt, scaler, images, boxes, labels, amp_dtype=None):
    targets = [{"boxes": b, "labels": lab} for b, lab in zip(boxes, labels)]
    loss_fn = MultiBoxLoss(model.priors, (0.1, 0.2), iou_threshold=0.5, neg_pos_ratio=3)
    return train_step(model, loss_fn, opt, images, targets, scaler, amp=amp_dtype)


def test_non_finite_gradients_skip_the_step_and_leave_weights_alone(tmp_path):
    cfg = tiny_config(tmp_path)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    batch = _batch(cfg)
    # NaN appears only in the backward pass of one layer (the loss itself is finite).
    handle = model.head.reg_heads[0].weight.register_hook(lambda g: torch.full_like(g, math.nan))
    before = {k: v.clone() for k, v in model.named_parameters()}
    res = _step(model, opt, scaler, *batch)
    assert res.skipped == "grad" and math.isfinite(res.loss)
    assert all(torch.equal(before[k], v) for k, v in model.named_parameters())
    assert not opt.state  # no momentum built from a NaN gradient
    handle.remove()
    assert _step(model, opt, scaler, *batch).skipped is None


def test_degenerate_boxes_never_reach_the_encoder(tmp_path):
    cfg = tiny_config(tmp_path)
    model = build_model(cfg)
    good = torch.tensor([[0.2, 0.2, 0.6, 0.7]])
    degenerate = torch.tensor([
        [0.5, 0.5, 0.5, 0.8],  # zero width (a box squashed by a crop or a rounding)
        [0.3, 0.4, 0.6, 0.4],  # zero height
        [0.7, 0.2, 0.6, 0.5],  # x2 < x1
        [math.nan, 0.1, 0.2, 0.3],
        [0.1, 0.1, math.inf, 0.3],
    ])  # fmt: skip
    boxes = [torch.cat([degenerate[:2], good, degenerate[2:]]), degenerate]
    labels = [torch.tensor([1, 2, 3, 4, 5, 1]), torch.tensor([1, 2, 3, 4, 5])]
    matched, target = prepare_targets(boxes, labels, model.priors, (0.1, 0.2), 0.5)
    assert torch.isfinite(target).all()  # background priors included (never read, but clean)
    assert set(matched[0].unique().tolist()) == {0, 3}  # only the good box is matched
    assert (matched[1] == 0).all()  # an image whose boxes were all degenerate: background
    # ... and end to end: a training step on such targets has a finite loss and steps.
    images = torch.zeros(2, 3, 160, 160)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    res = _step(model.train(), opt, torch.amp.GradScaler("cpu", enabled=False), images, boxes, labels)
    assert res.skipped is None and math.isfinite(res.loss)


class WithDegenerateBoxes(Dataset):
    """Transformed training samples plus a zero-width and a NaN box (a custom dataset that
    does not clean its boxes)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset, self.class_names = dataset, dataset.class_names

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, target = self.dataset[index]
        extra = torch.tensor([[0.5, 0.1, 0.5, 0.9], [math.nan, 0.1, 0.4, 0.4]])
        target = {**target, "boxes": torch.cat([target["boxes"], extra]),
                  "labels": torch.cat([target["labels"], torch.tensor([1, 2])])}  # fmt: skip
        return image, target


def test_training_on_targets_with_degenerate_boxes_stays_finite(tmp_path):
    cfg = tiny_config(tmp_path, train={"max_iter": 3, "max_nonfinite": 1})
    result = train(cfg, tmp_path / "out", dataset=WithDegenerateBoxes(build_train_dataset(cfg)),
                   progress=False)  # fmt: skip
    assert len(result.losses) == 3 and all(math.isfinite(v) for v in result.losses)


def test_fp16_overflow_is_absorbed_by_the_grad_scaler(tmp_path):
    """A scale of 2**40 overflows fp16 gradients for sure: the step is skipped, weights stay,
    the scale backs off, and once it is small enough steps happen again."""
    cfg = tiny_config(tmp_path)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40, backoff_factor=2.0**-6)
    batch = _batch(cfg)
    before = {k: v.clone() for k, v in model.named_parameters()}
    res = _step(model, opt, scaler, *batch, amp_dtype=torch.float16)
    assert res.skipped == "grad" and math.isfinite(res.loss)
    assert all(torch.equal(before[k], v) for k, v in model.named_parameters())
    assert scaler.get_scale() == 2.0**34
    for _ in range(6):  # 2**34 -> 2**28 -> ... until fp16 gradients fit
        res = _step(model, opt, scaler, *batch, amp_dtype=torch.float16)
        if res.skipped is None:
            break
    assert res.skipped is None and scaler.get_scale() < 2.0**34
    assert not all(torch.equal(before[k], v) for k, v in model.named_parameters())


class HotScaler(torch.amp.GradScaler):
    """A GradScaler that starts far too high, so the first fp16 steps overflow."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{**kwargs, "init_scale": 2.0**40, "backoff_factor": 2.0**-6})


def test_fp16_overflows_do_not_count_as_non_finite_losses(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.amp, "GradScaler", HotScaler)
    cfg = tiny_config(tmp_path, train={"max_iter": 8, "amp": "fp16", "max_nonfinite": 1,
                                       "checkpoint_period": 8})  # fmt: skip
    result = train(cfg, tmp_path / "out", progress=False)  # max_nonfinite=1 would stop at once
    skipped = [i for i, v in enumerate(result.losses, start=1) if math.isnan(v)]
    assert skipped and skipped == list(range(1, len(skipped) + 1))  # only the first ones
    assert len(skipped) < 8 and "non-finite grad" in capsys.readouterr().out
    scale = load_checkpoint(latest_checkpoint(tmp_path / "out"))["scaler"]["scale"]
    assert scale < 2.0**40  # backed off, and saved for the resume
