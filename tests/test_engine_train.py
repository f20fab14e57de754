import math

import pytest
import torch

from ssdlib.config import ConfigError, load_config
from ssdlib.engine import NonFiniteLossError, train, train_step
from ssdlib.engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from ssdlib.engine.datasets import build_train_dataset
from ssdlib.engine.inference import load_model
from ssdlib.engine.run_log import read_metrics
from ssdlib.loss import MultiBoxLoss
from ssdlib.model import build_model

# A 0.25-width light model on 128 px Shapes: a few iterations take seconds on a CPU.
TINY = [
    "model.width=0.25", "train.batch_size=4", "data.num_train=32", "data.source_size=128",
    "data.num_workers=0", "train.max_iter=6", "train.checkpoint_period=3", "train.log_period=1",
    "train.warmup_iters=2", "train.lr=0.01", "train.lr_steps=[100]", "train.keep_checkpoints=2",
]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny(*overrides):
    return load_config("shapes", [*TINY, *overrides])


def state_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_loss_decreases_on_shapes(tmp_path):
    cfg = tiny("train.max_iter=16", "train.lr=0.05", "train.batch_size=8")
    result = train(cfg, tmp_path, progress=False)
    losses = result.losses
    assert len(losses) == 16 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:3]) / 3
    assert [r["iteration"] for r in read_metrics(tmp_path)] == list(range(1, 17))
    assert latest_checkpoint(tmp_path).name == "model_0000016.pth"
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "metrics.csv").is_file()


class CrashAfter(torch.utils.data.Dataset):
    """The training set, but loading dies after ``n`` samples (a killed process)."""

    def __init__(self, dataset, n):
        self.dataset, self.n, self.calls = dataset, n, 0
        self.sequential = getattr(dataset, "sequential", False)  # the sampler reads it

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        self.calls += 1
        if self.calls > self.n:
            raise KeyboardInterrupt("simulated crash")
        return self.dataset[i]


@pytest.mark.parametrize("views", [1, 4])
def test_resumed_run_continues_exactly(tmp_path, monkeypatch, views):
    # views=4: Shapes renderings shared by 4 samples in index order (a cache of 4 here).
    monkeypatch.setattr("ssdlib.data.shapes.VIEW_CACHE", 4)
    cfg = tiny(f"data.views={views}")
    full = train(cfg, tmp_path / "a", resume=False, progress=False)

    # Interrupted during iteration 5 (after the checkpoint of iteration 3), then resumed.
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "b", dataset=CrashAfter(build_train_dataset(cfg), 4 * 4 + 2),
              progress=False)  # fmt: skip
    assert [r["iteration"] for r in read_metrics(tmp_path / "b")] == [1, 2, 3, 4]
    resumed = train(cfg, tmp_path / "b", resume=True, progress=False)
    assert len(resumed.losses) == 3
    assert resumed.losses == full.losses[3:]  # exactly, not approximately
    assert read_metrics(tmp_path / "b") == [
        {**r, "time": s["time"]} for r, s in zip(read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b"))
    ]
    assert state_equal(full.model.state_dict(), resumed.model.state_dict())
    a = load_checkpoint(tmp_path / "a" / "model_0000006.pth")
    b = load_checkpoint(tmp_path / "b" / "model_0000006.pth")
    assert a["scheduler"] == b["scheduler"]
    momenta = zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values())
    assert all(torch.equal(x["momentum_buffer"], y["momentum_buffer"]) for x, y in momenta)
    # Rotation kept two; a finished run resumed again does nothing.
    assert sorted(p.name for p in (tmp_path / "b").glob("model_*.pth")) == [
        "model_0000003.pth", "model_0000006.pth"]  # fmt: skip
    assert train(cfg, tmp_path / "b", progress=False).losses == []


def _batch(cfg, n=2):
    ds = build_train_dataset(cfg)
    samples = [ds[i] for i in range(n)]
    return torch.stack([s[0] for s in samples]), [s[1] for s in samples]


def _step(model, images, targets, opt):
    return train_step(model, MultiBoxLoss(model.priors, (0.1, 0.2), 0.5, 3), opt, images, targets)


def test_non_finite_loss_skips_the_step_and_keeps_weights_and_bn_stats():
    cfg = tiny()
    torch.manual_seed(0)
    model = build_model(cfg).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    images, targets = _batch(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images[0, :, :5, :5] = float("nan")
    res = _step(model, images, targets, opt)
    assert res.skipped == "loss" and not math.isfinite(res.loss)
    assert state_equal(before, model.state_dict())  # parameters AND running statistics
    images[0, :, :5, :5] = 0.0
    assert _step(model, images, targets, opt).skipped is None
    assert not state_equal(before, model.state_dict())


def test_non_finite_gradient_skips_the_step():
    cfg = tiny()
    model = build_model(cfg).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    weight = model.head.cls_heads[0].weight
    weight.register_hook(lambda g: g * float("inf"))
    params = {k: v.clone() for k, v in model.named_parameters()}
    res = _step(model, *_batch(cfg), opt)
    assert res.skipped == "grad" and math.isfinite(res.loss)
    assert state_equal(params, dict(model.named_parameters()))


class NaNImages(torch.utils.data.Dataset):
    def __init__(self, dataset):
        self.dataset, self.class_names = dataset, dataset.class_names

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        image, target = self.dataset[i]
        return torch.full_like(image, float("nan")), target


def test_training_stops_after_max_nonfinite_in_a_row(tmp_path, capsys):
    cfg = tiny("train.max_nonfinite=3", "train.checkpoint_period=100")
    with pytest.raises(NonFiniteLossError, match="iteration 3: 3 non-finite"):
        train(cfg, tmp_path, dataset=NaNImages(build_train_dataset(cfg)), progress=False)
    err = capsys.readouterr()
    assert "iteration 1: non-finite loss" in err.out + err.err
    assert latest_checkpoint(tmp_path) is None


def test_class_count_mismatch_with_the_dataset_fails_before_any_work(tmp_path):
    cfg = tiny("model.num_classes=4", "data.class_names=[circle,square,triangle,star]")
    with pytest.raises(ConfigError, match="5 classes.*model.num_classes is 4"):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_class_count_mismatch_with_a_checkpoint_fails_before_any_work(tmp_path):
    other = tiny("model.num_classes=3", "data.class_names=[a,b,c]")
    state = {"model": build_model(other).state_dict(), "config": other.to_dict(), "iteration": 3}
    save_checkpoint(state, tmp_path, 3)
    with pytest.raises(ConfigError, match="num_classes=3 but the config has 5"):
        train(tiny(), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="num_classes=3"):
        load_model(tiny(), tmp_path / "model_0000003.pth")
    assert not (tmp_path / "metrics.jsonl").exists()


def test_amp_auto_follows_the_hardware(monkeypatch):
    from ssdlib.engine import device as dev
    from ssdlib.engine import trainer

    assert trainer.resolve_amp is dev.resolve_amp  # the old import name still works
    cpu = torch.device("cpu")
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: True)
    assert dev.resolve_amp("auto", cpu) is torch.bfloat16
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: False)
    assert dev.resolve_amp("auto", cpu) is None  # emulated bf16 is slower than fp32
    assert dev.resolve_amp("off", cpu) is None
    assert dev.resolve_amp("bf16", cpu) is torch.bfloat16
    assert dev.resolve_amp("fp16", cpu) is torch.float16


def test_bf16_channels_last_training_on_the_cpu(tmp_path):
    cfg = tiny("train.amp=bf16", "train.channels_last=true", "train.max_iter=12", "train.lr=0.05",
               "train.batch_size=8")  # fmt: skip
    result = train(cfg, tmp_path, progress=False)
    assert all(math.isfinite(v) for v in result.losses)
    assert sum(result.losses[-3:]) / 3 < 0.8 * sum(result.losses[:3]) / 3
    assert all(p.dtype == torch.float32 for p in result.model.parameters())  # master weights


class Recording(torch.utils.data.Dataset):
    def __init__(self, dataset, sequential):
        self.dataset, self.sequential, self.indices = dataset, sequential, []

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        self.indices.append(i)
        return self.dataset[i]


@pytest.mark.parametrize("sequential", [True, False])
def test_sequential_datasets_are_read_in_index_order(tmp_path, sequential):
    cfg = tiny("train.max_iter=3", "train.checkpoint_period=100")
    data = Recording(build_train_dataset(cfg), sequential)
    train(cfg, tmp_path, dataset=data, progress=False)
    assert len(set(data.indices)) == 12  # 3 batches of 4 from 32 images, none twice
    assert (data.indices == list(range(12))) == sequential
