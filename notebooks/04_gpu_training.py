# ---
# jupyter:
#   accelerator: GPU
#   colab:
#     gpuType: T4
#     provenance: []
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: accelerator,colab
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Training: the loop, mixed precision, several GPUs, checkpoints
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# [colab]: https://colab.research.google.com/github/ssdlib/ssdlib/blob/main/notebooks/04_gpu_training.ipynb
#
# **What you will learn** (about 35 minutes; runs in about 2 minutes on a 2-core CPU)
#
# - the SSD **recipe** (SGD, batch 32, lr $10^{-3}$, 120k iterations) and its **warm-up + multi-step
#   learning-rate schedule**;
# - what **one training step** does — forward, *matching inside the step*, MultiBox loss, backward,
#   update — written from scratch and checked equal to `ssdlib.engine.train_step`;
# - **mixed precision** (bf16 / fp16 + `GradScaler`) and why the loss stays in float32;
#   **channels_last** and **torch.compile**;
# - **several GPUs** with `torchrun` and DistributedDataParallel, and ssdlib's batch/LR rule;
# - a **real training run** with a live loss plot, **checkpoints**, and a **resume** that continues
#   *exactly* (same losses as an uninterrupted run);
# - what happens when the loss becomes **NaN**.
#
# Library functions used: `ssdlib.engine.WarmupMultiStep`, `build_optimizer`, `build_scheduler`,
# `train_step`, `ssdlib.loss.MultiBoxLoss`, `multibox_loss`, `train`, `load_checkpoint`,
# `latest_checkpoint`, `NonFiniteLossError`,
# `ssdlib.engine.device.resolve_amp`, `ssdlib.engine.sampling.batch_items`.
#
# On a CPU the notebook trains the light model on Shapes for 120 iterations; on a GPU with VOC under
# `$SSDLIB_DATA` it runs the first iterations of the real SSD300 VOC recipe instead.

# %% tags=["nbval-check-output"]
# Colab only: install the ssdlib package (Colab's own torch, torchvision and ipywidgets stay as
# they are) and report the GPU. Elsewhere this cell does nothing: the notebooks use the ssdlib
# installed beside them (`make lab` in a checkout).
import os
import shutil
import subprocess
import sys

SSDLIB_SOURCE = "git+https://github.com/ssdlib/ssdlib"  # = [project.urls] Repository in pyproject.toml
if "google.colab" in sys.modules:
    source = os.environ.get("SSDLIB_SOURCE", SSDLIB_SOURCE)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", source],
                          capture_output=True, text=True)
    if done.returncode:
        print(f"could not install ssdlib from {source}: "
              f"{(done.stderr.strip().splitlines() or ['pip failed'])[-1]}")
    else:
        print(f"installed ssdlib from {source}")
    if shutil.which("nvidia-smi"):
        subprocess.run(["nvidia-smi", "-L"], check=False)  # which GPU Colab gave us
else:
    print("not in Colab: using the installed ssdlib")

# %% tags=["nbval-ignore-output"]
# Seeds, device, and where data and outputs live (`ssdlib.course`: $SSDLIB_DATA, else the
# checkout's data/, else ./data as in Colab; the library then uses the same folder). On a CPU the
# notebook uses the generated Shapes data; with VOC there and a GPU it switches by itself.
from pathlib import Path

import numpy as np
import torch

from ssdlib.course import setup_notebook

# %matplotlib inline
# JPEG keeps the notebooks small on GitHub (the Shapes textures compress badly as PNG).
# %config InlineBackend.figure_formats = ["jpeg"]
paths, device = setup_notebook(seed=0)
DATA, OUTPUTS, HAVE_VOC = paths.data, paths.outputs, paths.have_voc

# %% [markdown]
# ## The recipe
#
# The paper trains with SGD, momentum 0.9, weight decay 0.0005, batch 32 and an initial learning
# rate of $10^{-3}$. lufficc/SSD's SSD300 VOC07+12 schedule, which ssdlib's `ssd300_voc` config
# copies, runs 120k iterations and divides the LR by 10 at 80k and 100k, after a linear warm-up
# from $\frac{1}{3}\,10^{-3}$ over the first 500 iterations (77.7 mAP on VOC2007 test; the paper's
# SSD300* reports 77.2). COCO: 400k iterations, steps 280k/360k.

# %% tags=["nbval-check-output"]
from ssdlib.config import load_config

voc = load_config("ssd300_voc").train
for key in ("batch_size", "lr", "momentum", "weight_decay", "max_iter", "lr_steps", "gamma",
            "warmup_iters", "warmup_factor", "amp", "channels_last", "compile"):
    print(f"{key:14s} {getattr(voc, key)}")

# %% [markdown]
# ## The learning-rate schedule
#
# $$\mathrm{lr}(i) = \mathrm{lr}_0 \cdot w(i) \cdot \gamma^{\#\{s \in \text{steps}\,:\, s \le i\}},\qquad
# w(i) = \begin{cases} f + (1 - f)\,\dfrac{i}{W} & i < W \\ 1 & \text{otherwise}\end{cases}$$
#
# with $f = 1/3$, $W = 500$, $\gamma = 0.1$. The warm-up exists because the first updates of a
# randomly initialised head are large: at the full LR they can push the loss to NaN (one of the
# classic SSD failures). `WarmupMultiStep` is the multiplier; `build_scheduler` wraps it in a
# `LambdaLR` that is stepped once per **iteration** (not per epoch):

# %% tags=["nbval-check-output"]
import matplotlib.pyplot as plt

from ssdlib.engine import WarmupMultiStep

schedule = WarmupMultiStep(voc.lr_steps, voc.gamma, voc.warmup_iters, voc.warmup_factor)
for i in (0, 250, 500, 79_999, 80_000, 100_000, 119_999):
    print(f"lr({i:>7,}) = {voc.lr * schedule(i):.2e}")
assert np.isclose(voc.lr * schedule(0), voc.lr / 3) and np.isclose(schedule(100_000), 0.01)

its = range(0, voc.max_iter, 50)
fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3))
a1.plot(its, [voc.lr * schedule(i) for i in its])
a1.set(title="SSD300 VOC: 120k iterations", xlabel="iteration", ylabel="lr", yscale="log")
a2.plot(range(1000), [voc.lr * schedule(i) for i in range(1000)])
a2.set(title="the first 1000: warm-up", xlabel="iteration")
for a in (a1, a2):
    a.grid(alpha=0.3)
plt.show()

# %% [markdown]
# `build_optimizer` puts biases and normalisation weights (1-D tensors) in a group **without**
# weight decay: decaying them only pulls them towards zero, it regularises nothing.

# %% tags=["nbval-check-output"]
from ssdlib.engine import build_optimizer
from ssdlib.model import build_model

cfg = load_config("shapes")
torch.manual_seed(0)
model = build_model(cfg)
optimizer = build_optimizer(model, cfg.train.lr, cfg.train.momentum, cfg.train.weight_decay)
for g in optimizer.param_groups:
    print(f"weight_decay {g['weight_decay']}: {len(g['params'])} tensors, "
          f"{sum(p.numel() for p in g['params']):,} parameters")

# %% [markdown]
# ## One training step
#
# Unlike many detectors, SSD's targets depend on the priors, so ssdlib **matches inside the
# step**, on the model's device and for the whole batch at once (`match_batch`, notebook 03):
# the data loader only delivers images and boxes, and a change of priors can never leave stale
# targets on disk. One step:
#
# 1. forward under autocast → class logits $(B, P, K)$, box offsets $(B, P, 4)$;
# 2. match ground truths to priors and encode the targets (no gradient);
# 3. MultiBox loss $L = (L_{conf} + \alpha L_{loc})/N$;
# 4. check the loss is finite, backward, check the gradients, `optimizer.step()`.
#
# From scratch, then compared with `train_step` on an identical copy of the model:

# %% tags=["nbval-check-output"]
import copy

from ssdlib.boxes import encode
from ssdlib.data import ShapesDataset, build_train_transform, collate
from ssdlib.loss import multibox_loss
from ssdlib.matching import match_batch


def train_step_from_scratch(model, optimizer, images, targets, priors, variances):
    boxes, labels = [t["boxes"] for t in targets], [t["labels"] for t in targets]
    optimizer.zero_grad(set_to_none=True)
    cls_logits, box_deltas = model(images)                                     # 1
    with torch.no_grad():                                                      # 2
        matched_labels, matched_boxes = match_batch(boxes, labels, priors, iou_threshold=0.5)
        target_deltas = encode(matched_boxes, priors, variances)
    loc, cls = multibox_loss(cls_logits, box_deltas, matched_labels, target_deltas,  # 3
                             neg_pos_ratio=3)
    (loc + cls).backward()                                                     # 4
    optimizer.step()
    return loc.item(), cls.item()


tf = build_train_transform(cfg.input.image_size, cfg.input.pixel_mean, cfg.input.pixel_std)
torch.manual_seed(0)
images, targets = collate([ShapesDataset("train", 8, 256, transform=tf)[i] for i in range(8)])
variances = tuple(cfg.priors.variances)

twin = copy.deepcopy(model)
opt_a = build_optimizer(model, 0.01, 0.9, 5e-4)
opt_b = build_optimizer(twin, 0.01, 0.9, 5e-4)
ours = train_step_from_scratch(model, opt_a, images, targets, model.priors, variances)
print(f"from scratch: loc {ours[0]:.4f}, cls {ours[1]:.4f}")

# %% [markdown]
# In ssdlib, steps 2 and 3 are one object. The priors, the variances and the matching rule never
# change during a run, so `MultiBoxLoss` is built once with them (`train` builds it from the
# config) and then called like any loss, on the head's outputs and the ground truth. `train_step`
# takes it, the batch as the data loader delivers it, and does steps 1-4:

# %% tags=["nbval-check-output"]
from ssdlib.engine import train_step
from ssdlib.loss import MultiBoxLoss

loss_fn = MultiBoxLoss(twin.priors, variances, iou_threshold=0.5, neg_pos_ratio=3)
lib = train_step(twin, loss_fn, opt_b, images, targets)
print(f"train_step:   loc {lib.loc:.4f}, cls {lib.cls:.4f}, skipped: {lib.skipped}")
same = all(torch.allclose(p, q, atol=1e-6) for p, q in zip(model.parameters(), twin.parameters()))
print("parameters after the step identical:", same)
assert same

# %% [markdown]
# Its optional arguments are what the short version lacks: `amp` (the autocast dtype), `scaler`
# (the `GradScaler`, below), and `ddp`, with which the GPUs agree on whether to skip; the
# non-finite checks (last section) are always on.
#
# ## Mixed precision: bf16, fp16 and the GradScaler
#
# On tensor-core GPUs, convolutions in 16-bit floats run several times faster and use half the
# memory. Two formats:

# %% tags=["nbval-check-output"]
for dt in (torch.float32, torch.bfloat16, torch.float16):
    fi = torch.finfo(dt)
    print(f"{str(dt):15s} max {fi.max:9.3g}   smallest normal {fi.tiny:9.3g}   "
          f"step near 1: {fi.eps:.3g}")

# %% [markdown]
# - **bf16** has float32's range (8 exponent bits) but only 8 bits of mantissa: nothing overflows,
#   values are coarse. ssdlib's `train.amp: auto` picks it on GPUs that support it (Ampere and later).
# - **fp16** has 10 mantissa bits but overflows above 65504 and flushes tiny values to zero — small
#   gradients *underflow*. The `GradScaler` multiplies the loss by a large factor $S$ (65536 at
#   first) before backward, so gradients are $S\times$ larger and representable, divides them by
#   $S$ before the update, and halves $S$ whenever it meets an inf (that step is skipped).

# %% tags=["nbval-check-output"]
g = torch.tensor([1e-8, 1e-3])
print("gradients in fp16:           ", g.half().tolist())
print("scaled by 65536, fp16, / 65536:", ((g * 65536).half().float() / 65536).tolist())

# %% [markdown]
# **Why the loss is computed in float32.** Autocast runs the *network* in 16 bits; the loss sums
# cross-entropies over $B \times 8732$ priors and Smooth-L1 over the positives. In bf16 a running sum
# near 1000 moves in steps of 4, so thousands of small terms are rounded away. `MultiBoxLoss` casts
# logits and offsets to float32 first (`.float()`), and the softmax of post-processing does too.
# The error of doing it in bf16, on the batch above:

# %% tags=["nbval-check-output"]
import torch.nn.functional as F

with torch.no_grad():
    cls_logits, _ = model(images)
    lab, _ = loss_fn.targets([t["boxes"] for t in targets], [t["labels"] for t in targets])
ce32 = F.cross_entropy(cls_logits.flatten(0, 1), lab.flatten(), reduction="none")
sum32 = ce32.sum()
sum16 = torch.zeros((), dtype=torch.bfloat16)
for chunk in ce32.bfloat16().split(256):          # a bf16 accumulator, as a bf16 loss would use
    sum16 = sum16 + chunk.sum()
print(f"sum of {ce32.numel():,} cross-entropies: float32 {sum32.item():.1f}, "
      f"bf16 accumulator {sum16.item():.1f} ({abs(sum16.item() / sum32.item() - 1):.2%} off)")

# %% [markdown]
# ssdlib's rule (`resolve_amp`): on a GPU `auto` is bf16 where supported, else fp16 with a
# `GradScaler`. On a CPU `auto` is bf16 when the CPU multiplies bf16 in hardware (Intel AMX or
# AVX512-BF16) and off otherwise: oneDNN then emulates bf16, slower than float32. Measured with the
# light model on such a CPU (one thread, batch 32 at 160 px, forward + backward): float32 0.249 s,
# bf16 0.128 s, bf16 + channels_last 0.104 s — `make demo` trains 2.4x more iterations in its ten
# minutes because of it.

# %% tags=["nbval-check-output"]
from ssdlib.engine.device import cpu_has_native_bf16, resolve_amp

for setting in ("bf16", "fp16", "off"):
    print(f"amp={setting!r:7s} cpu -> {resolve_amp(setting, torch.device('cpu'))}")
expected = torch.bfloat16 if cpu_has_native_bf16() else None
print("amp='auto' on a CPU follows its bf16 units:", resolve_amp("auto", torch.device("cpu")) == expected)
with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
    logits16, deltas16 = model(images[:2])
print("network outputs under CPU autocast:", logits16.dtype)

# %% tags=["nbval-ignore-output"]
# (not compared: depends on this machine's CPU and GPU)
print("this CPU has bf16 matrix units:", cpu_has_native_bf16())
print("amp='auto' on this CPU ->", resolve_amp("auto", torch.device("cpu")))
if torch.cuda.is_available():
    print(f"amp='auto' on {torch.cuda.get_device_name()} -> {resolve_amp('auto', device)}")

# %% [markdown]
# ## channels_last and torch.compile
#
# A batch is stored NCHW: all of channel 0, then channel 1... **channels_last** (NHWC) stores the
# C values of each pixel together, the layout tensor cores (and oneDNN on CPUs) want, which saves
# a transpose around every convolution. Same tensor, other strides:

# %% tags=["nbval-check-output"]
x = torch.zeros(2, 3, 160, 160)
print("NCHW strides:         ", x.stride())
print("channels_last strides:", x.contiguous(memory_format=torch.channels_last).stride())

# %% [markdown]
# `train.channels_last: auto` (the default) converts the model and every batch to NHWC where that
# measured faster: on a GPU, on CPUs with AMX, and for the light model on AVX2 CPUs
# (`ssdlib.engine.cpu_features.channels_last_for_training` gives the rule and its measurements).
# `train.compile: true` wraps the network in `torch.compile`: the first iterations take a minute
# or two to compile, then the fused kernels typically save 10–30 % per iteration — worth it for
# 120k iterations, not for this notebook. Both are config keys:
#
# ```bash
# python -m ssdlib train --config ssd300_voc train.compile=true train.amp=bf16
# ```
#
# ## Several GPUs: torchrun and DDP
#
# ```bash
# torchrun --nproc_per_node=4 -m ssdlib train --config ssd300_voc train.batch_size=8
# ```
#
# `torchrun` starts one process per GPU and sets `RANK`, `WORLD_SIZE`, `LOCAL_RANK`; ssdlib joins
# the process group (NCCL), wraps the model in `DistributedDataParallel` (gradients are averaged
# across GPUs during backward), and only rank 0 writes logs and checkpoints.
#
# **Batch and learning rate.** `train.batch_size` is **per GPU**; one iteration is one update over
# `batch_size × world_size` images, and ssdlib uses `train.lr` and the iteration counts exactly as
# written — it does **not** rescale them. To reproduce the 1 × 32 recipe on 4 GPUs, set
# `train.batch_size=8` (same global batch, same LR and schedule). Keeping 32 per GPU makes the
# global batch 128: then apply the *linear scaling rule* yourself, lr × 4 and `max_iter`,
# `lr_steps`, `warmup_iters` ÷ 4.
#
# **Which images each GPU sees.** PyTorch's `DistributedSampler` shards an *epoch*; SSD trains by
# *iterations*, so ssdlib's `IterationBatchSampler` derives every batch from `(seed, iteration,
# rank)`: rank $r$ takes global positions $(i \cdot W + r)\cdot B + k$ of a seeded permutation.
# Ranks never share a sample, and a resumed run sees exactly the images it would have seen:

# %% tags=["nbval-check-output"]
from ssdlib.engine.sampling import batch_items

for rank in range(2):
    items = batch_items(iteration=0, batch_size=4, num_samples=4000, seed=0, rank=rank, world_size=2)
    print(f"iteration 0, rank {rank}: images {[i for i, _ in items]}")
one_gpu = batch_items(iteration=0, batch_size=8, num_samples=4000, seed=0)
print(f"iteration 0, 1 GPU x 8: images {[i for i, _ in one_gpu]}")

# %% [markdown]
# With two GPUs of 4, iteration 0 covers exactly the 8 images one GPU of 8 would see.
#
# ## A real training run
#
# On this machine: the light model on Shapes (`shapes` config), 120 iterations of batch 16 with
# the schedule shortened in proportion (warm-up 20, steps at 80 and 105) — well under a minute on
# two CPU cores (the cell prints its time), in float32 (`train.amp=off`). Its losses differ in the
# last digits from one CPU to another (other kernels round differently), so the cells below check
# them with tolerances. That is far too short to give a good detector (`make demo` trains 2,700
# iterations of batch 32: 3-12 minutes on 2 cores, by CPU), but every part of the loop runs. On a
# GPU with VOC: the real `ssd300_voc` recipe (ImageNet VGG16 backbone, downloaded once), capped
# at 1000 iterations here — the full 120k is a job for the command line (`python -m ssdlib train --config
# ssd300_voc`), which resumes where it stopped if interrupted.
#
# `train` writes `config.yaml`, `metrics.jsonl`/`.csv` and checkpoints into its output folder. We call
# it in chunks of 40 iterations: each call resumes from the previous checkpoint, so we can redraw the
# loss in between.

# %% tags=["nbval-check-output"]
import shutil
import tempfile

from IPython.display import clear_output, display

from ssdlib.course import course_overrides
from ssdlib.engine import train
from ssdlib.engine.run_log import read_metrics

# The real recipe where it can run: VOC in the data folder and a GPU. $SSDLIB_COURSE_OVERRIDES
# (e.g. "train.max_iter=8 train.batch_size=2") shortens it, or runs it on a CPU with
# SSDLIB_COURSE_VOC=1, as the tests do on a small VOC-layout folder.
REAL = HAVE_VOC and (device.type == "cuda" or os.environ.get("SSDLIB_COURSE_VOC") == "1")
if REAL:
    cfg = load_config("ssd300_voc", ["train.max_iter=1000", "train.checkpoint_period=125",
                                     "train.keep_checkpoints=0", *course_overrides()])
    CHUNK = max(2, cfg.train.max_iter // 4)
else:
    # Batch 16: half the recipe's lr of batch 32 (the linear scaling rule, above).
    cfg = load_config("shapes", ["train.batch_size=16", "train.lr=0.02", "train.max_iter=120",
                                 "train.lr_steps=[80,105]", "train.warmup_iters=20",
                                 "train.checkpoint_period=20", "train.keep_checkpoints=0",
                                 "train.amp=off"])
    CHUNK = 40
    # Shapes renders its images in this process (data.num_workers 0): every core convolves.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) - cfg.data.num_workers))


def with_max_iter(cfg, n):
    # the same run, stopped at iteration n (the schedule is unchanged)
    short = copy.deepcopy(cfg)
    short.train.max_iter = n
    return short


print(f"training {cfg.model.name} on {cfg.data.dataset}, {cfg.train.max_iter} iterations of "
      f"batch {cfg.train.batch_size}, lr {cfg.train.lr}, on {device}")
# The VOC run goes where notebook 05 looks for it; the Shapes run is a scratch folder (the quick
# model is saved for later at the end of this section).
if REAL:
    run_dir = OUTPUTS / "ssd300_voc"
    shutil.rmtree(run_dir, ignore_errors=True)  # this section shows a run from iteration 0
else:
    run_dir = Path(tempfile.mkdtemp(prefix="ssd_run_"))

# %% tags=["nbval-ignore-output"]
# (not compared: timings and the temporary folder)
import time

from ssdlib.viz.draw import plot_losses

losses = []
tic = time.perf_counter()
for stop in range(CHUNK, cfg.train.max_iter + 1, CHUNK):
    result = train(with_max_iter(cfg, stop), run_dir, resume="auto", progress=False)
    losses += result.losses
    clear_output(wait=True)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    plot_losses(run_dir, ax=ax)  # the logged rows: each the mean of 10 iterations
    ax.set(xlim=(0, cfg.train.max_iter), title=f"iteration {result.iteration} / "
           f"{cfg.train.max_iter}, {time.perf_counter() - tic:.0f} s")
    display(fig)
    plt.close(fig)
print(f"{len(losses)} iterations in {time.perf_counter() - tic:.1f} s "
      f"({len(losses) / (time.perf_counter() - tic):.2f} it/s) on {device}")

# %% [markdown]
# What was logged (one row per 10 iterations, the mean of those iterations):

# %% tags=["nbval-ignore-output"]
# (not compared: losses differ in the last digits between CPUs; the asserts check the trend)
rows = read_metrics(run_dir)
for r in rows[:: max(1, len(rows) // 6)] + rows[-1:]:
    print(f"iteration {r['iteration']:5d}  loss {r['loss']:7.3f}  (loc {r['loc_loss']:.3f}, "
          f"cls {r['cls_loss']:.3f})  lr {r['lr']:.2e}")
first, last = np.mean(losses[:10]), np.mean(losses[-10:])
print(f"mean loss, first 10 iterations {first:.2f} -> last 10 {last:.2f}")
if not REAL:  # (a shortened VOC run, $SSDLIB_COURSE_OVERRIDES, may be too short to fall)
    assert last < 0.7 * first, (first, last)
    assert rows[-1]["cls_loss"] < 0.6 * rows[0]["cls_loss"] and rows[-1]["loc_loss"] < rows[0]["loc_loss"]
assert np.isfinite(last)

# %% [markdown]
# Both parts fall from the first iterations. The confidence loss starts highest — every prior
# begins with near-uniform class probabilities, and each positive brings three mined negatives —
# and falls most (above: from about 9 to about 4); the localisation loss falls by about a third.
# After 120 small iterations the model is far from converged — `make demo` trains the same network
# for 2,700 iterations of batch 32 (the model that ships with ssdlib, which notebooks 05 and 06
# use, was trained for 5,200 at half the learning rate), the VOC recipe runs 120k.
#
# ## Checkpoints and an exact resume
#
# A checkpoint holds everything needed to continue: weights, optimizer (momentum buffers),
# scheduler, GradScaler, the iteration and every RNG state. Files are written atomically (a
# temporary file, `fsync`, rename) and `last_checkpoint` names the newest complete one, so a run
# killed at any moment leaves a usable checkpoint.

# %% tags=["nbval-check-output"]
from ssdlib.engine import latest_checkpoint, load_checkpoint

print(sorted(p.name for p in run_dir.iterdir()))
ckpt = load_checkpoint(latest_checkpoint(run_dir))
print("checkpoint keys:", sorted(ckpt))
print("iteration:", ckpt["iteration"], "| scheduler's last_epoch:",
      ckpt["scheduler"]["last_epoch"])

# %% [markdown]
# **Resume continues exactly.** The run above went from 40 to 80 in one call, without stopping at
# 60. Now we pretend it crashed after the checkpoint at iteration 60: a new folder gets only that
# checkpoint, and `train` resumes from it to 80. Data order and augmentation are functions of
# `(seed, iteration)` (previous section) and the RNG states are restored, so the 20 losses must be
# the uninterrupted run's, to the last bit:

# %% tags=["nbval-ignore-output"]
# (not compared: the temporary folder is printed)
crashed = Path(tempfile.mkdtemp(prefix="ssd_resume_"))
k = 3 * CHUNK // 2
shutil.copy(run_dir / f"model_{k:07d}.pth", crashed)
resumed = train(with_max_iter(cfg, 2 * CHUNK), crashed, progress=False)

# %% tags=["nbval-ignore-output"]
# (not compared: the loss values themselves differ in the last digits between CPUs)
uninterrupted = losses[k : 2 * CHUNK]
print("uninterrupted:", [round(x, 4) for x in uninterrupted[:5]], "...")
print("resumed:      ", [round(x, 4) for x in resumed.losses[:5]], "...")
if device.type != "cpu":  # cuDNN picks its algorithms per run: equal up to float rounding
    print("largest difference:", max(abs(a - b) for a, b in zip(resumed.losses, uninterrupted)))

# %% tags=["nbval-check-output"]
print(f"{len(resumed.losses)} losses after iteration {k}, identical: {resumed.losses == uninterrupted}")
if device.type == "cpu":
    assert resumed.losses == uninterrupted

# %% [markdown]
# The same holds on one GPU (with `torch.use_deterministic_algorithms`) and with DDP, since every
# rank's batches are derived from the iteration. To continue a stopped job from the command line,
# run the same command again: `resume="auto"` picks the newest checkpoint in the output folder.
#
# We keep this small model (and the VOC run, on a GPU) for notebook 05, which compares it with the
# trained model that ships with ssdlib:

# %% tags=["nbval-ignore-output"]
# (not compared: the path depends on the machine)
from ssdlib.config import dump_config
from ssdlib.engine import save_checkpoint

QUICK_DIR = OUTPUTS / "notebooks" / "shapes_quick"
if not REAL:
    save_checkpoint(load_checkpoint(latest_checkpoint(run_dir)), QUICK_DIR, cfg.train.max_iter)
    dump_config(cfg, QUICK_DIR / "config.yaml")
    print("quick Shapes model:", latest_checkpoint(QUICK_DIR))
else:
    print("the VOC run, for notebook 05:", latest_checkpoint(run_dir))

# %% [markdown]
# ## When the loss is not finite
#
# A NaN loss (a degenerate box, a too high LR, an fp16 overflow) would, after one backward, turn
# every weight into NaN. `train_step` checks the loss **before** backward; if it is not finite it
# skips the update and restores the BatchNorm running statistics that the forward pass already
# changed. Non-finite gradients skip the step too. Below, a batch with a NaN pixel:

# %% tags=["nbval-check-output"]
torch.manual_seed(0)
net = build_model(load_config("shapes"))
opt = build_optimizer(net, 0.01, 0.9, 5e-4)
before = copy.deepcopy(net.state_dict())
bad = images.clone()
bad[0, 0, 0, 0] = float("nan")
res = train_step(net, MultiBoxLoss(net.priors, variances), opt, bad, targets)
print(res)
unchanged = all(torch.equal(before[k], v) for k, v in net.state_dict().items())
print("weights and BatchNorm statistics unchanged:", unchanged)
assert res.skipped == "loss" and unchanged

# %% [markdown]
# One bad batch is reported and survived. `train.max_nonfinite` (default 5) such iterations **in a
# row** mean the run is diverging: `train` stops with `NonFiniteLossError` and a hint, instead of
# writing NaN checkpoints for hours (with fp16, the GradScaler's own overflow skips do not count).
# A dataset that only yields broken images:

# %% tags=["nbval-check-output"]
from torch.utils.data import Dataset

from ssdlib.engine import NonFiniteLossError


class BrokenImages(Dataset):
    class_names = ShapesDataset.class_names

    def __init__(self):
        self.inner = ShapesDataset("train", 16, 256, transform=tf)

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        image, target = self.inner[i]
        return image * float("nan"), target


bad_cfg = load_config("shapes", ["train.batch_size=2", "train.max_iter=10", "train.max_nonfinite=3",
                                 "data.num_workers=0"])
try:
    train(bad_cfg, tempfile.mkdtemp(), dataset=BrokenImages(), progress=False)
except NonFiniteLossError as e:
    print("NonFiniteLossError:", e)

# %% [markdown]
# ## Summary
#
# - Recipe: SGD (momentum 0.9, weight decay 5e-4 except biases/norms), batch 32, lr $10^{-3}$ with a
#   linear warm-up from 1/3 over 500 iterations, ÷10 at 80k and 100k, 120k iterations
#   (`WarmupMultiStep`, stepped per iteration).
# - A step = forward (autocast) → `MultiBoxLoss` (built once with the priors: `match_batch` +
#   `encode` on the device, then the loss in float32) → finite check → backward → update
#   (`train_step(model, loss_fn, optimizer, images, targets)`).
# - bf16 needs no scaler; fp16 needs the `GradScaler` against gradient underflow. channels_last and
#   `torch.compile` are config switches for GPUs.
# - `torchrun --nproc_per_node=N -m ssdlib train ...`: batch size is per GPU, LR and schedule are
#   used as written (scale them yourself).
# - Checkpoints are atomic and complete; resuming reproduces the uninterrupted run exactly.
# - A non-finite loss skips the step (weights and BN statistics untouched); `max_nonfinite` in a row
#   stop the run with `NonFiniteLossError`.
#
# ## Exercises
#
# 1. With `train.batch_size=32` on 8 GPUs, what LR and schedule does the linear scaling rule give
#    for the VOC recipe?
# 2. Plot the learning rate of the COCO recipe (400k iterations, steps 280k/360k).
# 3. Resume the small run above from the checkpoint at iteration 20 up to 40 in a new folder and
#    check the losses against `losses[20:40]`.
# 4. Why must the LR schedule advance even when a step is skipped?
#
# <details><summary>Solution 1</summary>
#
# Global batch 256 = 8 × 32: lr $8 \times 10^{-3}$, 15k iterations, steps 10k/12.5k, warm-up 62.
# Large batches often need a longer warm-up in practice (the rule breaks down early in training).
# </details>
#
# <details><summary>Solution 2</summary>
#
# ```python
# coco = load_config("ssd300_coco").train
# s = WarmupMultiStep(coco.lr_steps, coco.gamma, coco.warmup_iters, coco.warmup_factor)
# plt.plot(range(0, coco.max_iter, 100), [coco.lr * s(i) for i in range(0, coco.max_iter, 100)])
# plt.yscale("log")
# ```
# </details>
#
# <details><summary>Solution 3</summary>
#
# ```python
# d = Path(tempfile.mkdtemp())
# shutil.copy(run_dir / "model_0000020.pth", d)
# r = train(with_max_iter(cfg, 40), d, progress=False)
# assert r.losses == losses[20:40]
# ```
# </details>
#
# <details><summary>Solution 4</summary>
#
# The LR is a function of the iteration number. If skipped steps froze the schedule, a resumed run
# (whose scheduler state says "iteration i") and the original would disagree, and the steps at 80k /
# 100k would drift with the number of bad batches.
# </details>
