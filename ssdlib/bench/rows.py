"""The CPU rows of ``ssdlib bench``: each function measures ssdlib and its peer, returns Rows.

Every row builds its inputs outside the timed calls and times whole user-visible operations
(``predict`` including post-processing, a full optimiser step), never internals in isolation
unless the row is about that internal (post-processing, matching).
"""

from __future__ import annotations

import copy
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ssdlib.bench.match_rows import match_rows
from ssdlib.bench.models import Pair, build_pair, count_flops, normalise, peer_images, random_targets
from ssdlib.bench.timing import Row, measure_pair, torch_threads
from ssdlib.bench.voc_eval import synthetic_detections, voc_row

NO_BF16 = "skipped: no bf16 support on this CPU"


@dataclass
class Settings:
    """Repeat counts and sizes; ``quick`` shrinks them to a smoke test."""

    quick: bool = False
    repeats: int = 5
    warmup: int = 1
    bf16: tuple[bool, str] = (False, "not checked")  # cpu_features.bf16_support()

    @property
    def big_batch(self) -> int:
        return 2 if self.quick else 8

    @property
    def heavy_warmup(self) -> int:
        """Warm-up calls for the seconds-long rows (none in quick mode: structure only)."""
        return 0 if self.quick else self.warmup


def _quick_note(s: Settings, batch: int, nominal: int) -> str:
    return f" [quick: batch {batch}, not {nominal}]" if batch != nominal else ""


def skipped_bf16_row(name: str, s: Settings) -> Row:
    """A bf16 row on a CPU that would only emulate bf16 (timing that measures nothing useful)."""
    return Row(name, None, None, f"{NO_BF16} ({s.bf16[1]})")


def inference_rows(s: Settings, pair: Pair) -> list[Row]:
    """``inference_b1``, ``inference_b8`` (fp32, channels_last) and ``inference_b8_bf16``."""
    from ssdlib.model.ssd import prepare_for_inference

    fp32 = prepare_for_inference(copy.deepcopy(pair.ours), channels_last=True)
    cases = [("inference_b1", 1, fp32), ("inference_b8", s.big_batch, fp32)]
    bf16 = None
    if s.bf16[0]:
        bf16 = prepare_for_inference(copy.deepcopy(pair.ours), channels_last=True, dtype=torch.bfloat16)
        cases.append(("inference_b8_bf16", s.big_batch, bf16))
    flops = count_flops(pair.ours, normalise(peer_images(1)))
    rows = []
    with torch.inference_mode():
        for name, batch, model in cases:
            images = peer_images(batch)
            ours_s, peer_s = measure_pair(
                lambda m=model, x=images: m.predict(normalise(x)),
                lambda x=images: pair.peer(x),
                s.repeats, s.heavy_warmup,
            )  # fmt: skip
            note = (f"predict incl. normalise+NMS vs torchvision eval (its transform resizes "
                    f"300->300 + normalises); {flops / 1e9:.1f} GFLOP/img")  # fmt: skip
            if model is bf16:
                note = "bf16 weights + channels_last vs torchvision fp32; " + note
            else:
                note = "fp32 channels_last; " + note
            target = "<= 0.5x" if model is bf16 else "<= 0.85x"
            rows.append(Row(name, ours_s, peer_s, note + _quick_note(s, batch, 8 if batch > 1 else 1),
                            target, flops=flops * batch,
                            dtype=torch.bfloat16 if model is bf16 else torch.float32))  # fmt: skip
    if bf16 is None:
        rows.append(skipped_bf16_row("inference_b8_bf16", s))
    return rows


def bf16_agreement(pair: Pair, batch: int = 2) -> str:
    """How far bf16 inference drifts from fp32 on the same (random-weight) model: max |Δ| of
    class probabilities and of decoded box coordinates (relative units)."""
    from ssdlib.boxes import decode
    from ssdlib.model.ssd import prepare_for_inference

    bf16 = prepare_for_inference(copy.deepcopy(pair.ours), channels_last=True, dtype=torch.bfloat16)
    x = normalise(peer_images(batch, seed=1))
    with torch.inference_mode():
        c32, d32 = pair.ours(x)
        c16, d16 = bf16(x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
        p_err = (c32.softmax(-1) - c16.float().softmax(-1)).abs().max().item()
        priors = pair.ours.priors
        b_err = (decode(d32, priors) - decode(d16.float(), priors)).abs().max().item()
    return f"bf16 vs fp32 (random weights): max |dp| {p_err:.3f}, max |dbox| {b_err:.4f}"


def postprocess_row(s: Settings, pair: Pair) -> Row:
    """Decode + per-class NMS + top-k of a batch of 8, on each model's own head outputs."""
    from torchvision.models.detection.image_list import ImageList

    from ssdlib.postprocess import detect

    batch = 8
    images = peer_images(batch)
    x = normalise(images)
    with torch.inference_mode():
        cls_logits, box_deltas = pair.ours(x)
        tv = pair.peer
        features = list(tv.backbone(x).values())
        head = tv.head(features)
        sizes = [(300, 300)] * batch
        anchors = tv.anchor_generator(ImageList(x, sizes), features)
        kwargs = pair.postprocess_kwargs()
        with torch_threads(1):
            ours_s, peer_s = measure_pair(
                lambda: detect(cls_logits, box_deltas, pair.ours.priors, **kwargs),
                lambda: tv.postprocess_detections(head, anchors, sizes),
                s.repeats * 2, s.warmup,
            )  # fmt: skip
    note = (f"{ours_s / batch * 1e3:.2f} ms/img (peer {peer_s / batch * 1e3:.2f}); softmax, "
            "decode, >0.01, top-400/class, NMS 0.45, 200/img; torchvision postprocess_detections"
            "; both 1 thread")
    return Row("postprocess_b8", ours_s, peer_s, note, "<= 5 ms/img")


def train_step_row(s: Settings, pair: Pair, amp_dtype: torch.dtype | None = None) -> Row:
    """One SGD step (forward, matching, loss, backward, update) on the same batch and boxes;
    ours under ``amp_dtype`` autocast when given (``train_step_b8_bf16``), the peer in fp32."""
    from torch.utils.flop_counter import FlopCounterMode

    from ssdlib.engine.cpu_features import channels_last_for_training
    from ssdlib.engine.nonfinite import grads_finite
    from ssdlib.engine.trainer import compute_loss
    from ssdlib.loss import MultiBoxLoss

    if amp_dtype is not None and not s.bf16[0]:
        return skipped_bf16_row("train_step_b8_bf16", s)

    batch = 8 if not s.quick else 1
    images = peer_images(batch)
    boxes, labels = random_targets(batch)
    # The layout training would choose here (train.channels_last=auto).
    cpu = torch.device("cpu")
    nhwc = channels_last_for_training("auto", "ssd300_vgg16", cpu)
    layout = torch.channels_last if nhwc else torch.contiguous_format
    ours = copy.deepcopy(pair.ours).train().to(memory_format=layout)
    peer = copy.deepcopy(pair.peer).train()
    ours_opt = torch.optim.SGD(ours.parameters(), lr=1e-4, momentum=0.9)
    peer_opt = torch.optim.SGD(peer.parameters(), lr=1e-4, momentum=0.9)
    loss_fn = MultiBoxLoss(ours.priors, ours.variances, iou_threshold=0.5, neg_pos_ratio=3)
    targets = [{"boxes": b, "labels": lab} for b, lab in zip(boxes, labels)]
    peer_targets = [{"boxes": b * 300.0, "labels": lab} for b, lab in zip(boxes, labels)]

    def ours_step():
        ours_opt.zero_grad(set_to_none=True)
        x = normalise(images).contiguous(memory_format=layout)
        loc, cls = compute_loss(ours, loss_fn, x, targets, amp_dtype)
        (loc + cls).backward()
        ours_opt.step()

    def peer_step():
        peer_opt.zero_grad(set_to_none=True)
        loss = sum(peer(images, peer_targets).values())
        loss.backward()
        peer_opt.step()

    counter = FlopCounterMode(display=False)
    with counter:  # forward + backward FLOPs of one step (not timed)
        ours_step()
    ours_s, peer_s = measure_pair(ours_step, peer_step, max(s.repeats - 2, 1), s.heavy_warmup)
    layout_name = "channels_last" if layout is torch.channels_last else "NCHW"
    note = (f"SSD300 SGD step, {sum(map(len, boxes))} boxes; ours: engine.compute_loss "
            f"(batched match_batch + MultiBoxLoss), {layout_name} (train.channels_last=auto); "
            "torchvision: model(images, targets) (per-image matching, its transform)")  # fmt: skip
    if amp_dtype is None:
        # engine.train_step also guards against non-finite gradients; say what that costs here.
        params = list(ours.parameters())
        guard_s, _ = measure_pair(lambda: grads_finite(params), None, 3, 1)
        note += f"; engine.train_step's non-finite gradient guard adds {guard_s * 1e3:.0f} ms"
        name, target = "train_step_b8", "<= 0.9x"
    else:
        note = "bf16 autocast vs torchvision fp32 (train.amp=auto trains bf16 here); " + note
        name, target = "train_step_b8_bf16", ""
    return Row(name, ours_s, peer_s, note + _quick_note(s, batch, 8), target,
               flops=counter.get_total_flops(), dtype=amp_dtype or torch.float32)  # fmt: skip


def augment_row(s: Settings) -> Row:
    """Training pipeline of one data worker: JPEG decode + SSD augmentation + resize to 300."""
    from PIL import Image

    from ssdlib.data.common import load_image
    from ssdlib.data.shapes import ShapesDataset
    from ssdlib.data.transforms import build_train_transform

    count = 4 if s.quick else 32
    ds = ShapesDataset("train", count, image_size=256)
    transform = build_train_transform(300)
    with tempfile.TemporaryDirectory() as tmp:
        samples = []
        for i in range(count):
            image, target = ds[i]
            path = Path(tmp) / f"{i}.jpg"
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(path, quality=90)
            samples.append((path, {k: v for k, v in target.items() if k != "image_id"}))

        def one_pass():
            for path, target in samples:
                transform(load_image(path), dict(target))

        with torch_threads(1):  # a DataLoader worker runs torch single-threaded
            torch.manual_seed(0)
            total_s, _ = measure_pair(one_pass, None, max(s.repeats // 2, 1), s.warmup)
    per_image = total_s / count
    note = (f"{1 / per_image:.0f} images/s per worker (1 thread): data.common.load_image of a "
            "256 px Shapes JPEG + build_train_transform(300)")
    return Row("augment", per_image, None, note)


def _coco_inputs(num_images: int):
    """A COCO ground-truth dict and results list from the VOC synthetic generator."""
    gts, dets = synthetic_detections(num_images, 20, 100, 3)
    images, anns, results = [], [], []
    for i, (gt, det) in enumerate(zip(gts, dets), start=1):
        images.append({"id": i, "width": 640, "height": 640})
        for box, label in zip(gt["boxes"].tolist(), gt["labels"].tolist()):
            x1, y1, x2, y2 = box
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": label,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                         "iscrowd": 0})  # fmt: skip
        for box, score, label in zip(det["boxes"].tolist(), det["scores"].tolist(),
                                     det["labels"].tolist()):  # fmt: skip
            x1, y1, x2, y2 = box
            results.append({"image_id": i, "category_id": label,
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})  # fmt: skip
    cats = [{"id": c, "name": str(c)} for c in range(1, 21)]
    return {"images": images, "annotations": anns, "categories": cats}, results


def _faster_coco_eval_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("faster_coco_eval") is not None


def coco_row(s: Settings) -> Row:
    """COCO box evaluation (evaluate + accumulate + summarize) of synthetic detections."""
    from ssdlib.metrics.coco import evaluate, load_gt

    num_images = 100 if s.quick else 1000
    gt_dict, results = _coco_inputs(num_images)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "instances.json"
        path.write_text(json.dumps(gt_dict))
        # Ground truth loaded once per backend, outside the timing (as an evaluator does).
        backends = ["pycocotools"] + (["faster_coco_eval"] if _faster_coco_eval_available() else [])
        gts = {b: load_gt(path, b) for b in backends}

    def run_with(backend: str):
        return lambda: evaluate(gts[backend], results, backend=backend)

    peer = run_with("faster_coco_eval") if len(backends) > 1 else None
    ours_s, peer_s = measure_pair(run_with("pycocotools"), peer, max(s.repeats // 2, 1), 0)
    note = (f"pycocotools COCOeval, {num_images} images x 100 dets, 20 classes"
            + ("; peer faster-coco-eval" if peer else "; faster-coco-eval not installed"))
    return Row("coco_eval", ours_s, peer_s, note)


# Each step of the CPU run: a progress label and the rows it produces (what ``--rows`` selects).
STEPS: dict[str, tuple[str, ...]] = {
    "inference": ("inference_b1", "inference_b8", "inference_b8_bf16"),
    "postprocess": ("postprocess_b8",),
    "train step": ("train_step_b8", "train_step_b8_bf16"),
    "matching": ("match_encode_b32", "match_encode_b32_tv"),
    "augmentation": ("augment",),
    "VOC mAP": ("voc_eval_5k",),
    "COCO eval": ("coco_eval",),
}
# Steps whose rows are compared with the machine limit (only they need it measured).
COMPUTE_STEPS = ("inference", "train step")


def selects(patterns: list[str] | None, names: tuple[str, ...]) -> bool:
    """Whether any row name matches a ``--rows`` pattern (shell-style, ``match_*``); None: all."""
    from fnmatch import fnmatchcase

    return patterns is None or any(fnmatchcase(n, p) for n in names for p in patterns)


def cpu_rows(s: Settings, log=print, patterns: list[str] | None = None) -> list[Row]:
    """The CPU rows, in the order of the report (those ``patterns`` select, see :func:`selects`);
    ``log`` reports progress."""
    from functools import cache

    pair = cache(build_pair)  # two SSD300s: built only when a selected step needs them
    run = {
        "inference": lambda: inference_rows(s, pair()),
        "postprocess": lambda: [postprocess_row(s, pair())],
        "train step": lambda: [train_step_row(s, pair()), train_step_row(s, pair(), torch.bfloat16)],
        "matching": lambda: match_rows(s, lambda b, seed: random_targets(b, seed=seed)),
        "augmentation": lambda: [augment_row(s)],
        "VOC mAP": lambda: [voc_row(s)],
        "COCO eval": lambda: [coco_row(s)],
    }
    rows: list[Row] = []
    for label, names in STEPS.items():
        if selects(patterns, names):
            log(f"... {label}")
            rows.extend(run[label]())
    bf16_row = next((r for r in rows if r.name == "inference_b8_bf16"), None)
    if bf16_row is not None and bf16_row.ours_s is not None:
        bf16_row.note += "; " + bf16_agreement(pair())
    return rows
