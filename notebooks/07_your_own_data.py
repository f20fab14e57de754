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
# # 07 · Your own data: a labelled folder to a fine-tuned detector
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# [colab]: https://colab.research.google.com/github/ssdlib/ssdlib/blob/main/notebooks/07_your_own_data.ipynb
#
# **What you will learn** (about 30 minutes; runs in about 3 minutes on a 2-core CPU)
#
# - the **YOLO folder layout** labelling tools export (`images/`, `labels/*.txt`, `data.yaml`)
#   and how ssdlib reads it (`data.dataset: yolo`);
# - **validating** a folder before training: every problem listed at once;
# - **do the priors fit your objects?** `anchors analyze` (best IoU per object, coverage by
#   size) and `anchors fit` (a search over the priors section under a prior budget);
# - **fine-tuning** a pretrained detector to **another number of classes**
#   (`train.init_weights`): what is loaded, what starts fresh, and how much it saves;
# - **evaluating** and **predicting** with the result.
#
# Library functions used: `ssdlib.data.write_yolo`, `YOLODataset`, `validate_dataset`,
# `ssdlib.anchors.cli` (`python -m ssdlib anchors analyze|fit`), `ssdlib.engine.train`,
# `ssdlib.engine.finetune`, `ssdlib.engine.datasets.build_test_data`, `ssdlib.engine.evaluate`,
# `ssdlib.viz.draw.draw_detections`.
#
# The folder here is generated (Shapes images relabelled into two classes, *round* and
# *angular*), so the notebook runs offline; with your own export, point `FOLDER` at it.

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
# checkout's data/, else ./data as in Colab; the library then uses the same folder).

import numpy as np
import torch

from ssdlib.course import setup_notebook

# %matplotlib inline
# %config InlineBackend.figure_formats = ["jpeg"]
paths, device = setup_notebook(seed=0)
DATA, OUTPUTS = paths.data, paths.outputs
WORK = OUTPUTS / "07_own_data"
WORK.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. A labelled folder
#
# Labelling tools (CVAT, Label Studio, Roboflow, Ultralytics) export the YOLO layout:
#
# ```
# FOLDER/data.yaml            train: images/train   val: images/val   names: [round, angular]
# FOLDER/images/train/*.jpg   FOLDER/labels/train/*.txt   (one line per object)
# FOLDER/images/val/*.jpg     FOLDER/labels/val/*.txt
# ```
#
# A label line is `class cx cy w h`: a 0-based class id and the box centre and size as
# fractions of the image. `write_yolo` exports any ssdlib dataset in that layout; here, Shapes
# images whose five shapes become two classes.

# %% tags=["nbval-ignore-output"]
import shutil

from ssdlib.data import ShapesDataset, write_yolo

CLASSES = ["round", "angular"]  # circle, hexagon -> round; square, triangle, star -> angular


class TwoClassShapes(torch.utils.data.Dataset):
    def __init__(self, split: str, n: int, seed: int):
        self.src = ShapesDataset(split, n, 160, seed=seed, keep_difficult=False)

    def __len__(self):
        return len(self.src)

    def __getitem__(self, i):
        image, target = self.src[i]
        round_ = (target["labels"] == 1) | (target["labels"] == 5)
        return image, {**target, "labels": torch.where(round_, 1, 2)}


FOLDER = WORK / "folder"
shutil.rmtree(FOLDER, ignore_errors=True)
write_yolo(FOLDER, {"train": TwoClassShapes("train", 400, seed=7),
                    "val": TwoClassShapes("test", 60, seed=7)}, CLASSES)
print((FOLDER / "data.yaml").read_text())
print("labels/train/000000.txt:\n" + (FOLDER / "labels/train/000000.txt").read_text())

# %% [markdown]
# ## 2. Validate before training
#
# `validate_dataset` (CLI: `python -m ssdlib data validate FOLDER`) reads every image and label
# file and lists **every** problem: errors (a line that does not parse, an unknown class id, an
# image that does not decode) and warnings (values outside [0, 1], a missing or empty label
# file, a duplicated line, a label file without an image). Training runs the same check (without
# decoding) and refuses a folder with errors. We break a copy on purpose, then check the real one.

# %% tags=["nbval-ignore-output"]
from ssdlib.data import validate_dataset

broken = WORK / "broken"
shutil.rmtree(broken, ignore_errors=True)
shutil.copytree(FOLDER, broken)
(broken / "labels/train/000001.txt").write_text("5 0.5 0.5 0.2 0.2\n0 1.3 0.5 0.2 0.2\n")
(broken / "labels/train/000002.txt").unlink()
report = validate_dataset(broken)
print(report.format())
assert not report.ok and len(report.errors) == 1

report = validate_dataset(FOLDER)
print(report.format())
assert report.ok

# %% [markdown]
# ## 3. A config for the folder
#
# The Shapes config with the data section pointed at the folder and the model's class count
# changed. Which model depends on the pretrained one we start from (section 5): the shipped
# Shapes model when this install has it, else a light model trained here for a minute.

# %% tags=["nbval-ignore-output"]
from importlib import resources

import yaml

from ssdlib.config import load_config

try:
    from ssdlib.model.shipped import shipped_path

    HAVE_SHIPPED = shipped_path("shapes").is_file()
except (ImportError, FileNotFoundError):
    HAVE_SHIPPED = False
WIDTH = 1.0 if HAVE_SHIPPED else 0.5

own = yaml.safe_load((resources.files("ssdlib") / "configs" / "shapes.yaml").read_text())
own["model"].update(num_classes=len(CLASSES), width=WIDTH)
own["data"].update(dataset="yolo", root=str(FOLDER), train_splits=["train"], test_split="val",
                   class_names=CLASSES, augment="light", num_workers=0)
own["train"].update(batch_size=16, max_iter=100, lr=0.02, warmup_iters=10, lr_steps=[80],
                    checkpoint_period=100, log_period=20, amp="off", device="cpu", seed=0)
OWN_YAML = WORK / "own.yaml"
OWN_YAML.write_text(yaml.safe_dump(own, sort_keys=False))
cfg = load_config(OWN_YAML)
print(f"{cfg.model.name} width {cfg.model.width}, {cfg.model.num_classes} classes {cfg.data.class_names}")

# %% [markdown]
# ## 4. Do the priors fit your objects?
#
# SSD learns only from the priors matched to an object: those at IoU ≥ `train.iou_threshold`,
# plus each object's single best prior (the *forced* match) whatever its IoU. An object whose
# best IoU is low gets one poor positive: such objects are detected badly. `anchors analyze`
# measures this on the objects as the model sees them (after the resize to the input size):
# best IoU per object, **coverage** (the fraction with a prior at IoU ≥ the threshold),
# positives per object, all by size and aspect ratio.

# %% tags=["nbval-ignore-output"]
import json

from IPython.display import Image as ShowImage
from IPython.display import display

from ssdlib.cli import main as ssdlib_cli

assert ssdlib_cli(["anchors", "analyze", "--config", str(OWN_YAML), "--json", str(WORK / "anchors.json"),
                   "--plot", str(WORK / "anchors.png")]) == 0
analysis = json.loads((WORK / "anchors.json").read_text())
display(ShowImage(str(WORK / "anchors.png")))

# %% tags=["nbval-ignore-output"]
# The generated objects are Shapes objects: the Shapes priors were designed for them.
print(f"{analysis['num_objects']} objects, coverage {analysis['coverage']:.3f}, "
      f"mean best IoU {analysis['mean_best_iou']:.3f}")
assert analysis["num_objects"] > 1000 and analysis["coverage"] > 0.95

# %% [markdown]
# `anchors fit` searches the priors section (min/max sizes per map, aspect-ratio sets,
# densification; feature maps and strides are the network's) for a better coverage with at
# most `--budget` priors (default: the current count + 10 %). The search is deterministic and
# scores a candidate in O(objects × prior shapes): the best prior of one shape is the one at the
# nearest grid centre.
#
# **Trade-off when fine-tuning**: other aspect ratios or densification change the number of
# priors per location, so that map's box head no longer fits the pretrained one and starts
# fresh. Fit first when coverage is poor (objects much smaller, larger or longer than the
# priors); here it is already high, so we keep the pretrained model's priors.

# %% tags=["nbval-ignore-output"]
assert ssdlib_cli(["anchors", "fit", "--config", str(OWN_YAML), "--out", str(WORK / "fitted.yaml"),
                   "--json", str(WORK / "fit.json")]) == 0
fit = json.loads((WORK / "fit.json").read_text())
assert fit["after"]["coverage"] >= fit["before"]["coverage"]
assert fit["after"]["num_priors"] <= fit["budget"]

# %% [markdown]
# ## 5. Fine-tune a pretrained detector to two classes
#
# `train.init_weights` takes `torchvision-coco` (SSD300), `shapes` (the shipped Shapes model)
# or a checkpoint file. Every tensor whose **name and shape** fit is loaded. The class head has
# `boxes per location × (classes + 1)` outputs: 3 per box here against 6 in the five-class
# source, so it is re-initialised, and the run prints what and why. We compare with the same
# run from scratch: same seed, same batches, same steps.

# %% tags=["nbval-ignore-output"]
from ssdlib.engine import train

if HAVE_SHIPPED:
    SOURCE = "shapes"
else:  # a quick light model on the five-class Shapes data (about a minute)
    quick = load_config("shapes", [f"model.width={WIDTH}", "train.max_iter=150", "train.batch_size=16",
                                   "train.lr=0.02", "train.lr_steps=[120]", "train.warmup_iters=10",
                                   "train.amp=off", "train.device=cpu", "train.checkpoint_period=150",
                                   "data.num_train=2400", "data.views=1"])
    SOURCE = str(train(quick, WORK / "quick_shapes", resume=False, progress=False).checkpoint)
print("pretrained source:", SOURCE)

# %% tags=["nbval-ignore-output"]
tuned_cfg = load_config(OWN_YAML, [f"train.init_weights={SOURCE}"])
tuned = train(tuned_cfg, WORK / "tuned", resume=False, progress=False)
scratch = train(cfg, WORK / "scratch", resume=False, progress=False)

# %% tags=["nbval-ignore-output"]
import matplotlib.pyplot as plt


def smooth(v, k=10):
    return np.convolve(v, np.ones(k) / k, mode="valid")


fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(smooth(scratch.losses), label="from scratch")
source_name = "the shipped model" if HAVE_SHIPPED else "a quick model"
ax.plot(smooth(tuned.losses), label=f"fine-tuned from {source_name}")
ax.set(xlabel="iteration", ylabel="training loss (10-step mean)", title="Same seed, batches and steps")
ax.legend()
plt.show()
late_tuned, late_scratch = np.mean(tuned.losses[-20:]), np.mean(scratch.losses[-20:])
print(f"last 20 steps: fine-tuned {late_tuned:.2f}, from scratch {late_scratch:.2f}; mean of all "
      f"steps {np.mean(tuned.losses):.2f} vs {np.mean(scratch.losses):.2f}")
# From the shipped model the loss starts low and stays far below the run from scratch.
assert np.mean(tuned.losses) < np.mean(scratch.losses)

# %% [markdown]
# ## 6. Evaluate and predict
#
# `build_test_data` reads the config's `test_split` (`val`) through the same loader;
# `evaluate` gives the VOC07 mAP per class.

# %% tags=["nbval-ignore-output"]
from ssdlib.engine.datasets import build_test_data
from ssdlib.engine.evaluator import evaluate
from ssdlib.metrics.voc import format_table

test = build_test_data(cfg, progress=False)
scores = {}
for name, run in (("fine-tuned", tuned), ("from scratch", scratch)):
    result = evaluate(run.model.eval(), test.dataset, 20, "cpu", ("voc",), class_names=CLASSES,
                      progress=False)
    scores[name] = float(result.voc["map"])
    print(name)
    print(format_table(result.voc, CLASSES))
assert scores["fine-tuned"] > scores["from scratch"] - 0.05

# %% tags=["nbval-ignore-output"]
from ssdlib.data import YOLODataset, build_test_transform
from ssdlib.viz.draw import draw_detections

val = YOLODataset(FOLDER, "val")
image, truth = val[0]
batch = build_test_transform(cfg.input.image_size, cfg.input.pixel_mean, cfg.input.pixel_std)(image, truth)[0]
with torch.no_grad():
    det = tuned.model.eval().predict(batch[None], score_threshold=0.4)[0]
h, w = image.shape[-2:]
boxes = det.boxes * torch.tensor([w, h, w, h])
fig, axes = plt.subplots(1, 2, figsize=(9, 4.6))
axes[0].imshow(draw_detections(image, truth["boxes"], truth["labels"], None, CLASSES))
axes[0].set_title("labels")
axes[1].imshow(draw_detections(image, boxes, det.labels, det.scores, CLASSES))
axes[1].set_title("fine-tuned detector (score ≥ 0.4)")
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# ## With your own folder
#
# ```
# python -m ssdlib data validate FOLDER
# python -m ssdlib anchors analyze --config own.yaml --plot anchors.png
# python -m ssdlib anchors fit --config own.yaml --out fitted.yaml
# python -m ssdlib train --config own.yaml train.init_weights=shapes   # or torchvision-coco, FILE
# python -m ssdlib eval --config own.yaml --ckpt outputs/own/model_0000100.pth   # the newest model_*.pth
# ```
#
# VOC-format folders (`data.dataset: voc`) and COCO jsons (`coco`) go through the same steps.
#
# ## Summary
#
# - A YOLO export (`images/`, `labels/*.txt`, `data.yaml`) is `data.dataset: yolo`; VOC and COCO
#   folders go through the same target format, validation and training.
# - `python -m ssdlib data validate FOLDER` lists every problem before training starts.
# - `anchors analyze` says how well the priors cover your objects (best IoU, coverage by size);
#   `anchors fit` searches the priors section for a better coverage under a prior budget.
# - `train.init_weights=shapes | torchvision-coco | FILE` starts from a trained detector: what
#   fits is loaded, the class head starts fresh for your class count, and the loss falls faster
#   than from scratch.
#
# ## Exercises
#
# 1. Relabel the folder into *three* classes (say circles, polygons, stars) and fine-tune again.
#    Which parts of the pretrained model still load?
# 2. Run `anchors analyze` with `train.iou_threshold=0.5` instead of 0.4: how does coverage
#    change, and which object sizes lose most?
#
# <details><summary>Solution 1</summary>
#
# Only the class head depends on the class count: `boxes per location × (classes + 1)` outputs
# per map, now 4 per box instead of 3. The backbone, the extra layers and the box head load
# exactly as before; the run's printout lists the class-head tensors it re-initialised.
# </details>
#
# <details><summary>Solution 2</summary>
#
# ```python
# ssdlib_cli(["anchors", "analyze", "--config", str(OWN_YAML), "train.iou_threshold=0.5"])
# ```
# Coverage drops, most for the smallest objects: at stride 8 an object of 8-16 px has a prior at
# IoU ≥ 0.5 only if it lies within a pixel or two of a prior's centre.
# </details>
