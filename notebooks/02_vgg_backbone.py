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
# # 02 · The VGG16 backbone, L2Norm and the multibox heads
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# [colab]: https://colab.research.google.com/github/ssdlib/ssdlib/blob/main/notebooks/02_vgg_backbone.ipynb
#
# **What you will learn** (about 25 minutes; runs in about a minute on a CPU, random weights, no
# download)
#
# - how SSD300 turns VGG16 into a 6-map feature pyramid (38, 19, 10, 5, 3, 1);
# - why a **fully connected layer is a convolution**, shown on numbers;
# - the **fc6/fc7 → conv6/conv7** conversion: decimating 4096×25088 weights into a dilated
#   1024×512×3×3 convolution, on real tensors;
# - **dilation and receptive fields**, computed per map and compared with the default boxes;
# - why conv4_3 needs **L2Norm**;
# - the multibox heads' output layout and the parameter count (**26,285,486** for 21 classes,
#   the same as torchvision's `ssd300_vgg16`);
# - SSDLite320 with MobileNetV3-Large beside it: parameters, FLOPs and CPU latency.
#
# Library functions used: `ssdlib.model.VGG16Backbone`, `L2Norm`, `SSDHead`, `build_model`,
# `feature_map_sizes`, `ssdlib.model.vgg16_reduced_from_torchvision`,
# `ssdlib.model.summary.model_summary`, `ssdlib.viz.anchors.receptive_fields`, `prior_index`,
# `ssdlib.bench.models.count_flops`.

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
# ## From VGG16 to SSD300
#
# SSD keeps VGG16's convolutions conv1_1 … conv5_3 and changes four things (paper section 3):
#
# 1. pool3 rounds up (`ceil_mode`), so 75 → 38 and conv4_3 is 38×38;
# 2. pool5 becomes 3×3 with stride 1: conv5_3's 19×19 resolution is kept;
# 3. the fully connected fc6 and fc7 become convolutions conv6 (3×3, **dilation 6**) and conv7
#    (1×1), 1024 channels each, initialised by subsampling fc6/fc7;
# 4. extra layers conv8_2 … conv11_2 halve the resolution down to 1×1.
#
# Predictions are made on six maps: conv4_3 (L2-normalised), conv7, conv8_2, conv9_2, conv10_2,
# conv11_2. `feature_map_sizes` runs the backbone on the meta device (shapes only, no compute):

# %% tags=["nbval-check-output"]
from ssdlib.model import VGG16Backbone, feature_map_sizes

torch.manual_seed(0)
backbone = VGG16Backbone(300)
print("map sizes: ", feature_map_sizes(backbone, 300))
print("channels:  ", backbone.out_channels)
print("SSD512:    ", feature_map_sizes(VGG16Backbone(512), 512))

# %% tags=["nbval-check-output"]
print(backbone.extra[0])   # pool4, conv5_1..conv5_3, pool5 (3x3, stride 1), conv6 (dilated), conv7

# %% [markdown]
# ## A fully connected layer is a convolution
#
# A fully connected layer on a $C \times k \times k$ input computes, for each output, a weighted
# sum of all $C k^2$ inputs. A $k \times k$ convolution with one $C \times k \times k$ kernel per
# output computes exactly that sum — at one position when the input is $k \times k$, and at every
# position when it is larger. So fc weights of shape (out, $C k^2$) *are* a convolution's
# (out, C, k, k), only reshaped. With small integers (so every sum is exact), 2 channels, 3×3:

# %% tags=["nbval-check-output"]
import torch.nn.functional as F

torch.manual_seed(0)
fc = torch.nn.Linear(2 * 3 * 3, 4)
with torch.no_grad():                               # integers: exact sums, same on every CPU
    fc.weight.copy_(torch.randint(-2, 3, (4, 18)))
    fc.bias.copy_(torch.tensor([1.0, 0, -1, 2]))
x = torch.randint(0, 4, (1, 2, 3, 3)).float()       # a 2 x 3 x 3 input
kernels = fc.weight.view(4, 2, 3, 3)                # the same 72 numbers, seen as 4 kernels
print("fc weights, output 0:  ", fc.weight[0].int().tolist())
print("as its 2 x 3x3 kernel: ", kernels[0].int().tolist())
with torch.no_grad():
    print("fc(x.flatten()):       ", fc(x.flatten(1))[0].tolist())
    print("conv2d(x, kernels):    ", F.conv2d(x, kernels, fc.bias)[0, :, 0, 0].tolist())
    # On a larger input the convolution applies the fc layer to every 3x3 window:
    big = torch.randint(0, 4, (1, 2, 5, 5)).float()
    maps = F.conv2d(big, kernels, fc.bias)          # (1, 4, 3, 3)
    windows = [fc(big[:, :, i:i + 3, j:j + 3].flatten(1)) for i in range(3) for j in range(3)]
assert torch.equal(fc(x.flatten(1)), F.conv2d(x, kernels, fc.bias).flatten(1))
assert torch.equal(torch.cat(windows).T.reshape(1, 4, 3, 3), maps)
print("5x5 input -> output 0 at each of the 3x3 window positions:", maps[0, 0].tolist())

# %% [markdown]
# VGG16's fc6 is the same on a larger scale: 4096 outputs of pool5's 512 × 7 × 7 values, so its
# (4096, 25088) weights are a 7×7 convolution with 512 input channels (random weights here):

# %% tags=["nbval-check-output"]
from torchvision.models import vgg16

torch.manual_seed(0)
vgg = vgg16(weights=None)
fc6_layer = vgg.classifier[0]                       # Linear(25088, 4096)
pool5 = torch.rand(1, 512, 7, 7)
with torch.no_grad():
    as_fc = fc6_layer(pool5.flatten(1))                                         # (1, 4096)
    as_conv = F.conv2d(pool5, fc6_layer.weight.view(4096, 512, 7, 7), fc6_layer.bias)  # (1, 4096, 1, 1)
print("fc6 weight", tuple(fc6_layer.weight.shape), "-> conv kernel", (4096, 512, 7, 7))
print("fc6 output", tuple(as_fc.shape), " conv output", tuple(as_conv.shape))
assert torch.allclose(as_fc, as_conv.flatten(1), atol=1e-5)
print("equal up to float rounding: True")

# %% [markdown]
# ## fc6/fc7 → conv6/conv7: decimation
#
# Seen as a convolution, as above, fc6 is a 7×7 kernel with 4096 outputs — far too big. The paper
# subsamples it: keep every 4th output (4096 → 1024) and every 3rd tap of the 7×7 kernel
# (→ 3×3). Taps 3 apart on the kernel cover the same 7×7 extent only if the 3×3 convolution
# skips pixels: **dilation** 3 at the original resolution, 6 here because pool5 no longer halves
# the map. fc7 (4096×4096) becomes a 1×1 convolution keeping every 4th output and input.
#
# On real tensors — the torchvision VGG16 above, random weights (`weights=None`: nothing
# is downloaded; with `VGG16_Weights.IMAGENET1K_V1` the same function converts the ImageNet
# weights, which `model.backbone_weights: imagenet` does):

# %% tags=["nbval-check-output"]
from ssdlib.model import vgg16_reduced_from_torchvision

fc6, fc7 = vgg.classifier[0].weight, vgg.classifier[3].weight
print("fc6:", tuple(fc6.shape), " fc7:", tuple(fc7.shape))
reduced = vgg16_reduced_from_torchvision(vgg.state_dict())
conv6, conv7 = reduced["extra.0.7.1.weight"], reduced["extra.0.7.3.weight"]
print("conv6:", tuple(conv6.shape), " conv7:", tuple(conv7.shape))

# %% [markdown]
# The same decimation from scratch, checked equal to ssdlib's:

# %% tags=["nbval-check-output"]
fc6_as_conv = fc6.detach().view(4096, 512, 7, 7)        # (out, in, kh, kw): C, H, W flattened
my_conv6 = fc6_as_conv[::4, :, ::3, ::3]                # 1024 outputs, taps 0, 3, 6
my_conv7 = fc7.detach()[::4, ::4].view(1024, 1024, 1, 1)
assert torch.equal(my_conv6, conv6) and torch.equal(my_conv7, conv7)
missing, unexpected = backbone.load_state_dict(reduced, strict=False)
print(f"loaded {len(reduced)} tensors; left at their init: {sorted({k.split('.')[0] for k in missing})}")
assert not unexpected


# %% [markdown]
# ## Dilation and receptive fields
#
# A unit's **receptive field** is the input region that can influence it. Going through a layer
# with kernel $k$, stride $s$ and dilation $d$, with $j$ the distance in input pixels between
# neighbouring units so far (the *jump*):
#
# $$r \leftarrow r + d\,(k-1)\,j, \qquad j \leftarrow j\,s.$$
#
# A small function over (kernel, stride, dilation) triples for conv1_1 … conv4_3:

# %% tags=["nbval-check-output"]
def receptive_field(layers):
    r, j = 1, 1
    for k, s, d in layers:
        r, j = r + d * (k - 1) * j, j * s
    return r, j


conv3, pool = (3, 1, 1), (2, 2, 1)
conv4_3 = [conv3, conv3, pool, conv3, conv3, pool, conv3, conv3, conv3, pool, conv3, conv3, conv3]
print("conv4_3: receptive field {} px, jump {} px".format(*receptive_field(conv4_3)))
conv7 = conv4_3 + [pool, conv3, conv3, conv3, (3, 1, 1), (3, 1, 6), (1, 1, 1)]
print("conv7:   receptive field {} px, jump {} px".format(*receptive_field(conv7)))

# %% [markdown]
# `receptive_fields` does the same for any backbone by recording its layers during a meta-device
# forward pass. The two agree, and the table compares each map with its default boxes:

# %% tags=["nbval-check-output"]
from ssdlib.config import load_config
from ssdlib.viz.anchors import receptive_fields

p = load_config("ssd300_voc").priors
fields = receptive_fields(backbone, 300)
assert (fields[0].size, fields[0].jump) == receptive_field(conv4_3)
assert (fields[1].size, fields[1].jump) == receptive_field(conv7)
names = ["conv4_3", "conv7", "conv8_2", "conv9_2", "conv10_2", "conv11_2"]
print(f"{'map':>9} {'size':>6} {'RF px':>6} {'jump':>5} {'stride':>7} {'min box':>8} {'max box':>8}")
for n, f, r, s, lo, hi in zip(names, p.feature_maps, fields, p.strides, p.min_sizes, p.max_sizes):
    print(f"{n:>9} {f:>3}x{f:<2} {r.size:>6} {r.jump:>5} {s:>7g} {lo:>8g} {hi:>8g}")

# %% [markdown]
# Two lessons. (1) Without dilation, conv6 would add $2 \cdot 16 = 32$ px instead of
# $12 \cdot 16 = 192$: conv7 would see 260 px, not 420 — dilation is how SSD keeps fc6's large
# field of view at 19×19 resolution. (2) Every map's theoretical receptive field is larger than
# its boxes (the *effective* receptive field is much smaller, roughly Gaussian in the centre),
# and the last maps' jumps (64) differ from the configs' strides (100, 300): the priors are placed
# by the strides in the config, not by the network's geometry.

# %% tags=["nbval-check-output"]
from ssdlib.viz.figures import fig_receptive_fields

fig_receptive_fields()

# %% [markdown]
# ## L2Norm: why conv4_3 is normalised
#
# conv4_3 sits early in the network; its activations have a different scale from the deeper maps
# (with ImageNet weights, much larger). All six maps feed heads trained with one learning rate, so
# the paper (following ParseNet) L2-normalises conv4_3 across channels at each location and
# multiplies by a learned per-channel scale initialised to 20:
#
# $$\hat x_{c} = \gamma_c \, \frac{x_c}{\lVert x \rVert_2}, \qquad \gamma_c = 20 \text{ at init}.$$
#
# The per-location norm of conv4_3 vs conv7 on a random image (random weights here; run it with
# `backbone_weights: imagenet` to see the gap of trained weights):

# %% tags=["nbval-check-output"]
from ssdlib.model import L2Norm

torch.manual_seed(0)
x = torch.rand(1, 3, 300, 300) * 255 - torch.tensor([123.0, 117.0, 104.0]).view(1, 3, 1, 1)
with torch.no_grad():
    c43 = backbone.features(x)                 # conv4_3 + ReLU, before L2Norm
    c7 = backbone.extra[0](c43)               # ... conv7
    normed = backbone.l2norm(c43)
for name, t in (("conv4_3", c43), ("conv7", c7), ("L2Norm(conv4_3)", normed)):
    norms = t.norm(dim=1)                       # (1, H, W): norm over channels per location
    print(f"{name:>16}: {tuple(t.shape[1:])}, mean norm per location {norms.mean():10.1f}")
assert torch.allclose(normed.norm(dim=1), torch.full((1, 38, 38), 20.0), atol=1e-3)
assert isinstance(backbone.l2norm, L2Norm) and backbone.l2norm.weight.shape == (512,)

# %% [markdown]
# ## The multibox heads and their output layout
#
# For each map, one 3×3 convolution predicts $n_k \cdot (C+1)$ class scores and one predicts
# $n_k \cdot 4$ offsets at every location ($n_k$ = boxes per location, $C+1$ = 21 for VOC). The
# outputs are reordered to (B, location, box, value) and concatenated over maps, so that row $p$
# of the output belongs to prior $p$ of `generate_priors`.

# %% tags=["nbval-check-output"]
from ssdlib.model import build_model

cfg = load_config("ssd300_voc", ["model.backbone_weights=none"])
torch.manual_seed(0)
model = build_model(cfg).eval()
for k, (c, r) in enumerate(zip(model.head.cls_heads, model.head.reg_heads)):
    print(f"map {k}: cls {c.in_channels:>4} -> {c.out_channels:>3}, "
          f"reg {r.in_channels:>4} -> {r.out_channels:>2}")
images = torch.randn(1, 3, 300, 300)
with torch.no_grad():
    feats = model.backbone(images)
    cls_logits, box_deltas = model.head(feats)
print("cls_logits", tuple(cls_logits.shape), " box_deltas", tuple(box_deltas.shape))

# %% [markdown]
# Check the layout: the 21 scores of box $a$ at location $(i, j)$ of map $k$ are channels
# $21a … 21a+20$ of that map's classification convolution, and they land at row
# `prior_index(k, i, j) + a`:

# %% tags=["nbval-check-output"]
from ssdlib.viz.anchors import prior_index

k, i, j, a = 2, 4, 7, 3
with torch.no_grad():
    raw = model.head.cls_heads[k](feats[k])              # (1, 6 * 21, 10, 10)
row = prior_index(cfg.priors, k, i, j) + a
print(f"map {k}, location ({i}, {j}), box {a} -> output row {row}")
assert torch.equal(raw[0, 21 * a : 21 * (a + 1), i, j], cls_logits[0, row])

# %% [markdown]
# ## Parameters
#
# `model_summary` (also `python -m ssdlib info --config ssd300_voc`) lists the priors per map and
# the parameters. torchvision's `ssd300_vgg16` for 21 classes has the same architecture:

# %% tags=["nbval-check-output"]
from torchvision.models.detection import ssd300_vgg16

from ssdlib.model.summary import model_summary

print(model_summary(cfg))
tv = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21)
n_ours = sum(t.numel() for t in model.parameters())
n_tv = sum(t.numel() for t in tv.parameters())
print(f"torchvision ssd300_vgg16(num_classes=21): {n_tv:,}")
assert n_ours == n_tv == 26_285_486

# %% [markdown]
# The light model of the Shapes lessons has 17.3× fewer parameters and trains on a CPU:

# %% tags=["nbval-check-output"]
print(model_summary(load_config("shapes")))
n_light = sum(t.numel() for t in build_model(load_config("shapes")).parameters())
print(f"SSD300 (VOC) / light: {n_ours:,} / {n_light:,} = {n_ours / n_light:.1f}x")

# %% [markdown]
# ## A light alternative: SSDLite320 with MobileNetV3-Large
#
# SSD's recipe (a backbone's maps + extra blocks + one head per map) works with any backbone.
# `ssdlite320_mobilenet_v3_large` is torchvision's mobile version: MobileNetV3-Large cut at
# strides 16 and 32 (672 and 960 channels), four extra blocks down to 1×1 (maps 20, 10, 5, 3, 2,
# 1 at 320 px), and **depthwise-separable** heads: a 3×3 convolution per channel (+ BN, ReLU6)
# then a 1×1 convolution, instead of one dense 3×3 convolution. A dense 3×3 head from $C$ to
# $n$ channels has $9Cn$ weights, the separable one $9C + Cn$. Parameters and convolution FLOPs
# (counted by `FlopCounterMode`: a multiply-add is 2 FLOPs) for one image, VOC's 21 classes:

# %% tags=["nbval-check-output"]
from torchvision.models.detection import ssdlite320_mobilenet_v3_large

from ssdlib.bench.models import count_flops

lite_cfg = load_config("ssdlite320_voc", ["model.backbone_weights=none"])
lite = build_model(lite_cfg).eval()
n_lite = sum(t.numel() for t in lite.parameters())
flops_vgg = count_flops(model, torch.zeros(1, 3, 300, 300))
flops_lite = count_flops(lite, torch.zeros(1, 3, 320, 320))
print(f"{'model':<28} {'input':>6} {'priors':>7} {'parameters':>11} {'GFLOPs':>7}")
print(f"{'SSD300 VGG16':<28} {300:>6} {model.priors.shape[0]:>7} {n_ours:>11,} {flops_vgg / 1e9:>7.2f}")
print(f"{'SSDLite320 MobileNetV3-L':<28} {320:>6} {lite.priors.shape[0]:>7} {n_lite:>11,} "
      f"{flops_lite / 1e9:>7.2f}")
print(f"ratio: {n_ours / n_lite:.1f}x parameters, {flops_vgg / flops_lite:.0f}x FLOPs")
# torchvision builds the same network; without ImageNet weights it halves the last stage
# ("reduced tail", 480 channels), which ssdlib's config states as model.reduced_tail.
reduced = build_model(load_config("ssdlite320_voc", ["model.backbone_weights=none",
                                                     "model.reduced_tail=true"]))
n_reduced = sum(t.numel() for t in reduced.parameters())
tv_lite = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)
print(f"reduced tail: {n_reduced:,}; torchvision ssdlite320_mobilenet_v3_large(num_classes=21): "
      f"{sum(t.numel() for t in tv_lite.parameters()):,}")
assert n_reduced == sum(t.numel() for t in tv_lite.parameters())

# %% [markdown]
# FLOPs are not time: a depthwise convolution does little arithmetic per byte it reads, so a CPU
# runs it far below its peak. Measured: the CPU time of one `predict` (network + decoding + NMS,
# batch 1, fp32) on one thread, the median of 5 calls. CPU time rather than wall time, so other
# programs running on the machine do not count; the numbers still vary from CPU to CPU:

# %% tags=["nbval-ignore-output"]
import time


def cpu_ms(net, size: int, repeats: int = 5) -> float:
    """Median CPU time of ``net.predict`` on one random image, one thread, in milliseconds."""
    x = torch.randn(1, 3, size, size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: process CPU time is then this call's compute
    try:
        net.predict(x)  # warm-up: oneDNN picks its kernels on the first call
        times = []
        for _ in range(repeats):
            start = time.process_time()
            net.predict(x)
            times.append(time.process_time() - start)
    finally:
        torch.set_num_threads(threads)
    return sorted(times)[len(times) // 2] * 1e3


ms_vgg, ms_lite = cpu_ms(model, 300), cpu_ms(lite, 320)
print(f"CPU time per image, 1 thread: SSD300 VGG16 {ms_vgg:.0f} ms, SSDLite320 {ms_lite:.0f} ms: "
      f"{ms_vgg / ms_lite:.1f}x less ({flops_vgg / flops_lite:.0f}x fewer FLOPs)")
assert ms_vgg / ms_lite > 2  # fewer FLOPs do win, by less than their ratio

# %% [markdown]
# `ssdlib.model.pretrained_model("torchvision-ssdlite-coco")` loads torchvision's COCO weights
# (21.3 COCO AP) into this model; `ssdlite320_voc` trains it on VOC from ImageNet weights.

# %% [markdown]
# ## Summary
#
# - SSD300 = VGG16 conv1_1…conv5_3 (pool3 ceil, pool5 3×3/1) + conv6 (3×3, dilation 6) + conv7
#   (1×1) + 4 extra blocks → maps 38, 19, 10, 5, 3, 1.
# - A fully connected layer on a $C \times k \times k$ input is a $k \times k$ convolution with the
#   same weights reshaped to (out, C, k, k); on a larger input it slides.
# - conv6/conv7 are fc6/fc7 decimated: `fc6.view(4096, 512, 7, 7)[::4, :, ::3, ::3]` and
#   `fc7[::4, ::4]`; dilation restores fc6's field of view (receptive field of conv7: 420 px).
# - conv4_3 is L2-normalised with a learned scale (init 20).
# - The heads are 3×3 convolutions whose outputs, reordered, line up with the priors;
#   26,285,486 parameters for VOC.
# - SSDLite320 (MobileNetV3-Large, depthwise-separable heads) has 6.5× fewer parameters and
#   59× fewer FLOPs than SSD300, and needs many times less CPU time per image, though not 59×
#   less (depthwise convolutions run far below a CPU's peak).
# - Why small objects are hard even for the stride-8 conv4_3 map: the [FAQ](../README.md#faq).
#
# ## Exercises
#
# 1. What would conv7's receptive field be if conv6 had dilation 1? If pool5 still halved the map?
# 2. How many parameters does the model have for COCO (80 classes)? Where do the extra ones sit?
# 3. Which output rows hold the predictions of the 1×1 map?
#
# <details><summary>Solution 1</summary>
#
# ```python
# receptive_field(conv4_3 + [pool, conv3, conv3, conv3, (3, 1, 1), (3, 1, 1), (1, 1, 1)])  # (260, 16)
# ```
# With a halving pool5, `(2, 2, 1)` instead of `(3, 1, 1)`, conv5_3's 196 px grow to 212 and the jump
# to 32, so dilation 6 would see 212 + 12 · 32 = 596 px — but on a 10×10 map. The paper's pool5
# keeps 19×19 *and* a large view.
# </details>
#
# <details><summary>Solution 2</summary>
#
# **34,305,206** parameters, 8,019,720 more than for VOC. Only the classification heads change:
# 81 instead of 21 scores per box is 60 more outputs per box, so
# $\sum_k 3 \cdot 3 \cdot C_k \cdot n_k \cdot 60 = 540 \cdot 14848 = 8{,}017{,}920$ more weights
# ($C_k$ = 512, 1024, 512, 256, 256, 256 input channels, $n_k$ = 4, 6, 6, 6, 4, 4 boxes) and
# $60 \cdot 30 = 1800$ more biases.
# ```python
# coco = build_model(load_config("ssd300_coco", ["model.backbone_weights=none"]))
# sum(t.numel() for t in coco.parameters())   # 34305206
# ```
# </details>
#
# <details><summary>Solution 3</summary>
#
# The last 4 rows, 8728 … 8731: `prior_index(cfg.priors, 5, 0, 0)` is 8728.
# </details>
