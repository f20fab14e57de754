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
# # 03 · Matching, box encoding and the MultiBox loss
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# [colab]: https://colab.research.google.com/github/ssdlib/ssdlib/blob/main/notebooks/03_matching_and_loss.ipynb
#
# **What you will learn** (about 25 minutes; runs in under a minute on a CPU)
#
# - intersection over union (IoU) and how SSD **matches** ground truths to default boxes;
# - the **encoding** of a matched box as four regression targets, with the variances 0.1 / 0.2;
# - matching on a hand-made toy first, then **from scratch** against `ssdlib.matching.match`;
# - **hard negative mining**: why only 3 negatives per positive enter the loss;
# - the **MultiBox loss** $L = (L_{conf} + \alpha L_{loc}) / N$ on a real batch, written from scratch
#   and checked against `ssdlib.loss.MultiBoxLoss`.
#
# Library functions used: `ssdlib.boxes.box_iou`, `encode`, `decode`, `ssdlib.matching.match`,
# `match_batch`, `ssdlib.loss.hard_negative_mining`, `MultiBoxLoss` (and its `targets`).

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

import numpy as np
import torch

from ssdlib.course import setup_notebook

# %matplotlib inline
# JPEG keeps the notebooks small on GitHub (the Shapes textures compress badly as PNG).
# %config InlineBackend.figure_formats = ["jpeg"]
paths, device = setup_notebook(seed=0)
DATA, OUTPUTS, HAVE_VOC = paths.data, paths.outputs, paths.have_voc

# %% [markdown]
# ## IoU
#
# $$\mathrm{IoU}(A, B) = \frac{|A \cap B|}{|A \cup B|} = \frac{|A\cap B|}{|A| + |B| - |A \cap B|}$$
#
# From scratch for two boxes in (x1, y1, x2, y2), then checked against `box_iou` (torchvision's):

# %% tags=["nbval-check-output"]
from ssdlib.boxes import box_iou


def iou_from_scratch(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


a, b = [0.1, 0.1, 0.5, 0.5], [0.3, 0.2, 0.7, 0.6]
ours = iou_from_scratch(a, b)
lib = box_iou(torch.tensor([a]), torch.tensor([b]))[0, 0].item()
print(f"IoU = {ours:.4f} (from scratch), {lib:.4f} (box_iou)")
assert abs(ours - lib) < 1e-6

# %% [markdown]
# ## Matching (section 2.2 of the paper)
#
# 1. each ground truth takes its **best** prior, whatever the IoU — so no object is left without a
#    positive;
# 2. every other prior takes the ground truth it overlaps most, **if** that IoU is ≥ 0.5;
# 3. the rest are background (label 0).
#
# ### A toy first: 3 objects, 6 priors
#
# Matching only needs the IoU of every (ground truth, prior) pair. A hand-made IoU matrix:
# object 0 overlaps priors 0 and 1 well, object 2 overlaps prior 4 well, and object 1 — a small
# object between priors — reaches only 0.35 at best.

# %% tags=["nbval-check-output"]
iou = torch.tensor([
    # prior 0     1     2     3     4     5
    [0.70, 0.55, 0.10, 0.00, 0.00, 0.00],   # object 0, a circle  (label 1)
    [0.00, 0.20, 0.35, 0.30, 0.00, 0.00],   # object 1, a square  (label 2), small
    [0.00, 0.00, 0.00, 0.40, 0.60, 0.05],   # object 2, a star    (label 4)
])
toy_labels = torch.tensor([1, 2, 4])


def match_from_iou(iou, gt_labels, threshold=0.5):
    """Rules 1-3 on a (G, P) IoU matrix -> (label of each prior, its ground truth, forced?)."""
    best_iou, best_gt = iou.max(dim=0)            # rule 2: each prior's best ground truth
    forced = torch.zeros(iou.shape[1], dtype=torch.bool)
    for g in range(iou.shape[0]):                 # rule 1: each ground truth's best prior
        p = int(iou[g].argmax())                  # (a later ground truth wins a shared prior)
        best_gt[p], forced[p] = g, True
    labels = gt_labels[best_gt]
    labels[(best_iou < threshold) & ~forced] = 0  # rule 3: background
    return labels, best_gt, forced


toy, toy_gt, toy_forced = match_from_iou(iou, toy_labels)
for p in range(iou.shape[1]):
    g = int(toy_gt[p])
    if toy_forced[p]:
        rule = "its best prior" + (": kept only by rule 1" if iou[g, p] < 0.5 else "")
        print(f"prior {p}: label {int(toy[p])} (object {g}, IoU {iou[g, p]:.2f}, {rule})")
    elif toy[p]:
        print(f"prior {p}: label {int(toy[p])} (object {g}, IoU {iou[g, p]:.2f} >= 0.5)")
    else:
        print(f"prior {p}: label 0 (best IoU {iou[g, p]:.2f} < 0.5: background)")

# %% tags=["nbval-check-output"]
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

fig = Figure(figsize=(6.4, 2.8), layout="constrained")
ax = fig.add_subplot(1, 1, 1)
ax.imshow(iou.numpy(), cmap="Blues", vmin=0, vmax=1)
for g in range(3):
    for p in range(6):
        matched = bool(toy[p]) and int(toy_gt[p]) == g
        ax.text(p, g, f"{iou[g, p]:.2f}", ha="center", va="center", fontsize=9,
                weight="bold" if matched else "normal", color="white" if iou[g, p] > 0.5 else "black")
        if matched:
            ax.add_patch(Rectangle((p - 0.45, g - 0.45), 0.9, 0.9, fill=False, lw=2,
                                   ec="#d62728" if iou[g, p] < 0.5 else "#2ca02c"))
ax.set_xticks(range(6), [f"prior {p}\nlabel {int(toy[p])}" for p in range(6)], fontsize=8)
ax.set_yticks(range(3), [f"object {g}" for g in range(3)], fontsize=8)
ax.set_title("matched pairs: green = IoU >= 0.5, red = below 0.5, kept by rule 1", fontsize=9)
fig

# %% [markdown]
# Object 1 has no prior at IoU ≥ 0.5; rule 1 still gives it prior 2, its best (red) — without
# rule 1 it would never be trained on. Object 0 gets two positives (priors 0 and 1), object 2 one
# (prior 4); priors 3 and 5 are background, prior 3 although it overlaps two objects a little.
# The same from scratch with boxes instead of a matrix, checked against `ssdlib.matching.match`
# on a Shapes image with SSD300's 8732 priors:

# %% tags=["nbval-check-output"]
from ssdlib.boxes import cxcywh_to_xyxy
from ssdlib.config import load_config
from ssdlib.data import ShapesDataset
from ssdlib.matching import match
from ssdlib.priors import generate_priors


def match_from_scratch(gt_boxes, gt_labels, priors, threshold=0.5):
    """(G, 4) relative xyxy ground truths, (P, 4) cxcywh priors -> labels (P,), boxes (P, 4)."""
    iou = box_iou(gt_boxes, cxcywh_to_xyxy(priors))             # (G, P)
    labels, best_gt, _ = match_from_iou(iou, gt_labels, threshold)
    return labels, gt_boxes[best_gt]


p = load_config("ssd300_voc").priors
priors = generate_priors(p)
image, target = ShapesDataset("test", 8, image_size=300)[7]
gt = target["boxes"] / 300                       # relative xyxy, as matching expects
labels, matched = match(gt, target["labels"], priors, iou_threshold=0.5)
mine_labels, mine_boxes = match_from_scratch(gt, target["labels"], priors)
assert torch.equal(mine_labels, labels)
assert torch.equal(mine_boxes[labels > 0], matched[labels > 0])
print("match_from_scratch == ssdlib.matching.match: True")
print(f"{len(gt)} objects, {int((labels > 0).sum())} positive priors, "
      f"{int((labels == 0).sum())} background")
for g in range(len(gt)):
    mine = (matched == gt[g]).all(dim=1) & (labels > 0)
    best = float(box_iou(gt[g : g + 1], cxcywh_to_xyxy(priors)).max())
    print(f"object {g} ({(gt[g, 2] - gt[g, 0]) * 300:.0f}x{(gt[g, 3] - gt[g, 1]) * 300:.0f} px): "
          f"{int(mine.sum())} priors, best IoU {best:.2f}")
    assert mine.any(), "every ground truth gets at least one prior"

# %% [markdown]
# Both objects are about 100 px wide, close to the 111 px priors of the 10×10 map, so each finds a
# dozen priors at IoU ≥ 0.5 and the forced match adds nothing here; it matters for objects like
# object 1 of the toy — small ones, or odd shapes, that no prior overlaps well (on the Shapes
# data, 23 % of the objects under 16 px, notebook 01). The right panel shows how the threshold
# changes the number of positives: at 0.7 object 0 keeps one prior, and object 1, whose best
# IoU is 0.69, keeps exactly its forced one.

# %% tags=["nbval-check-output"]
from ssdlib.viz.figures import fig_matching

fig_matching(0.5)

# %% [markdown]
# ## Encoding with variances
#
# A positive prior $d$ learns to move onto its ground truth $g$. The targets (paper eq. 2, with the
# "variances" $v_0 = 0.1$, $v_1 = 0.2$ of the Caffe implementation) are
#
# $$t_{cx} = \frac{g_{cx} - d_{cx}}{v_0\, d_w},\quad t_{cy} = \frac{g_{cy} - d_{cy}}{v_0\, d_h},\quad
# t_w = \frac{1}{v_1}\log\frac{g_w}{d_w},\quad t_h = \frac{1}{v_1}\log\frac{g_h}{d_h}.$$
#
# Offsets are measured in units of the prior's size (scale invariance) and sizes in log space;
# dividing by the variances scales the targets to roughly unit spread, which balances
# $L_{loc}$ against $L_{conf}$. A worked example:

# %% tags=["nbval-check-output"]
from ssdlib.boxes import decode, encode

d = torch.tensor([[0.50, 0.50, 0.30, 0.30]])     # prior: cx, cy, w, h
g = torch.tensor([[0.38, 0.30, 0.72, 0.62]])     # ground truth: x1, y1, x2, y2
g_cx, g_cy, g_w, g_h = 0.55, 0.46, 0.34, 0.32
by_hand = torch.tensor([[(g_cx - 0.5) / (0.1 * 0.3), (g_cy - 0.5) / (0.1 * 0.3),
                         torch.log(torch.tensor(g_w / 0.3)) / 0.2,
                         torch.log(torch.tensor(g_h / 0.3)) / 0.2]])
t = encode(g, d, variances=(0.1, 0.2))
print("encode:  ", [round(v, 4) for v in t[0].tolist()])
print("by hand: ", [round(v, 4) for v in by_hand[0].tolist()])
assert torch.allclose(t, by_hand, atol=1e-5)
print("decode(encode(g)) =", [round(v, 4) for v in decode(t, d)[0].tolist()])
assert torch.allclose(decode(t, d), g, atol=1e-6)

# %% tags=["nbval-check-output"]
from ssdlib.viz.figures import fig_encoding

fig_encoding()

# %% [markdown]
# The round trip holds for every matched prior of the image above (targets of all positives,
# decoded back):

# %% tags=["nbval-check-output"]
pos = labels > 0
targets = encode(matched[pos], priors[pos])
print(f"targets of {int(pos.sum())} positives: mean {[round(v, 2) for v in targets.mean(0).tolist()]}, "
      f"std {[round(v, 2) for v in targets.std(0).tolist()]}")
assert torch.allclose(decode(targets, priors[pos]), matched[pos], atol=1e-5)

# %% [markdown]
# ## Hard negative mining
#
# After matching, an image has a few dozen positives and ~8700 negatives. Training on all of them
# would teach the network mostly "background". SSD keeps, per image, the negatives with the
# **highest background loss** $-\log p_0$, three for each positive (3:1). Below, the background losses
# of an untrained light SSD on 8 Shapes images: grey are ignored, red are kept.

# %% tags=["nbval-check-output"]
from ssdlib.loss import hard_negative_mining
from ssdlib.viz.figures import background_losses, fig_hard_negatives

bg_loss, batch_labels = background_losses(batch_size=8, seed=0)
mask = hard_negative_mining(bg_loss, batch_labels, neg_pos_ratio=3)
num_pos = (batch_labels > 0).sum(dim=1)
num_neg = (mask & (batch_labels == 0)).sum(dim=1)
print("positives per image:", num_pos.tolist())
print("negatives kept:     ", num_neg.tolist())
assert torch.equal(num_neg, torch.minimum(3 * num_pos, (batch_labels == 0).sum(dim=1)))

# %% tags=["nbval-check-output"]
fig_hard_negatives()

# %% [markdown]
# The red and grey ranges overlap: some kept negatives have a *lower* loss than some ignored ones.
# That is because mining is **per image**: each image keeps its own 3 × (its positives) hardest
# negatives. An image with many positives reaches down to easy negatives, while an image with few
# positives ignores negatives that are harder than those — the histogram pools all 8 images.

# %% [markdown]
# ## The loss on a real batch
#
# $$L(x, c, l, g) = \frac{1}{N}\Big(L_{conf}(x, c) + \alpha\, L_{loc}(x, l, g)\Big),$$
#
# $N$ = number of positives in the batch, $L_{loc}$ = Smooth-L1 between predicted and target offsets
# over positives, $L_{conf}$ = cross-entropy over positives and mined negatives, $\alpha = 1$.
#
# The targets depend on the priors, which never change during training, so `MultiBoxLoss` is
# built once with the priors, the variances and the matching rule (IoU threshold 0.5, 3 negatives
# per positive). One call then takes the head's outputs and the ground-truth boxes: it matches
# (`match_batch`), encodes, and returns the two terms, both already divided by $N$.
# `loss_fn.targets` shows the matched labels and encoded targets it used.
#
# A batch of 8 augmented Shapes images through the light model of the `shapes` config:

# %% tags=["nbval-check-output"]
from ssdlib.data import build_train_transform, collate
from ssdlib.loss import MultiBoxLoss
from ssdlib.model import build_model

cfg = load_config("shapes")
torch.manual_seed(0)
model = build_model(cfg)
transform = build_train_transform(cfg.input.image_size, cfg.input.pixel_mean, cfg.input.pixel_std)
ds = ShapesDataset("train", 8, image_size=cfg.data.source_size, transform=transform)
images, targets = collate([ds[i] for i in range(8)])
gt_boxes, gt_labels = [t["boxes"] for t in targets], [t["labels"] for t in targets]
cls_logits, box_deltas = model(images)
loss_fn = MultiBoxLoss(model.priors, tuple(cfg.priors.variances), cfg.train.iou_threshold,
                       cfg.train.neg_pos_ratio)
loc_loss, cls_loss = loss_fn(cls_logits, box_deltas, gt_boxes, gt_labels)
labels_b, target_deltas = loss_fn.targets(gt_boxes, gt_labels)  # (B, P), (B, P, 4)
print(f"images {tuple(images.shape)}, logits {tuple(cls_logits.shape)}, "
      f"deltas {tuple(box_deltas.shape)}")
n_pos = int((labels_b > 0).sum())
print(f"positives: {n_pos}, loc loss {loc_loss.item():.3f}, "
      f"cls loss {cls_loss.item():.3f}, total {(loc_loss + cls_loss).item():.3f}")
print(f"cross-entropy per kept prior: {cls_loss.item() * n_pos / (4 * n_pos):.2f} "
      f"(uniform guesses over 6 classes would cost log 6 = {np.log(6):.2f})")

# %% [markdown]
# ### From scratch, checked against `MultiBoxLoss`
#
# Written with a per-image loop and a plain sort — slower, but every step visible:

# %% tags=["nbval-check-output"]
import torch.nn.functional as F


def multibox_loss_from_scratch(cls_logits, box_deltas, labels, target_deltas, neg_pos_ratio=3):
    loc, conf, n_pos = 0.0, 0.0, 0
    for b in range(labels.shape[0]):
        pos = labels[b] > 0
        ce = F.cross_entropy(cls_logits[b], labels[b], reduction="none")       # (P,)
        bg = -F.log_softmax(cls_logits[b], dim=-1)[:, 0]                         # rank negatives
        neg_idx = torch.nonzero(~pos).flatten()
        k = min(neg_pos_ratio * int(pos.sum()), len(neg_idx))
        hardest = neg_idx[torch.argsort(bg[neg_idx], descending=True, stable=True)[:k]]
        conf = conf + ce[pos].sum() + ce[hardest].sum()
        loc = loc + F.smooth_l1_loss(box_deltas[b][pos], target_deltas[b][pos], reduction="sum")
        n_pos += int(pos.sum())
    n = max(n_pos, 1)
    return loc / n, conf / n


ref_loc, ref_cls = multibox_loss_from_scratch(cls_logits, box_deltas, labels_b, target_deltas)
print(f"from scratch: loc {ref_loc.item():.3f}, cls {ref_cls.item():.3f}")
assert torch.allclose(ref_loc, loc_loss, rtol=1e-5) and torch.allclose(ref_cls, cls_loss, rtol=1e-5)

# %% [markdown]
# Each positive brings itself and three negatives into $L_{conf}$, so $L_{conf}/N$ is four times the
# mean cross-entropy of a kept prior. Random initial weights are not uniform guesses: their
# confident, wrong scores cost more than $\log 6$ per prior — the *hardest* negatives are exactly
# the confident mistakes. Training (notebook 04) drives both terms down.
#
# ## Summary
#
# - `match` gives every ground truth its best prior and every prior with IoU ≥ 0.5 its best ground
#   truth; the rest is background — a loop over the IoU matrix (the toy) does the same.
# - `encode` turns a matched box into $(t_{cx}, t_{cy}, t_w, t_h)$ relative to the prior, divided by
#   the variances (0.1, 0.2); `decode` inverts it exactly.
# - Hard negative mining keeps, per image, the 3 × #positives negatives with the highest
#   background loss.
# - `MultiBoxLoss(priors, variances, iou_threshold, neg_pos_ratio)` matches and encodes the ground
#   truth, then returns (Smooth-L1 on positives, cross-entropy on positives and mined negatives) / N.
# - Why priors and not predictions, why a background class, why mining and not the focal loss,
#   what the variances are for: the [FAQ](../README.md#faq).
#
# ## Exercises
#
# 1. With the image above, how many positives are there at IoU threshold 0.3 and at 0.7?
# 2. What targets does a prior get that is identical to its ground truth? And one twice as wide?
# 3. What does `MultiBoxLoss` return for a batch in which no image has an object, and why is that
#    important?
#
# <details><summary>Solution 1</summary>
#
# ```python
# for t in (0.3, 0.7):
#     lab, _ = match(gt, target["labels"], priors, t)
#     print(t, int((lab > 0).sum()))   # 0.3 239, 0.7 2
# ```
# **239** positives at 0.3 against 27 at 0.5: loose boxes become positives. **2** at 0.7: only the
# two forced matches: each object keeps only its best prior.
# </details>
#
# <details><summary>Solution 2</summary>
#
# Identical: all four targets are 0. Twice as wide as the ground truth:
# $t_w = \log(1/2)/0.2 \approx -3.47$, the others 0.
# </details>
#
# <details><summary>Solution 3</summary>
#
# Both terms are 0 (N is clamped to 1 and nothing is selected): no division by zero, so no NaN
# that would poison the weights — one of the classic SSD training failures.
#
# ```python
# no_boxes, no_labels = [torch.zeros(0, 4)] * 8, [torch.zeros(0, dtype=torch.int64)] * 8
# loss_fn(cls_logits, box_deltas, no_boxes, no_labels)  # (tensor(0., grad_fn=...), tensor(0., ...))
# ```
# </details>
