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
# # 00 · Data: VOC, COCO and the Shapes dataset
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# [colab]: https://colab.research.google.com/github/ssdlib/ssdlib/blob/main/notebooks/00_data_setup.ipynb
#
# **What you will learn** (about 30 minutes; runs in about a minute on a CPU, no download)
#
# - **the big picture**: one image through a trained detector — raw boxes, score threshold, NMS,
#   result — and SSD300's architecture, drawn from the model;
# - the **VOC** (`VOCdevkit`) and **COCO** (json) layouts, and ssdlib's common target format;
# - the generated **Shapes** dataset, written to disk in *both* layouts and read back through both
#   loaders;
# - the **pixel convention** (VOC's 1-based corners → 0-based) and the four ways of writing a box
#   (corners or centre and size, pixels or relative);
# - SSD's **data augmentation**, drawn several times on one image;
# - how to **download** VOC/COCO and **validate** your own dataset before training.
#
# Library functions used: `ssdlib.model.pretrained_model`,
# `ssdlib.viz.architecture.plot_architecture`, `ssdlib.data.write_shapes`, `VOCDataset`,
# `COCODataset`, `ShapesDataset`,
# `build_train_transform`, `denormalize`, `validate_dataset`; `python -m ssdlib data ...`.

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

import torch

from ssdlib.course import setup_notebook

# %matplotlib inline
# JPEG keeps the notebooks small on GitHub (the Shapes textures compress badly as PNG).
# %config InlineBackend.figure_formats = ["jpeg"]
paths, device = setup_notebook(seed=0)
DATA, OUTPUTS, HAVE_VOC = paths.data, paths.outputs, paths.have_voc

# %% [markdown]
# ## The big picture: one image through the detector
#
# Before the parts, the whole. An SSD detector looks at an image **once**: a convolutional
# network predicts, for each of a few thousand fixed **default boxes** (*priors*, notebook 01)
# placed over the image, a score for every class (plus "background") and a small correction of
# the box. Post-processing keeps the confident boxes and removes duplicates (non-maximum
# suppression, NMS). Here is the trained Shapes model that ships with ssdlib (no download) on
# one test image, step by step:

# %% tags=["nbval-ignore-output"]
from torchvision.ops import batched_nms

from ssdlib.boxes import decode
from ssdlib.config import load_config
from ssdlib.data import ShapesDataset, build_test_transform
from ssdlib.model import pretrained_model

model, names = pretrained_model("shapes")          # the light SSD trained by `make demo`
cfg = load_config("shapes")
size = cfg.input.image_size                        # 160 px input
image, target = ShapesDataset("test", 8, image_size=size)[7]
x, _ = build_test_transform(size, cfg.input.pixel_mean, cfg.input.pixel_std)(image, target)
with torch.no_grad():
    cls_logits, box_deltas = model(x[None])        # (1, P, 6), (1, P, 4): one row per prior
scores = cls_logits[0].softmax(dim=-1)             # (P, 6): background + 5 classes
boxes = decode(box_deltas[0], model.priors, model.variances)   # (P, 4) xyxy, relative
# 1. threshold: every (prior, class) pair scoring above 0.5 is a candidate
prior_idx, cls_idx = (scores[:, 1:] > 0.5).nonzero(as_tuple=True)
cand_boxes, cand_scores, cand_labels = boxes[prior_idx], scores[prior_idx, cls_idx + 1], cls_idx + 1
# 2. NMS per class: drop a candidate overlapping a better one of its class at IoU > 0.45
kept = batched_nms(cand_boxes, cand_scores, cand_labels, iou_threshold=0.45)
print(f"{len(boxes)} raw boxes (one per prior) -> {len(cand_boxes)} score > 0.5 "
      f"-> {len(kept)} after NMS; the image has {len(target['boxes'])} objects")
for k in kept.tolist():
    print(f"  {names[int(cand_labels[k]) - 1]:>8} {float(cand_scores[k]):.2f} at "
          f"{[round(v) for v in (cand_boxes[k] * size).tolist()]} px")
# the same two steps are what model.predict runs (notebook 06)
det = model.predict(x[None], score_threshold=0.5)[0]
assert len(det) == len(kept) and torch.allclose(det.boxes, cand_boxes[kept], atol=1e-6)
assert len(cand_boxes) > len(kept) >= 1

# %% tags=["nbval-ignore-output"]
from matplotlib.figure import Figure

from ssdlib.viz.figures import CLASS_COLOURS, draw_boxes, show

fig = Figure(figsize=(12, 3.6), layout="constrained")
panels = [
    (f"1. raw: all {len(boxes)} decoded boxes", boxes, None, None),
    (f"2. score > 0.5: {len(cand_boxes)} candidates", cand_boxes, cand_labels, None),
    (f"3. after NMS: {len(kept)} detections", cand_boxes[kept], cand_labels[kept], None),
    ("4. result, ground truth dashed", cand_boxes[kept], cand_labels[kept],
     [f"{names[int(lb) - 1]} {float(s):.2f}" for lb, s in zip(cand_labels[kept], cand_scores[kept])]),
]
for n, (title, b, lb, text) in enumerate(panels):
    ax = fig.add_subplot(1, 4, n + 1)
    show(ax, image)
    colours = "white" if lb is None else [CLASS_COLOURS[int(v) - 1] for v in lb]
    draw_boxes(ax, b * size, colours, text, lw=0.3 if lb is None else 1.5)
    if n == 3:
        draw_boxes(ax, target["boxes"], "white", lw=1, ls="--")
    ax.set_xlim(0, size)
    ax.set_ylim(size, 0)
    ax.set_title(title, fontsize=9)
fig

# %% [markdown]
# Panel 1 is what the network outputs: one box for every prior, mostly junk — most priors see
# background (drawn in white, they cover the image). A score threshold leaves a few candidates,
# several per object (neighbouring priors all recognise it); NMS keeps the best of each cluster.
# Everything else in the course explains a piece of this picture: the data (this notebook), the
# priors (01), the network (02), how it is trained to produce these scores and corrections (03,
# 04), how it is measured (05), and using it on your images (06, 07).
#
# The network behind it is SSD300 in the paper (Liu et al., ECCV 2016, figure 2): VGG16, then
# extra layers that halve the resolution, with a small convolutional **head** on each of six
# maps. This diagram is drawn from the model itself (`ssdlib.viz.architecture`: map sizes from a
# forward pass, boxes per location from the heads):

# %% tags=["nbval-check-output"]
from ssdlib.model import build_model
from ssdlib.viz.architecture import architecture_rows, plot_architecture

cfg300 = load_config("ssd300_voc", ["model.backbone_weights=none"])
ssd300 = build_model(cfg300)                       # random weights: only the shapes matter
for r in architecture_rows(ssd300, cfg300):
    print(f"{r.name:>8}: {r.size:>2}x{r.size:<2} x {r.channels:>4} channels, {r.boxes} boxes "
          f"per location -> {r.priors:>4} priors ({r.min_size:g}-{r.max_size:g} px)")
plot_architecture(ssd300, cfg300)

# %% [markdown]
# The fine 38×38 map holds the small boxes, the 1×1 map one box as large as the image; the heads
# emit $4 + 21$ numbers per prior (offsets, and 20 VOC classes + background), 8732 priors in all.
# The Shapes model above is the same design, smaller: a light backbone, 5 maps, 160 px input.
#
# ## Two layouts
#
# **Pascal VOC** (20 classes; the paper trains on VOC2007 trainval + VOC2012 trainval, "07+12",
# 16 551 images, and tests on VOC2007 test, 4 952 images):
#
# ```
# VOCdevkit/
#   VOC2007/
#     JPEGImages/000005.jpg            the images
#     Annotations/000005.xml           one XML per image: <size>, <object><name>, <bndbox>, <difficult>
#     ImageSets/Main/trainval.txt      image ids of each split (train, val, trainval, test)
#   VOC2012/ ...
# ```
#
# **COCO** (80 classes; train2017 118k images, val2017 5k): images in a folder and one json per
# split with three lists:
#
# ```json
# {"images":      [{"id": 397133, "file_name": "000000397133.jpg", "width": 640, "height": 427}],
#  "annotations": [{"id": 1, "image_id": 397133, "category_id": 44, "bbox": [x, y, w, h],
#                   "iscrowd": 0, "area": 1035.7}],
#  "categories":  [{"id": 44, "name": "bottle", "supercategory": "kitchen"}]}
# ```
#
# COCO's category ids are not contiguous (1..90 with gaps); ssdlib maps them to labels 1..80
# (0 is background). Every ssdlib dataset returns `(image (3, H, W) uint8, target)` with
# `target["boxes"]` (N, 4) xyxy pixels, `labels` (N,) in 1..C, `difficult` (N,) bool.
#
# ## Shapes: a detection dataset you can generate
#
# Shapes images hold 1–6 filled circles, squares, triangles, stars and hexagons on textured
# backgrounds, occluding each other and crossing the border — real detection problems (small
# objects, occlusion, truncation) with no download. `write_shapes` writes them in both layouts:

# %% tags=["nbval-check-output"]
import tempfile

from ssdlib.data import write_shapes

root = Path(tempfile.mkdtemp(prefix="shapes_"))
write_shapes(root, num_train=8, num_test=4, image_size=256, seed=0, progress=False)
files = sorted(str(f.relative_to(root)) for f in root.rglob("*") if f.is_file())
print(f"{len(files)} files, e.g.:")
print("\n".join(f for f in files if "000000" in f or not f.startswith("VOCshapes/JPEG")))

# %% [markdown]
# Read the test split back through **both** loaders:

# %% tags=["nbval-check-output"]
from ssdlib.data import SHAPES_CLASSES, COCODataset, ShapesDataset, VOCDataset

voc = VOCDataset(root, split="test", year="shapes", keep_difficult=True, class_names=SHAPES_CLASSES)
coco = COCODataset(root / "VOCshapes" / "JPEGImages", root / "annotations" / "instances_test.json")
print(f"VOCDataset: {len(voc)} images, classes {voc.class_names}")
print(f"COCODataset: {len(coco)} images, classes {coco.class_names}")
print("COCO category ids -> labels:", coco.cat_id_to_label)

# %% tags=["nbval-check-output"]
image_v, target_v = voc[0]
image_c, target_c = coco[0]
print("image:", tuple(image_v.shape), image_v.dtype)
print("VOC  boxes:", target_v["boxes"].tolist())
print("COCO boxes:", target_c["boxes"].tolist())
print("labels:    ", target_v["labels"].tolist(), target_c["labels"].tolist())

# %% [markdown]
# ## The pixel convention
#
# The VOC devkit writes **1-based, inclusive** corners: a box covering pixel columns 10..19
# (0-based) is written `xmin=11, xmax=20`. Like the reference implementations (lufficc/SSD,
# amdegroot/ssd.pytorch), `VOCDataset` subtracts 1 from all four numbers, so `x2` is the last
# pixel *inside* the box. COCO's `[x, y, w, h]` is continuous, so its `x2 = x + w` is one past the
# last pixel. The two loaders agree up to exactly that 1 px:

# %% tags=["nbval-check-output"]
xml = (root / "VOCshapes" / "Annotations" / "test_000000.xml").read_text()
bndbox = xml[xml.index("<bndbox>") : xml.index("</bndbox>") + 9]
print(" ".join(bndbox.split()))
for i in range(len(voc)):
    assert torch.equal(voc[i][1]["boxes"] + torch.tensor([0.0, 0, 1, 1]), coco[i][1]["boxes"])
    assert torch.equal(voc[i][1]["labels"], coco[i][1]["labels"])
# ... and both are the boxes the generator drew (continuous, like COCO):
shapes = ShapesDataset("test", 4, image_size=256)
assert all(torch.equal(shapes[i][1]["boxes"], coco[i][1]["boxes"]) for i in range(4))
print("VOC + [0, 0, 1, 1] == COCO == generator, for all", len(voc), "images")

# %% [markdown]
# For SSD (IoU ≥ 0.5 matching on boxes of 30 px and more) 1 px does not matter; for comparing
# loaders, or evaluating with another tool's ground truth, it does.
#
# ## Coordinates: corners or centre and size, pixels or fractions
#
# One box can be written four ways, and SSD uses all of them:
#
# - **corners** `(x1, y1, x2, y2)` ("xyxy") or **centre and size** `(cx, cy, w, h)` ("cxcywh");
# - in **pixels** or **relative** to the image (divided by its width and height, so 0..1).
#
# ssdlib's conventions: pixel $(i, j)$ is the unit square $[j, j+1) \times [i, i+1)$ with 0-based
# indices, $x$ to the right and $y$ **down**; datasets return pixel xyxy; everything the network
# sees is relative — ground truths are relative xyxy, priors relative cxcywh (notebook 01), and
# detections come back relative xyxy until `Detections.scaled(width, height)`. A box covering
# pixel columns 3..8 and rows 2..5 of a 12 × 8 image:

# %% tags=["nbval-check-output"]
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ssdlib.boxes import cxcywh_to_xyxy, xyxy_to_cxcywh

W, H = 12, 8
px = torch.tensor([[3.0, 2.0, 9.0, 6.0]])              # x1, y1, x2, y2: x2 is one past column 8
rel = px / torch.tensor([W, H, W, H])                  # relative xyxy
centre = xyxy_to_cxcywh(rel)                           # relative cxcywh
print("pixel xyxy     ", px[0].tolist())
print("relative xyxy  ", [round(v, 4) for v in rel[0].tolist()])
print("relative cxcywh", [round(v, 4) for v in centre[0].tolist()])
print("VOC file       ", "xmin=4 ymin=3 xmax=9 ymax=6 (1-based, inclusive: VOCDataset gives 3, 2, 8, 5)")
assert torch.allclose(cxcywh_to_xyxy(centre), rel)

fig = Figure(figsize=(6.4, 4.6), layout="constrained")
ax = fig.add_subplot(1, 1, 1)
for i in range(H):
    for j in range(W):
        inside = 3 <= j <= 8 and 2 <= i <= 5
        ax.add_patch(Rectangle((j, i), 1, 1, fc="#fde0b0" if inside else "white", ec="#bbbbbb", lw=0.5))
x1, y1, x2, y2 = px[0].tolist()
ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="#d62728", lw=2))
cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
ax.plot([x1, x2, cx], [y1, y2, cy], "o", color="#d62728")
ax.annotate("(x1, y1) = (3, 2)\nrelative (0.25, 0.25)", (x1, y1), (0.2, 0.15), fontsize=8,
            va="top", arrowprops={"arrowstyle": "->"})
ax.annotate("(x2, y2) = (9, 6)\nrelative (0.75, 0.75)", (x2, y2), (9.2, 6.6), fontsize=8,
            va="top", arrowprops={"arrowstyle": "->"})
ax.text(cx, cy - 0.25, f"(cx, cy) = ({cx:g}, {cy:g})", ha="center", va="bottom", fontsize=8)
ax.text(cx, y2 - 0.35, f"w = {x2 - x1:g} px = {(x2 - x1) / W:g} W,  h = {y2 - y1:g} px = {(y2 - y1) / H:g} H",
        ha="center", fontsize=8)
ax.set_xticks(range(W + 1))
ax.set_yticks(range(H + 1))
ax.set_xlim(0, W)
ax.set_ylim(H, 0)                                      # y grows downwards, as in images
ax.set_aspect("equal")
ax.set_title("a 12 x 8 image: pixel (row 2, column 3) is the square [3, 4) x [2, 3)", fontsize=9)
fig

# %% [markdown]
# For SSD it does not matter which form a box is in, only that every step agrees: the
# encoding of notebook 03 needs centre and size, IoU and NMS need corners, and relative
# coordinates make one set of priors fit any image size.
#
# ## Browsing samples
#
# `*` marks *difficult* objects (mostly hidden or tiny), which VOC evaluation ignores and the SSD
# recipe drops from training (`keep_difficult=False`).

# %% tags=["nbval-check-output"]
from ssdlib.viz.figures import fig_dataset_samples

fig_dataset_samples(count=6)

# %% [markdown]
# ## Data augmentation
#
# SSD's augmentation (paper section 2.2 and 3.6, table 6) is a large part of its accuracy: the
# "zoom out" expansion alone brings SSD300 from 74.3 to **77.2** mAP and SSD512 from 76.8 to
# **79.8**. `build_train_transform` chains
#
# 1. photometric distortion (brightness, contrast, saturation, hue; p = 0.5);
# 2. **zoom out**: place the image on a canvas up to 4× larger filled with the mean pixel (p = 0.5)
#    — creates small objects;
# 3. **IoU-constrained random crop**: a patch whose IoU with the objects is at least one of
#    {0.1, 0.3, 0.5, 0.7, 0.9} (or the whole image) — creates large, partial objects;
# 4. horizontal flip (p = 0.5), resize to 300×300, subtract the mean.
#
# Boxes follow every step; those whose centre leaves the crop are dropped. Seven random draws on
# one image:

# %% tags=["nbval-check-output"]
from ssdlib.data import build_train_transform, denormalize

transform = build_train_transform(300)
image, target = ShapesDataset("test", 8, image_size=300)[7]
torch.manual_seed(0)
for draw in range(3):
    out, t = transform(image, target)
    print(f"draw {draw}: {tuple(out.shape)} float, {len(t['boxes'])} boxes, "
          f"relative xyxy {[[round(v, 3) for v in b] for b in t['boxes'].tolist()]}")
print("denormalize ->", tuple(denormalize(out).shape), denormalize(out).dtype)

# %% tags=["nbval-check-output"]
from ssdlib.viz.figures import fig_augmentation

fig_augmentation(draws=7, seed=0)

# %% [markdown]
# ## Getting VOC and COCO
#
# ```bash
# python -m ssdlib data voc            # VOC2007 trainval+test, VOC2012 trainval (~3.6 GB) -> data/VOCdevkit
# python -m ssdlib data coco           # COCO 2017 train/val + annotations (~19 GB)        -> data/coco
# python -m ssdlib data voc --root /big/disk   # or set SSDLIB_DATA=/big/disk
# python -m ssdlib data shapes         # the Shapes set used by the CPU lessons            -> data/shapes
# ```
#
# Downloads resume, are checked against the published MD5s and unpack safely. When VOC is there,
# the next cell uses it (the notebooks pick it up by themselves):

# %% tags=["nbval-ignore-output"]
if HAVE_VOC:
    from ssdlib.data import voc0712_trainval

    train = voc0712_trainval(DATA / "VOCdevkit")
    test = VOCDataset(DATA / "VOCdevkit", split="test", year="2007", keep_difficult=True)
    print(f"VOC07+12 trainval: {len(train)} images, VOC07 test: {len(test)} images")
else:
    print("VOC not downloaded: `python -m ssdlib data voc` to get it; Shapes is used meanwhile")

# %% [markdown]
# ## Validating your own dataset
#
# Most failed trainings on custom data are data problems: a wrong folder, a class name with a typo,
# boxes with `xmax < xmin`, a missing image. `validate_dataset` (and
# `python -m ssdlib data validate PATH --classes a,b,c`) lists *every* problem before training
# starts. The generated folder is clean:

# %% tags=["nbval-check-output"]
from ssdlib.data import validate_dataset

report = validate_dataset(root / "VOCshapes", class_names=SHAPES_CLASSES)
print(report.format())

# %% [markdown]
# Now break a copy the way real datasets break: a flipped box, an unknown class, a missing image.

# %% tags=["nbval-check-output"]
import shutil

broken = root / "broken"
shutil.copytree(root / "VOCshapes", broken)
ann = broken / "Annotations" / "test_000001.xml"
text = ann.read_text()
x1 = text[text.index("<xmin>") + 6 : text.index("</xmin>")]
x2 = text[text.index("<xmax>") + 6 : text.index("</xmax>")]
text = text.replace(f"<xmin>{x1}</xmin>", f"<xmin>{x2}</xmin>", 1)
text = text.replace(f"<xmax>{x2}</xmax>", f"<xmax>{x1}</xmax>", 1)
ann.write_text(text.replace("<name>", "<name>Circle_", 1))
(broken / "JPEGImages" / "test_000002.jpg").unlink()
report = validate_dataset(broken, class_names=SHAPES_CLASSES)
print(f"ok: {report.ok}, {len(report.errors)} error(s), {len(report.warnings)} warning(s)")
for problem in report.problems:
    print(f"{problem.severity}: {Path(problem.file).name}: {problem.message}")

# %% tags=["nbval-check-output"]
shutil.rmtree(root)   # the temporary dataset is no longer needed

# %% [markdown]
# ## Summary
#
# - A detector's output is one scored box per prior (thousands); a score threshold and NMS turn
#   it into a few detections. SSD300 predicts on 6 maps, 38×38 … 1×1: 8732 priors.
# - Boxes are corners (xyxy) or centre and size (cxcywh), in pixels or relative; ssdlib's
#   datasets return pixel xyxy, the network works in relative coordinates.
# - VOC: `VOCdevkit/VOC{year}/{JPEGImages, Annotations, ImageSets/Main}`; COCO: images + a json of
#   images/annotations/categories. ssdlib reads both into one target format.
# - VOC's 1-based corners become 0-based (`x2` = last pixel); COCO's boxes are continuous: the two
#   differ by 1 px on `x2`, `y2`.
# - `write_shapes` makes a dataset in both layouts in seconds — the course's default data.
# - SSD's augmentation: photometric distortion, zoom out, IoU crop, flip.
# - `validate_dataset` lists every problem of a dataset before training.
# - Questions learners ask (why a background class, why priors, …): the [FAQ](../README.md#faq).
#
# ## Exercises
#
# 1. Read the *train* split of the generated Shapes folder with `VOCDataset`, keeping difficult
#    objects out (`keep_difficult=False`). How many boxes are dropped?
# 2. Draw the same image through `build_train_transform` 100 times and count how often it comes out
#    with fewer boxes than it went in with.
# 3. Run `python -m ssdlib data validate` on the broken copy from the command line.
#
# <details><summary>Solution 1</summary>
#
# ```python
# root = write_shapes(Path(tempfile.mkdtemp()), 8, 4, progress=False)
# kept = VOCDataset(root, "train", "shapes", keep_difficult=False, class_names=SHAPES_CLASSES)
# every = VOCDataset(root, "train", "shapes", keep_difficult=True, class_names=SHAPES_CLASSES)
# sum(len(every[i][1]["boxes"]) - len(kept[i][1]["boxes"]) for i in range(len(every)))   # 2
# ```
# **2** of the 31 boxes of the 8 training images are difficult and dropped (the generator marks
# objects that are tiny or mostly hidden as difficult).
# </details>
#
# <details><summary>Solution 2</summary>
#
# ```python
# torch.manual_seed(0)
# n = len(target["boxes"])
# sum(len(transform(image, target)[1]["boxes"]) < n for _ in range(100))
# ```
# The IoU crop often cuts objects out (their centre leaves the patch): that is intended, it
# teaches the network partial views.
# </details>
#
# <details><summary>Solution 3</summary>
#
# ```bash
# python -m ssdlib data validate /tmp/shapes_xxx/broken --classes circle,square,triangle,star,hexagon
# ```
# It prints the same list and exits with status 1 (errors found), so it can gate a training script.
# </details>
