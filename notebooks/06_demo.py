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
# # 06 · Demo: detections on images, a pretrained COCO SSD300, speed and the CLI
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# [colab]: https://colab.research.google.com/github/ssdlib/ssdlib/blob/main/notebooks/06_demo.ipynb
#
# **What you will learn** (about 20 minutes; runs in about a minute on a CPU — the trained Shapes
# model ships with ssdlib; the COCO weights are a one-time 136 MB download)
#
# - to run a trained model on images and **draw** its detections (`predict`, `draw_detections`);
# - to load **torchvision's COCO SSD300** through `ssdlib.model.pretrained_model`
#   and detect on real photos (needs internet once; offline the notebook says so and keeps going
#   with the Shapes model);
# - what the **score threshold** changes (a grid, and a slider);
# - how **fast** `predict` is on your device at batch 1 and 8;
# - the **command line**: `python -m ssdlib demo`.
#
# Library functions used: `SSD.predict`, `ssdlib.engine.inference.detect_images`,
# `ssdlib.model.load_shipped`, `ssdlib.viz.draw.draw_detections`,
# `ssdlib.model.pretrained_model`, `weight_url`, `ssdlib.model.hub_checkpoint_path`,
# `python -m ssdlib demo`.

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
# ## The model
#
# The light SSD that `make demo` trains on Shapes ships with ssdlib (`pretrained_model("shapes")`,
# `--weights shapes`): a detector that works, loaded offline. Notebook 05 measured it: VOC07 mAP
# about 0.9 on the 500 Shapes test images.

# %% tags=["nbval-ignore-output"]
# (not compared: the provenance names a commit and a CPU)
from ssdlib.config import load_config
from ssdlib.model import load_shipped

model, cfg, meta = load_shipped("shapes")
model = model.to(device)
SCORE = 0.5  # pictures for people keep the confident detections
print("made with:", meta["command"], "| test VOC07 mAP when shipped:", round(meta["metrics"]["voc07_map"], 4))

# %% tags=["nbval-check-output"]
print(f"{cfg.model.name}, {model.num_classes} classes {cfg.data.class_names}, "
      f"trained {meta['iteration']} iterations, input {cfg.input.image_size} px, "
      f"{len(model.priors)} priors; score threshold for pictures: {SCORE}")

# %% [markdown]
# ## Detections on Shapes test images
#
# `ShapesDataset` renders test images in memory (here at 256 px, larger than the model's 160 px
# input). `ssdlib.engine.inference.detect_images` applies the test transform (resize to the input,
# normalise), runs `predict`, and maps the boxes back to each image's own pixels with `scaled`;
# `draw_detections` draws the ones with score ≥ `SCORE`.

# %% tags=["nbval-ignore-output"]
# (not compared: detections of a trained network)
import matplotlib.pyplot as plt

from ssdlib.data import ShapesDataset
from ssdlib.engine.inference import detect_images
from ssdlib.viz.draw import draw_detections

names = list(cfg.data.class_names)
shapes = ShapesDataset("test", 6, image_size=256)
shape_images = [shapes[i][0] for i in range(6)]
shape_truth = [shapes[i][1] for i in range(6)]
shape_dets = detect_images(model, shape_images, cfg.input.image_size, cfg.input.pixel_mean,
                           cfg.input.pixel_std, device, score_threshold=SCORE)
fig, axes = plt.subplots(2, 3, figsize=(12, 8.4))
for ax, img, d, t in zip(axes.flat, shape_images, shape_dets, shape_truth):
    ax.imshow(draw_detections(img, d.boxes, d.labels, d.scores, names))
    ax.set_title(f"{len(d)} detections, {len(t['labels'])} objects")
    ax.axis("off")
plt.tight_layout()
plt.show()
found = [len(d) for d in shape_dets]
objects = [len(t["labels"]) for t in shape_truth]
print(f"detections per image (score >= {SCORE}):", found, "objects:", objects)
assert sum(found) >= 0.8 * sum(objects), "a trained model finds most objects"

# %% [markdown]
# ## A pretrained SSD300 on real photos
#
# torchvision publishes an SSD300-VGG16 trained on COCO (25.1 box AP on val2017, as the paper's
# SSD300*). `pretrained_model("torchvision-coco")` downloads it once into the torch hub cache and
# converts it to an ssdlib `SSD` with exactly torchvision's outputs (notebook 02 and
# `ssdlib.model.convert` explain the conversion). The photos ship with installed packages:
# scikit-image's astronaut, coffee and cat, and matplotlib's Grace Hopper.
#
# Offline, we must not hang on a download: the next cell looks in the cache first, then tries to
# reach the server with a 3-second timeout. Without the weights (as when this notebook was
# executed for the course: offline), the cells below say so once and show the Shapes model on
# Shapes images instead; with them, the same cells draw torchvision's COCO labels (80 categories:
# person, cup, cat, tie, ...) on the four photos, and the threshold grid and slider work on the
# astronaut.

# %% tags=["nbval-ignore-output"]
# (not compared: depends on the network and the cache of this machine)
import socket
from urllib.parse import urlparse

from ssdlib.model import hub_checkpoint_path, weight_url

url = weight_url("torchvision-coco")
cached = hub_checkpoint_path(url).is_file()
online = False
if not cached:
    try:
        socket.create_connection((urlparse(url).hostname, 443), timeout=3).close()
        online = True
    except OSError as e:
        print(f"offline ({e.__class__.__name__}): cannot reach {urlparse(url).hostname}")
HAVE_COCO_MODEL = cached or online
print(f"COCO SSD300 weights: {'in the cache' if cached else 'downloading' if online else 'not available'}"
      f" ({hub_checkpoint_path(url)})")
if not HAVE_COCO_MODEL:
    print("-> OFFLINE: the rest of this notebook uses the Shapes model on Shapes images.\n"
          "   With internet (or the file above in place), re-run: the same cells then show the\n"
          "   COCO model on the photos.")

# %% tags=["nbval-ignore-output"]
# (not compared: the COCO model when it is available, else the Shapes model)
import skimage.data
from matplotlib.cbook import get_sample_data
from PIL import Image

if HAVE_COCO_MODEL:
    from ssdlib.model import pretrained_model

    demo_model, demo_names = pretrained_model("torchvision-coco", progress=False)
    demo_model = demo_model.to(device).eval()
    demo_cfg = load_config("ssd300_coco_torchvision")
    with get_sample_data("grace_hopper.jpg") as f:
        hopper = np.asarray(Image.open(f).convert("RGB"))
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), hopper]
    demo_images = [torch.from_numpy(np.ascontiguousarray(p)).permute(2, 0, 1) for p in photos]
    SCORE = 0.5
    print(f"COCO SSD300: {len(demo_model.priors)} priors, {demo_model.num_classes} labels "
          f"(COCO category ids)")
else:
    demo_model, demo_names, demo_cfg = model, names, cfg   # (and its SCORE)
    demo_images = [shapes[i][0] for i in range(4)]
    print("Shapes model on Shapes images (offline)")
demo_input = (demo_cfg.input.image_size, demo_cfg.input.pixel_mean, demo_cfg.input.pixel_std)

# %% tags=["nbval-check-output"]
demo_dets = detect_images(demo_model, demo_images, *demo_input, device, score_threshold=SCORE)
fig, axes = plt.subplots(1, len(demo_images), figsize=(4.5 * len(demo_images), 4.5))
for ax, img, d in zip(axes, demo_images, demo_dets):
    ax.imshow(draw_detections(img, d.boxes, d.labels, d.scores, demo_names))
    ax.set_title(", ".join(sorted({demo_names[c - 1] for c in d.labels.tolist()})) or "nothing")
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The score threshold
#
# Evaluation keeps everything above 0.01 (low scores still add recall to the PR curve); a picture
# for people keeps only confident detections. Lowering the threshold finds more objects and more
# mistakes:

# %% tags=["nbval-check-output"]
thresholds = tuple(round(SCORE * f, 3) for f in (0.2, 0.6, 1.0, 1.6))  # 0.1 0.3 0.5 0.8 for 0.5
img = demo_images[0]
all_dets = detect_images(demo_model, [img], *demo_input, device, score_threshold=min(thresholds))[0]
fig, axes = plt.subplots(1, len(thresholds), figsize=(4.5 * len(thresholds), 4.8))
for ax, t in zip(axes, thresholds):
    keep = all_dets.scores >= t
    ax.imshow(draw_detections(img, all_dets.boxes[keep], all_dets.labels[keep],
                              all_dets.scores[keep], demo_names))
    ax.set_title(f"score >= {t}: {int(keep.sum())} boxes")
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# Interactively (in JupyterLab or Colab; the slider redraws from the detections above, without
# running the network again):

# %% tags=["nbval-ignore-output"]
# (not compared: widget)
import ipywidgets as widgets


def show_threshold(threshold=SCORE):
    keep = all_dets.scores >= threshold
    plt.figure(figsize=(6, 6))
    plt.imshow(draw_detections(img, all_dets.boxes[keep], all_dets.labels[keep],
                               all_dets.scores[keep], demo_names))
    plt.title(f"score >= {threshold:.2f}: {int(keep.sum())} boxes")
    plt.axis("off")
    plt.show()


widgets.interact(show_threshold, threshold=widgets.FloatSlider(SCORE, min=0.02, max=0.95, step=0.01));

# %% [markdown]
# ## Speed
#
# How many images per second does `predict` (network + post-processing) manage here? The paper
# reports 59 FPS for SSD300 and 22 for SSD512 on a Titan X (batch 8); mmdetection 43.7 FPS for
# SSD300. Batching helps on a GPU, much less on a CPU. (Timings depend on the machine and on
# what else runs on it.)

# %% tags=["nbval-ignore-output"]
# (not compared: timings)
import time


def images_per_second(net, size, batch, repeats):
    x = torch.randn(batch, 3, size, size, device=device)
    net.predict(x)                                  # warm-up (allocations, cuDNN autotune)
    if device.type == "cuda":
        torch.cuda.synchronize()
    tic = time.perf_counter()
    for _ in range(repeats):
        net.predict(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - tic)


fast = device.type == "cuda"
for name, net, size in (("Shapes light model", model, cfg.input.image_size),
                        ("demo model", demo_model, demo_cfg.input.image_size)):
    for batch in (1, 8):
        repeats = (50 if fast else 5) if batch == 1 else (20 if fast else 2)
        print(f"{name:18s} {size} px, batch {batch}: "
              f"{images_per_second(net, size, batch, repeats):7.1f} images/s on {device}")

# %% [markdown]
# ## The command line
#
# Everything above, for a folder of images:
#
# ```bash
# # the shipped Shapes model (its own config gives the preprocessing)
# python -m ssdlib demo --weights shapes --images my_images/ --out outputs/pictures
# # a training checkpoint (its config gives the model and the preprocessing)
# python -m ssdlib demo --config shapes --ckpt outputs/demo/train/model_0002700.pth \
#     --images my_images/ --out outputs/pictures --score-threshold 0.5
# # torchvision's COCO SSD300 (downloaded once)
# python -m ssdlib demo --weights torchvision-coco --images my_photos/ --out outputs/pictures
# ```
#
# `make demo` trains the Shapes model for 2,700 iterations and writes pictures, PR curves and the
# metrics into `outputs/demo`. Here, four Shapes images into a folder and the shipped model:

# %% tags=["nbval-ignore-output"]
# (not compared: temporary paths)
import subprocess
import sys
import tempfile

work = Path(tempfile.mkdtemp(prefix="ssd_demo_"))
(work / "images").mkdir()
for i in range(4):
    Image.fromarray(shape_images[i].permute(1, 2, 0).numpy()).save(work / "images" / f"shape_{i}.png")
cmd = [sys.executable, "-m", "ssdlib", "demo", "--weights", "shapes",
       "--images", str(work / "images"), "--out", str(work / "out"), "--score-threshold", str(SCORE),
       "--device", device.type]
print("$", " ".join(cmd[1:]))
proc = subprocess.run(cmd, capture_output=True, text=True)
print(proc.stdout + proc.stderr)
assert proc.returncode == 0

# %% tags=["nbval-check-output"]
pictures = sorted((work / "out").glob("*.jpg"))
print([p.name for p in pictures])
fig, axes = plt.subplots(1, len(pictures), figsize=(4 * len(pictures), 4))
for ax, p in zip(axes, pictures):
    ax.imshow(Image.open(p))
    ax.set_title(p.name)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Summary
#
# - Detection on any image: test transform (resize + normalise) → `predict` → `scaled(w, h)` →
#   `draw_detections`.
# - `pretrained_model("torchvision-coco")` gives torchvision's COCO SSD300 (25.1 AP) as an ssdlib
#   model; weights are cached in `$TORCH_HOME/hub/checkpoints` (offline: put the file there).
# - The score threshold is a display choice (0.5 for pictures); evaluation uses 0.01.
# - SSD300 runs at tens of images per second on a GPU (59 FPS on a Titan X in the paper).
# - `python -m ssdlib demo --ckpt ... | --weights shapes | --weights torchvision-coco --images DIR --out DIR`.
#
# ## Exercises
#
# 1. Draw the detections of the Shapes model on a *training* image with `score_threshold=0.3`. Are
#    there more false positives than on the test images?
# 2. What does the demo model find on `demo_images[1]` at score 0.3 that it leaves out at 0.5?
#    With the COCO weights that image is `skimage.data.coffee()`; offline, a Shapes test image
#    and the Shapes model.
# 3. Measure the speed of the Shapes model with `torch.set_num_threads(1)` and with all cores.
# 4. Run the CLI on your own photos with the COCO weights.
#
# <details><summary>Solution 1</summary>
#
# ```python
# train_img = ShapesDataset("train", 1, image_size=256)[0][0]
# shapes_input = (cfg.input.image_size, cfg.input.pixel_mean, cfg.input.pixel_std)
# d = detect_images(model, [train_img], *shapes_input, device, score_threshold=0.3)[0]
# plt.imshow(draw_detections(train_img, d.boxes, d.labels, d.scores, names))
# ```
# No: the shipped model never saw an image twice (5,200 iterations of 32 freshly rendered images,
# each rendering in its flips and quarter turns), so there is nothing to memorise; training and
# test images come from one generator and look alike to it.
# </details>
#
# <details><summary>Solution 2</summary>
#
# ```python
# d = detect_images(demo_model, [demo_images[1]], *demo_input, device, score_threshold=0.3)[0]
# low = d.scores < 0.5   # kept at 0.3, left out at 0.5
# [(demo_names[l - 1], round(s, 2)) for l, s in zip(d.labels[low].tolist(), d.scores[low].tolist())]
# ```
# Offline, as this notebook was executed, one box: `[('circle', 0.32)]`. At 0.5 the Shapes model already
# finds all four objects of the image (circle 1.00, star 1.00, hexagon 0.78, triangle 0.71: the
# second picture of "Detections on Shapes test images"); the extra box lies on the hexagon (IoU
# 0.94 with it): no new object, one confusion of the two round shapes added.
# With the COCO weights the list holds the COCO labels scored between 0.3 and 0.5 on the coffee
# photo (this run had no weights, so it cannot name them).
# </details>
#
# <details><summary>Solution 3</summary>
#
# ```python
# for n in (1, os.cpu_count()):
#     torch.set_num_threads(n)
#     print(n, images_per_second(model, 160, 8, 3))
# ```
# </details>
#
# <details><summary>Solution 4</summary>
#
# ```bash
# python -m ssdlib demo --weights torchvision-coco --images ~/Pictures --out outputs/mine
# ```
# </details>
