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
# # 01 · Default boxes (priors)
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# [colab]: https://colab.research.google.com/github/ssdlib/ssdlib/blob/main/notebooks/01_priors.ipynb
#
# **What you will learn** (about 20 minutes; the notebook runs in under a minute on a laptop CPU)
#
# - where SSD's **8732** default boxes come from: 6 feature maps × locations × shapes;
# - the paper's **scale formula** and how the shipped configs deviate from it;
# - aspect ratios and the extra box $s'_k$;
# - how to look at any box with the **anchor explorer** widget, and which objects of a dataset
#   no box fits;
# - why COCO uses smaller boxes, and how SSD512 gets **24564** boxes.
#
# Library functions used: `ssdlib.priors.generate_priors`, `location_priors`, `boxes_per_location`,
# `priors_per_map`, `ssdlib.viz.anchors.paper_scales`, `priors_at`, `prior_index`,
# `ssdlib.viz.anchor_explorer.AnchorExplorer`, `ssdlib.anchors.coverage.dataset_objects`.

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

import torch

from ssdlib.course import setup_notebook

# %matplotlib inline
# JPEG keeps the notebooks small on GitHub (the Shapes textures compress badly as PNG).
# %config InlineBackend.figure_formats = ["jpeg"]
paths, device = setup_notebook(seed=0)
DATA, OUTPUTS, HAVE_VOC = paths.data, paths.outputs, paths.have_voc

# %% [markdown]
# ## Why default boxes?
#
# A detector must say *where* objects are. SSD does it in one forward pass: at every cell of
# several feature maps it predicts, for each of a few fixed **default boxes**, a class score and a
# small correction of the box. The default boxes are the "questions" the network answers. Fewer,
# better-placed boxes make a fast detector. The paper's speed table (Liu et al., ECCV 2016,
# table 7: VOC2007 test, one Titan X):
#
# | system | boxes | input | VOC07 mAP | FPS, batch 1 | FPS, batch 8 |
# |---|---|---|---|---|---|
# | Faster R-CNN (VGG16) | ~6000 | ~1000×600 | 73.2 | 7 | – |
# | Fast YOLO | 98 | 448×448 | 52.7 | 155 | – |
# | YOLO (VGG16) | 98 | 448×448 | 66.4 | 21 | – |
# | SSD300 | **8732** | 300×300 | 74.3 | 46 | 59 |
# | SSD512 | **24564** | 512×512 | 76.8 | 19 | 22 |
#
# The abstract's "74.3 % mAP at 59 FPS" is the batch-8 row (for SSD512 the abstract says 76.9 %).
# The same two networks trained with the "zoom out" augmentation of notebook 00 reach **77.2**
# (SSD300\*) and **79.8** (SSD512\*) mAP (section 3.6, table 6; table 7 times no starred model,
# but the networks are unchanged). YOLO's own paper (Redmon et al., CVPR 2016, table 1) gives its
# original network 63.4 mAP at 45 FPS — another network than table 7's YOLO (VGG16).

# %% [markdown]
# ## Scales: the formula
#
# With $m$ feature maps, the paper gives map $k$ the scale (a fraction of the image side)
#
# $$s_k = s_{\min} + \frac{s_{\max} - s_{\min}}{m - 1}\,(k - 1), \qquad k = 1..m,\quad
# s_{\min}=0.2,\ s_{\max}=0.9.$$
#
# `paper_scales` is exactly this formula:

# %% tags=["nbval-check-output"]
from ssdlib.config import load_config
from ssdlib.viz.anchors import paper_scales

cfg = load_config("ssd300_voc")
p = cfg.priors
rule_px = [round(s * p.image_size, 1) for s in paper_scales(6)]
print("formula, pixels:      ", rule_px)
print("ssd300_voc min_sizes: ", p.min_sizes)
print("ssd300_voc max_sizes: ", p.max_sizes)

# %% [markdown]
# The configs do **not** follow the formula literally. Like the authors' Caffe code (and lufficc/SSD,
# amdegroot/ssd.pytorch), they give conv4_3 a smaller scale of 0.1 (30 px: small objects matter)
# and spread the remaining five maps from 0.2 to 0.9 in integer percent steps
# $\lfloor (90-20)/(6-2) \rfloor = 17$: 20, 37, 54, 71, 88 %. Each map's `max_size` is the next
# map's `min_size`:

# %% tags=["nbval-check-output"]
step = (90 - 20) // (6 - 2)
caffe = [10] + [20 + step * k for k in range(5)]          # percent of the image side
print("Caffe rule, px:", [300 * s // 100 for s in caffe])
assert [300 * s // 100 for s in caffe] == [int(v) for v in p.min_sizes]
assert p.max_sizes[:-1] == p.min_sizes[1:]

# %% tags=["nbval-check-output"]
from ssdlib.viz.figures import fig_scales

fig_scales()

# %% [markdown]
# ## Shapes: aspect ratios and the extra box
#
# At scale $s_k$ and aspect ratio $a_r \in \{1, 2, 3, \tfrac12, \tfrac13\}$ a default box has
#
# $$w = s_k\sqrt{a_r}, \qquad h = s_k / \sqrt{a_r},$$
#
# plus, for $a_r = 1$, an extra square of side $s'_k = \sqrt{s_k\, s_{k+1}}$. A map configured with
# ratios `[2]` has 4 boxes per location (1, 1', 2, 1/2), one with `[2, 3]` has 6.
# `location_priors` returns the boxes of one location as (cx, cy, w, h), relative to the image:

# %% tags=["nbval-check-output"]
from ssdlib.priors import boxes_per_location, location_priors

boxes = location_priors(0.5, 0.5, 111, 162, [2, 3], 300)   # map 2 of SSD300, image centre
for (_cx, _cy, w, h), name in zip(boxes, ["1", "1' (extra)", "2", "1/2", "3", "1/3"]):
    print(f"ratio {name:>10}: w = {w * 300:6.1f} px, h = {h * 300:6.1f} px")
print("boxes per location, per map:", boxes_per_location(p.aspect_ratios))

# %% [markdown]
# ## Counting: 8732
#
# Map $k$ of size $f_k \times f_k$ with $n_k$ boxes per location contributes $f_k^2 n_k$ boxes:
#
# $$38^2\cdot4 + 19^2\cdot6 + 10^2\cdot6 + 5^2\cdot6 + 3^2\cdot4 + 1^2\cdot4
# = 5776+2166+600+150+36+4 = 8732.$$

# %% tags=["nbval-check-output"]
from ssdlib.priors import generate_priors, priors_per_map

counts = priors_per_map(p)
print(" + ".join(map(str, counts)), "=", sum(counts))
priors = generate_priors(p)
print("generate_priors:", tuple(priors.shape), priors.dtype)
assert sum(counts) == priors.shape[0] == 8732


# %% [markdown]
# ### From scratch, then checked against ssdlib
#
# The whole generator is four loops. Location $(i, j)$ of map $k$ is centred at
# $\big((j + 0.5)/\tfrac{S}{\text{stride}_k},\ (i + 0.5)/\tfrac{S}{\text{stride}_k}\big)$, and the order is
# map, row, column, box — the order in which the network's heads emit their predictions
# (notebook 02).

# %% tags=["nbval-check-output"]
def priors_from_scratch(p):
    boxes = []
    for k, f in enumerate(p.feature_maps):
        scale = p.image_size / p.strides[k]
        for i in range(f):
            for j in range(f):
                boxes += location_priors((j + 0.5) / scale, (i + 0.5) / scale, p.min_sizes[k],
                                         p.max_sizes[k], p.aspect_ratios[k], p.image_size)
    return torch.tensor(boxes, dtype=torch.float64).float().clamp(0, 1)  # clip=True


assert torch.equal(priors_from_scratch(p), generate_priors(p))
print("from-scratch priors == generate_priors: True")

# %% [markdown]
# `clip: true` clamps (cx, cy, w, h) to [0, 1] — the rule of the reference implementations, which
# clamps the centre form, not the corners. What changes is surprising:

# %% tags=["nbval-check-output"]
unclipped = generate_priors(load_config("ssd300_voc", ["priors.clip=false"]).priors)
changed = (unclipped != priors).any(dim=1)
per_map = [int(c.sum()) for c in changed.split(counts)]
print(f"{int(changed.sum())} of {len(priors)} priors change when clipped; per map: {per_map}")
print(f"largest unclipped width {unclipped[:, 2].max():.3f}, largest centre x "
      f"{unclipped[:, 0].max():.4f}")

# %% [markdown]
# Two kinds of priors change. On the 3×3 and 1×1 maps, the ratio-2 and ratio-½ boxes are wider
# or taller than the image (ratio 2 of 213 px is 301 px wide) and get w = 1 or h = 1: 2 per
# location, 18 + 2 = 20 boxes. On the 10×10 map the configured stride 32 makes a grid of
# 10 × 32 = 320 px for a 300 px image: the centres of the last row and the last column sit at
# 9.5 · 32 / 300 = 1.013, *outside* the image, and clipping pulls them back to 1.0 — 19 locations
# × 6 boxes = 114 (a peculiarity every SSD300 implementation shares; it is what the trained
# weights expect).

# %% [markdown]
# ## Every map, drawn
#
# One panel per feature map: its grid of locations (each cell is one location) and the default
# boxes of the centre location. Small boxes on the fine 38×38 map, boxes covering the whole image
# on the 1×1 map.

# %% tags=["nbval-check-output"]
from ssdlib.viz.figures import fig_priors_per_map

fig_priors_per_map("ssd300_voc")

# %% [markdown]
# ## The anchor explorer
#
# Pick a map and a location with the sliders, change the sizes and the ratios of that map, or
# switch to **matching** to see which priors a ground-truth box gets at a chosen IoU threshold
# (and their encoded targets; notebook 03 explains both). The line under the pictures says what
# is drawn.
#
# The second picture is a **dataset overlay**: the objects of 100 Shapes test images, rendered at
# 300 px, as points in the (width, height) plane, over the shapes of the priors (crosses, one
# colour per map, the chosen map's bold). Red points are the objects whose best IoU with any
# prior stays below `train.iou_threshold` (0.5): they get only the forced best-prior match in
# training. The best IoUs come from `ssdlib.anchors.coverage`, the code behind
# `python -m ssdlib anchors analyze` (notebook 07), and follow the controls: change a map's sizes
# or ratios and the overlay is recomputed.

# %% tags=["nbval-ignore-output"]
from ssdlib.anchors.coverage import dataset_objects
from ssdlib.data import ShapesDataset
from ssdlib.viz.anchor_explorer import AnchorExplorer

image, target = ShapesDataset("test", 8, image_size=300)[7]
objects = dataset_objects(ShapesDataset("test", 100, image_size=300))  # (G_i, 4) relative xyxy
explorer = AnchorExplorer(p, image, gt_boxes=target["boxes"] / 300, objects=objects,
                          iou_threshold=cfg.train.iou_threshold)
explorer

# %% tags=["nbval-check-output"]
# What the explorer shows right now (re-run this cell after moving a slider).
print(explorer.state["text"])

# %% [markdown]
# The last line counts the overlay's red points: with SSD300's priors, 50 of the 332 Shapes
# objects have no prior at IoU ≥ 0.5.
#
# A widget needs a running kernel; GitHub and other static viewers show nothing in its place.
# `explorer.grid` draws chosen states of the same explorer into one figure (each panel's title is
# its status line): the centre and a corner of the 38×38 map, the corner of the 3×3 map, ratio 3
# added on map 0, the priors matched to object 0 at IoU 0.5 and 0.3, and the overlay with the
# config's priors and with map 0's smallest box shrunk from 30 to 20 px.

# %% tags=["nbval-check-output"]
explorer.grid([
    {},
    {"row": 0, "col": 0},
    {"map_index": 4, "row": 0, "col": 0},
    {"ratios": (2.0, 3.0)},
    {"mode": "matching", "iou": 0.5},
    {"mode": "matching", "iou": 0.3},
    {"show": "objects"},
    {"min_size": 20.0, "show": "objects"},
], ncols=4)

# %% [markdown]
# At IoU 0.3 object 0 gets many more priors than at 0.5 (the titles count them). In the overlay
# the red objects are the small ones, around and below map 0's 30 px squares; with 20 px squares
# only 3 stay red.
#
# Things to try: move the 38×38 map's location to a corner (the boxes are clipped), add ratio 3
# on map 0 and watch the total grow by 2 × 38² = 2888, switch to *matching* and lower the IoU
# threshold to 0.3, shrink map 0's min size and watch the red points of the overlay.
#
# ## COCO's smaller boxes
#
# COCO has many small objects, so its configs start at 0.07 of the image (21 px) instead of 0.1
# (lufficc/SSD, the Caffe models). Fraction of each config's priors that are smaller than
# 32 × 32 px (COCO's "small" objects):

# %% tags=["nbval-check-output"]
for name in ("ssd300_voc", "ssd300_coco"):
    q = load_config(name).priors
    pr = generate_priors(q)
    area_px = (pr[:, 2] * pr[:, 3]) * q.image_size ** 2
    print(f"{name}: min_sizes {q.min_sizes}, {float((area_px < 32 ** 2).float().mean()):.1%} "
          f"of priors under 32x32 px")

# %% [markdown]
# ## Small objects between two centres: densification
#
# A prior matches an object well only when its centre is close to the object's. With an 8 px
# square every 8 px (the first map of the `shapes` config), a 10 px object halfway between two
# centres reaches IoU 0.18 at best, and is trained on the single forced best-prior match.
# FaceBoxes (Zhang et al. 2017, "anchor densification") tiles the small squares several times per
# location: `priors.densify: [2, 2, 1, 1, 1]` puts 2×2 min-size squares at ±stride/4 around each
# centre of the first two maps. Objects of the Shapes test split with a prior at IoU ≥ 0.5:

# %% tags=["nbval-check-output"]
from ssdlib.boxes import box_iou, cxcywh_to_xyxy

test = ShapesDataset("test", 300, image_size=160)
gt = torch.cat([t["boxes"][~t["difficult"]] for _, t in (test[i] for i in range(len(test)))]) / 160
side = (gt[:, 2:] - gt[:, :2]).amax(dim=1) * 160
for dens in ("[1, 1, 1, 1, 1]", "[2, 2, 1, 1, 1]"):
    q = load_config("shapes", [f"priors.densify={dens}"]).priors
    pr = generate_priors(q)
    best = box_iou(gt, cxcywh_to_xyxy(pr)).amax(dim=1)
    cover = [float((best[(side >= lo) & (side < hi)] >= 0.5).float().mean())
             for lo, hi in ((0, 16), (16, 32), (32, 161))]
    print(f"densify {dens}: {pr.shape[0]} priors; IoU >= 0.5 for "
          f"<16 px {cover[0]:.0%}, 16-32 px {cover[1]:.0%}, >=32 px {cover[2]:.0%}")

# %% [markdown]
# Measured with `make demo` (same 5,200 iterations, README): test mAP 0.894 → 0.903, and 0.896 →
# 0.929 on 500 training-split images the run never drew.
#
# ## SSD512: 24564 boxes
#
# SSD512 adds a 7th map (conv12_2) and keeps the ratios `[2, 3]` on one more map:

# %% tags=["nbval-check-output"]
p512 = load_config("ssd512_voc").priors
counts512 = priors_per_map(p512)
print("maps:", p512.feature_maps)
print(" + ".join(map(str, counts512)), "=", sum(counts512))
assert generate_priors(p512).shape[0] == 24564

# %% tags=["nbval-check-output"]
fig_priors_per_map("ssd512_voc")

# %% [markdown]
# ## Summary
#
# - A default box is fixed by (map, location, shape). SSD300 has 6 maps → **8732** boxes, SSD512
#   has 7 → **24564**.
# - Scales follow $s_k = s_{\min} + \frac{s_{\max}-s_{\min}}{m-1}(k-1)$ in the paper; the configs use
#   the Caffe variant (0.1 for conv4_3, then 0.2 … 0.88) and COCO starts smaller (0.07).
# - Shapes: $w = s_k\sqrt{a_r}$, $h = s_k/\sqrt{a_r}$, plus the extra square $\sqrt{s_k s_{k+1}}$.
# - Small squares on a coarse grid leave objects between centres without a good prior:
#   `priors.densify` tiles them (FaceBoxes' densification).
# - `generate_priors(cfg.priors)` returns them as (P, 4) cx, cy, w, h in the order of the heads.
# - Why objects smaller than the smallest boxes fail, and what the paper's zoom-out does about it:
#   the [FAQ](../README.md#faq).
#
# ## Exercises
#
# 1. How many priors would SSD300 have with ratios `[2, 3]` on **every** map?
# 2. Which prior index is the first box of location (row 2, column 3) of the 10×10 map?
# 3. Use the explorer: on the 3×3 map at location (0, 0) the boxes reach outside the image. Does
#    `clip: true` change them?
#
# <details><summary>Solution 1</summary>
#
# Every location then has 6 boxes: $6\,(38^2+19^2+10^2+5^2+3^2+1^2) = 6 \cdot 1940 = 11640$.
#
# ```python
# q = load_config("ssd300_voc", ["priors.aspect_ratios=[[2,3],[2,3],[2,3],[2,3],[2,3],[2,3]]"]).priors
# sum(priors_per_map(q))   # 11640
# ```
# </details>
#
# <details><summary>Solution 2</summary>
#
# 5776 (map 0) + 2166 (map 1) + (2 · 10 + 3) · 6 = 8080:
#
# ```python
# from ssdlib.viz.anchors import prior_index
# prior_index(p, 2, 2, 3)   # 8080
# ```
# </details>
#
# <details><summary>Solution 3</summary>
#
# Partly. Clipping clamps the centre form (cx, cy, w, h) to [0, 1], not the corners. At location
# (0, 0) of the 3×3 map (centre 50, 50 px) the squares of 213 and 237 px have w, h < 1: they are
# unchanged and still reach past the corner (corners at −56.5 and −68.6 px;
# `explorer.state["boxes_px"]` shows them). The ratio-2 box is 213·√2 = 301.2 px wide, wider than
# the image, so clipping sets its width to 300 px (1.0): its corners move from
# (−100.6, −25.3, 200.6, 125.3) to (−100, −25.3, 200, 125.3) px — still outside the image — and
# the ratio-½ box's height likewise.
#
# ```python
# from ssdlib.viz.anchors import prior_index
# i = prior_index(p, 4, 0, 0)
# print((unclipped[i:i + 4] * 300).round(decimals=1))   # cx, cy, w, h in px: w = 301.2, h = 301.2
# print((priors[i:i + 4] * 300).round(decimals=1))      # ... 300.0
# ```
# </details>
