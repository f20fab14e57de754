# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
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
# # 05 · Evaluation: predict, NMS, VOC mAP, COCO AP and what goes wrong
#
# **What you will learn** (about 35 minutes; runs in about a minute on a CPU once notebook 04's
# model exists, 3 minutes otherwise)
#
# - **inference** with `SSD.predict`: softmax, decoding, score threshold, **non-maximum
#   suppression** (before/after, and the effect of its threshold), written from scratch and checked
#   against torchvision's `nms` that ssdlib uses;
# - **VOC AP**: the 2007 **11-point** metric versus the **area** metric, on a worked example and on
#   the model;
# - **COCO AP** @[.5:.95] with `ssdlib.metrics.coco` on the Shapes COCO json;
# - **PR curves** and the **per-class** table;
# - **error analysis**: false positives by type (localisation, confusion, background) and missed
#   objects by size — SSD's weak spot, small objects.
#
# Library functions used: `SSD.predict`, `ssdlib.postprocess.detect`, `ssdlib.engine.evaluate`,
# `ssdlib.metrics.curves.precision_recall`, `ap_11_point`, `ap_area`, `ssdlib.metrics.voc.evaluate`,
# `format_table`, `ssdlib.metrics.coco.run_cocoeval`, `per_category_ap`,
# `ssdlib.viz.pr_curves.plot_pr_curves`, `ssdlib.viz.draw.draw_detections`.
#
# On a CPU it evaluates a small Shapes model; with VOC under `$SSDLIB_DATA` and a trained VOC
# checkpoint in `outputs/ssd300_voc` (from `python -m ssdlib train --config ssd300_voc`) it
# evaluates that one on VOC2007 test instead.

# %% tags=["nbval-check-output"]
# Colab only: install the ssdlib package (Colab's own torch, torchvision and ipywidgets stay as
# they are) and report the GPU. Elsewhere this cell does nothing: the notebooks use the ssdlib
# installed beside them (`make lab` in a checkout).
import os
import subprocess
import sys

SSDLIB_SOURCE = "git+https://github.com/ssdlib/ssdlib"  # = [project.urls] Repository in pyproject.toml
if "google.colab" in sys.modules:
    source = os.environ.get("SSDLIB_SOURCE", SSDLIB_SOURCE)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"ssdlib @ {source}"],
                          capture_output=True, text=True)
    if done.returncode:
        print(f"could not install ssdlib from {source}: "
              f"{(done.stderr.strip().splitlines() or ['pip failed'])[-1]}")
    else:
        print(f"installed ssdlib from {source}")
    subprocess.run(["nvidia-smi", "-L"], check=False)  # which GPU Colab gave us, if any
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
# ## The model
#
# The light SSD trained on Shapes in notebook 04: only 120 iterations of batch 16, so a **weak**
# detector — enough to run every step of this notebook, not to show good numbers. If it is not in
# `outputs/notebooks/shapes_quick` yet, the next cell trains it (about 2 minutes on a 2-core CPU).
# `make demo` trains the same model properly (5,200 iterations of batch 32) into `outputs/demo/train`:
# set `USE_DEMO_MODEL = True` to use that one (the numbers below then change).

# %% tags=["nbval-ignore-output"]
# (not compared: paths, and whether it had to train)
from ssdlib.config import load_config
from ssdlib.engine import latest_checkpoint, load_checkpoint, load_model, train

USE_DEMO_MODEL = False
QUICK_DIR = OUTPUTS / "notebooks" / "shapes_quick"
cfg = load_config("shapes", ["train.batch_size=16", "train.max_iter=120", "train.lr_steps=[80,105]", "train.warmup_iters=20", "train.amp=off"])
if device.type == "cpu":  # one core per DataLoader worker, the rest for the convolutions
    torch.set_num_threads(max(1, (os.cpu_count() or 1) - cfg.data.num_workers))
demo_ckpt = latest_checkpoint(OUTPUTS / "demo" / "train")
if USE_DEMO_MODEL and demo_ckpt is not None:
    cfg, ckpt = load_config("shapes"), demo_ckpt
else:
    ckpt = latest_checkpoint(QUICK_DIR)
    if ckpt is None or load_checkpoint(ckpt)["iteration"] < cfg.train.max_iter:
        print("training the quick Shapes model (120 iterations of batch 16) ...")
        train(cfg, QUICK_DIR, progress=False)
        ckpt = latest_checkpoint(QUICK_DIR)
model = load_model(cfg, ckpt, device)
# The quick model's class scores stay low (mostly 0.05-0.25): pictures and error counts use a
# lower score threshold for it than the usual 0.5.
SCORE = 0.5 if USE_DEMO_MODEL else 0.1
print(f"model from {ckpt}")
if demo_ckpt is not None and not USE_DEMO_MODEL:
    print(f"(a make-demo model is available: {demo_ckpt})")

# %% tags=["nbval-check-output"]
print(f"{cfg.model.name}, {model.num_classes} classes {cfg.data.class_names}, "
      f"trained {load_checkpoint(ckpt)['iteration']} iterations, input {cfg.input.image_size} px, "
      f"{len(model.priors)} priors; score threshold for pictures: {SCORE}")

# %% [markdown]
# ## The test set
#
# 200 Shapes test images written to disk in VOC and COCO layout (the COCO json is what the COCO
# metric reads). `build_test_data` returns the dataset with the test transform (resize +
# normalise) and what the COCO metric needs.

# %% tags=["nbval-check-output"]
import matplotlib.pyplot as plt

from ssdlib.engine.datasets import build_test_data

VOC_RUN = OUTPUTS / "ssd300_voc"
if HAVE_VOC and latest_checkpoint(VOC_RUN) is not None:
    cfg = load_config("ssd300_voc")
    model = load_model(cfg, latest_checkpoint(VOC_RUN), device)
    eval_cfg = cfg
    print("evaluating the VOC model of", VOC_RUN, "on VOC2007 test")
else:
    eval_cfg = load_config("shapes", ["data.num_train=0", "data.num_test=200",
                                      f"data.root={OUTPUTS / 'notebooks' / 'data'}"])
    print("evaluating the Shapes model on 200 Shapes test images")
data = build_test_data(eval_cfg, progress=False)
names = list(data.class_names)
print(f"{len(data.dataset)} images, classes {names}")

# %% [markdown]
# ## From network outputs to detections
#
# `model(images)` gives, for each of the P priors, $K = C + 1$ class logits and 4 offsets.
# `predict` = forward + `ssdlib.postprocess.detect`:
#
# 1. softmax over the $K$ classes; `decode` the offsets against the priors (notebook 03);
# 2. per class, keep the candidates with probability above `score_threshold` (0.01 for evaluation:
#    low-score detections still add recall at the end of the PR curve);
# 3. class-wise **non-maximum suppression**: among boxes of one class overlapping with IoU above
#    `nms_threshold` (0.45), keep the highest score;
# 4. the `max_per_image` (100; 200 in the paper) best over all classes.
#
# Boxes come back relative to the input; `Detections.scaled(w, h)` puts them in image pixels.

# %% tags=["nbval-check-output"]
from ssdlib.data import load_image

k = 3
image, target = data.dataset[k]
original = load_image(data.dataset.image_path(k))
h, w = original.shape[-2:]
det = model.predict(image[None].to(device))[0].scaled(w, h)
print(f"input {tuple(image.shape)}, original {w}x{h}, {len(target['labels'])} objects")
print(f"{len(det)} detections above {model.postprocess['score_threshold']}; the 5 best:")
for b, s, l in zip(det.boxes[:5].tolist(), det.scores[:5].tolist(), det.labels[:5].tolist()):
    print(f"  {names[l - 1]:8s} {s:.3f}  [{', '.join(f'{v:.0f}' for v in b)}]")

# %% [markdown]
# ### Non-maximum suppression
#
# Neighbouring priors that matched the same object during training all learn to fire on it. NMS
# keeps one: sort by score, keep the best box, drop every box of the same class whose IoU with it
# exceeds the threshold, repeat. From scratch, checked against `torchvision.ops.nms` (which
# ssdlib's `detect` calls, class by class, through `batched_nms`):

# %% tags=["nbval-check-output"]
from torchvision.ops import nms

from ssdlib.boxes import box_iou


def nms_from_scratch(boxes, scores, iou_threshold):
    order = scores.argsort(descending=True)
    keep = []
    while order.numel() > 0:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        order = rest[box_iou(boxes[best][None], boxes[rest])[0] <= iou_threshold]
    return torch.tensor(keep, dtype=torch.int64)


raw = model.predict(image[None].to(device), nms_threshold=1.0, score_threshold=SCORE / 2,
                    max_per_image=10_000)[0].scaled(w, h)          # IoU > 1 never happens: no NMS
for label in raw.labels.unique().tolist():
    sel = raw.labels == label
    ours = nms_from_scratch(raw.boxes[sel], raw.scores[sel], 0.45)
    ref = nms(raw.boxes[sel], raw.scores[sel], 0.45)
    assert torch.equal(ours, ref)
    print(f"{names[label - 1]:8s}: {int(sel.sum()):3d} candidates above {SCORE / 2} -> {len(ours)} after NMS")

# %% tags=["nbval-check-output"]
from ssdlib.viz.draw import draw_detections

after = model.predict(image[None].to(device), score_threshold=SCORE / 2)[0].scaled(w, h)
fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
axes[0].imshow(draw_detections(original, target["boxes"] * torch.tensor([w, h, w, h]),
                               target["labels"], None, names))
axes[0].set_title("ground truth")
axes[1].imshow(draw_detections(original, raw.boxes, raw.labels, None, names, width=1))
axes[1].set_title(f"before NMS: {len(raw)} boxes (score > {SCORE / 2})")
axes[2].imshow(draw_detections(original, after.boxes, after.labels, after.scores, names))
axes[2].set_title(f"after NMS 0.45: {len(after)} boxes")
for ax in axes:
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# The threshold trades duplicates against recall: too low and two overlapping objects of the same
# class suppress each other; too high and duplicates survive, each one a false positive (the weak
# quick model barely reacts; repeat the sweep with the `make demo` model). To sweep it
# over the whole test set we run the network **once** and only repeat the post-processing:

# %% tags=["nbval-ignore-output"]
# (not compared: progress bar)
from torch.utils.data import DataLoader

from ssdlib.data import collate
from ssdlib.engine import evaluate

ev = evaluate(model, data.dataset, eval_cfg.test.batch_size, device, ("voc", "coco") if data.gt_json else ("voc",),
              names, True, data.gt_json, data.coco_image_ids, data.label_to_cat_id)
outputs, sizes = [], []
with torch.inference_mode():
    for images, targets in DataLoader(data.dataset, eval_cfg.test.batch_size, collate_fn=collate):
        outputs.append([t.cpu() for t in model(images.to(device))])
        sizes += [tuple(int(v) for v in t["orig_size"]) for t in targets]
cls_all = torch.cat([o[0] for o in outputs])
deltas_all = torch.cat([o[1] for o in outputs])
print(cls_all.shape, deltas_all.shape)

# %% tags=["nbval-check-output"]
from ssdlib.metrics import voc as voc_metric
from ssdlib.postprocess import detect


def detections_with(**overrides):
    dets = detect(cls_all, deltas_all, model.priors.cpu(), variances=model.variances,
                  **{**model.postprocess, **overrides})
    return [d.scaled(wi, hi).to_dict() for d, (hi, wi) in zip(dets, sizes)]


print("NMS threshold   detections/image   VOC07 mAP")
for t in (0.2, 0.3, 0.45, 0.6, 0.8, 1.0):
    dets = detections_with(nms_threshold=t)
    result = voc_metric.evaluate(ev.ground_truths, dets)
    print(f"    {t:4.2f}          {np.mean([len(d['scores']) for d in dets]):6.1f}          "
          f"{result['map']:.3f}")
same = voc_metric.evaluate(ev.ground_truths, detections_with())["map"]
assert abs(same - ev.voc["map"]) < 1e-6, "one forward + detect == evaluate"

# %% [markdown]
# ## VOC AP: 11-point and area
#
# Sort all detections of a class by score. Walking down the list, each detection is a true positive
# (TP) if its IoU with a not yet detected ground truth of its class is **above 0.5**, otherwise a
# false positive (FP). After $n$ detections:
#
# $$\text{precision}(n) = \frac{TP(n)}{n},\qquad \text{recall}(n) = \frac{TP(n)}{\#\text{ground truths}}.$$
#
# **VOC2007 (11-point)**, the metric of the SSD paper's VOC tables: average, over
# $t \in \{0, 0.1, \dots, 1\}$, of the best precision at recall $\ge t$:
# $\quad AP_{11} = \frac{1}{11}\sum_t \max_{r \ge t} p(r)$.
#
# **VOC2010+ (area)**: the area under the precision envelope $\hat p(r) = \max_{r' \ge r} p(r')$,
# $\quad AP = \sum_i (r_{i+1} - r_i)\, \hat p(r_{i+1})$.
#
# A worked example: 5 objects, 8 detections in score order, TP = 1 1 0 1 0 1 0 0.

# %% tags=["nbval-check-output"]
from ssdlib.metrics.curves import ap_11_point, ap_area, precision_recall

tp = np.array([1, 1, 0, 1, 0, 1, 0, 0])
precision, recall = precision_recall(tp, 1 - tp, num_positives=5)
print("recall:   ", np.round(recall, 3).tolist())
print("precision:", np.round(precision, 3).tolist())
# By hand: best precision at recall >= 0, .1, .2, .3, .4 -> 1; .5, .6 -> 3/4; .7, .8 -> 4/6;
# .9, 1 -> none (0). Area: recall steps of 0.2 at envelope precision 1, 1, 3/4, 4/6.
by_hand_11 = (5 * 1 + 2 * 3 / 4 + 2 * 4 / 6 + 2 * 0) / 11
by_hand_area = 0.2 * (1 + 1 + 3 / 4 + 4 / 6)
print(f"11-point AP {ap_11_point(recall, precision):.4f} (by hand {by_hand_11:.4f})")
print(f"area AP     {ap_area(recall, precision):.4f} (by hand {by_hand_area:.4f})")
assert np.isclose(ap_area(recall, precision), by_hand_area)

# %% [markdown]
# The 11-point values differ: the devkit takes its thresholds from `np.arange(0, 1.1, 0.1)`, whose
# 7th value is `0.6000000000000001`, and a recall of exactly 3/5 = 0.6 is *not* ≥ that. So at
# "t = 0.6" only the points with recall 0.8 count (best precision 4/6, not 3/4):

# %% tags=["nbval-check-output"]
t = np.arange(0.0, 1.1, 0.1)
print(repr(t[6]), "| recall 3/5 >= t[6]:", 3 / 5 >= t[6])
corrected = (5 * 1 + 1 * 3 / 4 + 3 * 4 / 6) / 11
print(f"with that threshold: {corrected:.4f}")
assert np.isclose(ap_11_point(recall, precision), corrected)

# %% [markdown]
# ssdlib reproduces the devkit bit for bit, quirks included, so its VOC07 numbers are comparable
# with published ones.

# %% tags=["nbval-check-output"]
env = np.maximum.accumulate(precision[::-1])[::-1]
fig, ax = plt.subplots(figsize=(5.5, 3.8))
ax.plot(recall, precision, "o-", color="tab:gray", label="precision")
ax.fill_between(np.r_[0, recall], np.r_[env[0], env], step="pre", alpha=0.2, label="area AP")
ts = np.linspace(0, 1, 11)
ax.plot(ts, [precision[recall >= t].max() if (recall >= t).any() else 0 for t in ts], "r*",
        ms=10, label="the 11 points")
ax.set(xlabel="recall", ylabel="precision", xlim=(-0.02, 1.02), ylim=(0, 1.05))
ax.legend(loc="lower left")
plt.show()

# %% [markdown]
# The 11-point metric rewards the plateau before each recall point and ignores what happens
# between them; it is usually **higher** than the area metric for the same detections. Always say
# which one you report: SSD300's 77.2 (paper) and lufficc's 77.7 are VOC2007 11-point numbers.
# On our model:

# %% tags=["nbval-check-output"]
area = voc_metric.evaluate(ev.ground_truths, ev.detections, use_07_metric=False)
print(f"VOC07 11-point mAP@0.5: {ev.voc['map']:.4f}")
print(f"area mAP@0.5:           {area['map']:.4f}")

# %% [markdown]
# ## Per class, and the PR curves
#
# `format_table` prints AP, the number of (non-difficult) ground truths and of detections per class;
# `plot_pr_curves` draws the interpolated curves the area AP integrates.

# %% tags=["nbval-check-output"]
from ssdlib.metrics.voc import format_table

print(format_table(ev.voc, names))

# %% tags=["nbval-check-output"]
from ssdlib.viz.pr_curves import plot_pr_curves

fig, ax = plt.subplots(figsize=(6, 5))
plot_pr_curves(ev.voc, names, ax=ax)
plt.show()

# %% [markdown]
# ## COCO AP
#
# COCO averages AP over **10 IoU thresholds** 0.50, 0.55, …, 0.95 (101 recall points, area-style),
# so it also rewards *precise* boxes; it reports AP by object size (small < 32², medium < 96²,
# large, in pixels of area) and the average recall AR with 1, 10, 100 detections per image. For
# reference, SSD300 reaches 25.1 AP on COCO (paper and torchvision), SSD512 28.8 (paper).
# `evaluate` above already ran the official `COCOeval` (pycocotools) on the Shapes json;
# `run_cocoeval` gives the full object for per-category numbers:

# %% tags=["nbval-check-output"]
from ssdlib.metrics import coco as coco_metric

if data.gt_json is not None:
    for group in (("AP", "AP50", "AP75"), ("APs", "APm", "APl"), ("AR1", "AR10", "AR100")):
        print("   ".join(f"{name:5s} {ev.coco[name]:6.3f}" for name in group))
    ids = [data.coco_image_ids[i] if data.coco_image_ids else int(i) for i in ev.image_ids]
    results = coco_metric.detections_to_coco_results(ids, ev.detections, data.label_to_cat_id)
    coco_eval = coco_metric.run_cocoeval(data.gt_json, results)
    per_cat = coco_metric.per_category_ap(coco_eval)
    cat_to_label = {c: lab for lab, c in data.label_to_cat_id.items()}
    print(f"\n{'class':8s}  VOC07 AP@.5   COCO AP@[.5:.95]")
    for cat, ap in per_cat.items():
        label = cat_to_label[cat]
        print(f"{names[label - 1]:8s}    {ev.voc['ap'][label]:.3f}          {ap:.3f}")
else:
    print("this test set has no COCO json (VOC): COCO AP needs one")

# %% [markdown]
# The gap between AP@.5 and AP@[.5:.95] measures localisation quality: boxes that overlap enough
# to count at 0.5 but not at 0.75.
#
# ## Error analysis
#
# Which mistakes cost AP? Following Hoiem et al. (*Diagnosing error in object detectors*, 2012),
# used in the SSD paper's figure 3, every confident detection (score ≥ `SCORE`: 0.5 for a
# trained model, 0.1 for the weak quick one) is one of
#
# - **correct**: IoU ≥ 0.5 with an object of its class not yet detected;
# - **localisation**: right class, but IoU in [0.1, 0.5) — or a duplicate of a detected object;
# - **confusion**: IoU ≥ 0.1 only with an object of *another* class;
# - **background**: IoU < 0.1 with every object.

# %% tags=["nbval-check-output"]
from collections import Counter


def error_types(det, gt, score_min=SCORE):
    keep = det["scores"] >= score_min
    boxes, labels = det["boxes"][keep], det["labels"][keep]        # already in score order
    if len(gt["labels"]) == 0:
        return ["background"] * len(labels)
    iou = box_iou(boxes, gt["boxes"])                               # (D, G)
    same = labels[:, None] == gt["labels"][None, :]
    taken, kinds = set(), []
    for d in range(len(labels)):
        same_iou = torch.where(same[d], iou[d], torch.zeros_like(iou[d]))
        g = int(same_iou.argmax())
        if same_iou[g] >= 0.5 and g not in taken:
            taken.add(g)
            kinds.append("correct")
        elif same_iou.max() >= 0.1:
            kinds.append("localisation")
        elif iou[d].max() >= 0.1:
            kinds.append("confusion")
        else:
            kinds.append("background")
    return kinds


counts = Counter(k for d, g in zip(ev.detections, ev.ground_truths) for k in error_types(d, g))
total = max(1, sum(counts.values()))
for kind in ("correct", "localisation", "confusion", "background"):
    print(f"{kind:12s} {counts[kind]:5d}  ({counts[kind] / total:.1%})")

# %% [markdown]
# For a trained SSD300 on VOC, the paper (figure 3) finds most confident false positives are
# **localisation** errors and **confusions with similar classes** (cat/dog, cow/sheep), fewer
# background ones — the multi-scale default boxes and the 3:1 hard negatives handle background
# well.
#
# **Missed objects by size.** An object is *found* if a detection of its class with score ≥ `SCORE` has
# IoU ≥ 0.5 with it. Recall by object size (square root of the box area, in pixels):

# %% tags=["nbval-check-output"]
bins = [0, 16, 32, 64, 128, 10_000]
found, sizes_px = [], []
for d, g in zip(ev.detections, ev.ground_truths):
    ok = ~g["difficult"]
    gb, gl = g["boxes"][ok], g["labels"][ok]
    keep = d["scores"] >= SCORE
    iou = box_iou(gb, d["boxes"][keep]) if keep.any() else torch.zeros(len(gb), 0)
    hit = ((iou >= 0.5) & (gl[:, None] == d["labels"][keep][None, :])).any(dim=1)
    found += hit.tolist()
    sizes_px += ((gb[:, 2] - gb[:, 0]) * (gb[:, 3] - gb[:, 1])).clamp(min=0).sqrt().tolist()
found, sizes_px = np.array(found), np.array(sizes_px)
which = np.digitize(sizes_px, bins) - 1
print("object size (px)   objects   recall")
recalls = []
for b in range(len(bins) - 1):
    n = int((which == b).sum())
    r = found[which == b].mean() if n else float("nan")
    recalls.append(r)
    print(f"  {bins[b]:4d} - {bins[b + 1] if b < len(bins) - 2 else '':<4}       {n:5d}    "
          f"{r:.2f}" if n else f"  {bins[b]:4d} -            0")

# %% tags=["nbval-check-output"]
fig, ax = plt.subplots(figsize=(6, 3))
labels_ = [f"{bins[b]}-{bins[b + 1]}" if b < len(bins) - 2 else f">{bins[b]}" for b in range(len(bins) - 1)]
ax.bar(labels_, np.nan_to_num(recalls), color="tab:blue")
ax.set(xlabel="object size (sqrt of area, px)", ylabel=f"recall at score {SCORE}", ylim=(0, 1))
ax.grid(alpha=0.3, axis="y")
plt.show()

# %% [markdown]
# **Reading these numbers.** The quick model of notebook 04 (120 small iterations) is still at the
# stage where it scores every prior low: almost all of its confident detections are background
# errors and it finds almost nothing, whatever the size — a useful baseline for what an
# untrained detector looks like. Run `make demo` (5,200 iterations) and set `USE_DEMO_MODEL = True`
# at the top to see a trained model's profile: confusions and localisation errors take over from
# background errors, and recall grows with object size.
#
# Small objects are SSD's known weak spot: in the 160 px input of the light model a 16 px object
# becomes 10 px, close to the smallest default box (8 px, on the 20 × 20 map) and seen only by the
# shallow stride-8 layer. SSD300 has the same problem on VOC — its smallest boxes are 30 px on
# conv4_3 — which is why the paper adds the "zoom out" expansion augmentation (SSD300 74.3 →
# SSD300* 77.2 mAP, mostly from small objects) and why SSD512 (input 512: 76.8 / 79.8*) helps
# most on small objects.
#
# ## Summary
#
# - `predict` = forward + softmax + `decode` + per-class score threshold + class-wise NMS + top-k.
# - NMS keeps the best box among same-class boxes with IoU above the threshold (0.45); lower merges
#   neighbouring objects, higher leaves duplicates (false positives).
# - VOC AP: TP if IoU > 0.5 with an undetected object; 11-point (VOC2007, the paper's tables) vs area
#   (VOC2010+) — say which one you report.
# - COCO AP averages over IoU 0.5…0.95 and reports by size; SSD300 25.1, SSD512 28.8 on COCO.
# - Error analysis: classify confident false positives (localisation / confusion / background) and
#   look at recall by object size — small objects are SSD's weak spot.
#
# ## Exercises
#
# 1. Compute the VOC07 mAP with `score_threshold=0.3` instead of 0.01. Why does it drop?
# 2. In the worked example, what are the two APs if the last detection is a TP as well?
# 3. Count the missed objects that were detected with the wrong class (IoU ≥ 0.5, other label).
# 4. Evaluate at IoU 0.75 with `voc_metric.evaluate(..., iou_threshold=0.75)` and compare with
#    COCO's AP75.
#
# <details><summary>Solution 1</summary>
#
# ```python
# voc_metric.evaluate(ev.ground_truths, detections_with(score_threshold=0.3))["map"]
# ```
# The low-score detections are at the end of the ranking: they cannot lower precision at the recall
# already reached, but they add the last bits of recall, so cutting them only removes area.
# </details>
#
# <details><summary>Solution 2</summary>
#
# ```python
# tp2 = np.array([1, 1, 0, 1, 0, 1, 0, 1])
# p, r = precision_recall(tp2, 1 - tp2, 5)
# ap_11_point(r, p), ap_area(r, p)        # recall 1.0 reached at precision 5/8
# ```
# 11-point: 0.818 (the points at $t = 0.9$ and $1$ now get precision 5/8); area: $0.683 + 0.2 \cdot 0.625 = 0.808$.
# </details>
#
# <details><summary>Solution 3</summary>
#
# ```python
# n = 0
# for d, g in zip(ev.detections, ev.ground_truths):
#     keep = d["scores"] >= 0.5
#     if keep.any() and len(g["labels"]):
#         iou = box_iou(g["boxes"], d["boxes"][keep])
#         wrong = (iou >= 0.5) & (g["labels"][:, None] != d["labels"][keep][None, :])
#         n += int(wrong.any(dim=1).sum())
# n
# ```
# </details>
#
# <details><summary>Solution 4</summary>
#
# ```python
# voc_metric.evaluate(ev.ground_truths, ev.detections, iou_threshold=0.75, use_07_metric=False)["map"]
# ```
# Close to COCO's AP75 but not equal: COCO interpolates over 101 recall points, matches at ≥ (not >)
# the threshold, and has no "+1 pixel" in its IoU.
# </details>
