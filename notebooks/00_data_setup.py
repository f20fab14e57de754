# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   accelerator: GPU
#   colab:
#     gpuType: T4
#     provenance: []
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
# **What you will learn** (about 20 minutes; runs in under a minute on a CPU, no download)
#
# - the **VOC** (`VOCdevkit`) and **COCO** (json) layouts, and ssdlib's common target format;
# - the generated **Shapes** dataset, written to disk in *both* layouts and read back through both
#   loaders;
# - the **pixel convention** (VOC's 1-based corners → 0-based);
# - SSD's **data augmentation**, drawn several times on one image;
# - how to **download** VOC/COCO and **validate** your own dataset before training.
#
# Library functions used: `ssdlib.data.write_shapes`, `VOCDataset`, `COCODataset`, `ShapesDataset`,
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
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"ssdlib @ {source}"],
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
# SSD's augmentation (paper section 2.2 and 3.6) is a large part of its accuracy: the "zoom out"
# expansion alone brings SSD300 from 74.3 to **77.2** mAP and SSD512 from 76.8 to **79.8**.
# `build_train_transform` chains
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
text = text.replace(f"<xmin>{x1}</xmin>", f"<xmin>{x2}</xmin>", 1).replace(f"<xmax>{x2}</xmax>", f"<xmax>{x1}</xmax>", 1)
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
# - VOC: `VOCdevkit/VOC{year}/{JPEGImages, Annotations, ImageSets/Main}`; COCO: images + a json of
#   images/annotations/categories. ssdlib reads both into one target format.
# - VOC's 1-based corners become 0-based (`x2` = last pixel); COCO's boxes are continuous: the two
#   differ by 1 px on `x2`, `y2`.
# - `write_shapes` makes a dataset in both layouts in seconds — the course's default data.
# - SSD's augmentation: photometric distortion, zoom out, IoU crop, flip.
# - `validate_dataset` lists every problem of a dataset before training.
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
# sum(len(every[i][1]["boxes"]) - len(kept[i][1]["boxes"]) for i in range(len(every)))
# ```
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
