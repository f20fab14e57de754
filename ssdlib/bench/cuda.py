"""GPU rows of ``ssdlib bench`` (run only where CUDA is available; one skipped row otherwise).

- ``cuda_train_b32``: SSD300 training step, batch 32, AMP + channels_last (+ ``torch.compile``
  with ``--compile``) against torchvision's step under the same autocast;
- ``cuda_inference_b1`` / ``cuda_inference_b8``: ``predict`` (channels_last, fp16 autocast)
  against torchvision's eval forward under the same autocast.

Times are synchronised (``torch.cuda.synchronize``) so they include the GPU work.
"""

from __future__ import annotations

import copy

import torch

from ssdlib.bench.models import build_pair, normalise, peer_images, random_targets
from ssdlib.bench.rows import Settings
from ssdlib.bench.timing import Row, measure_pair


def _amp_dtype() -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def cuda_rows(s: Settings, compile_model: bool = False) -> list[Row]:
    """The GPU rows, or one ``cuda`` row saying why they were skipped."""
    if not torch.cuda.is_available():
        return [Row("cuda", None, None, "skipped: no CUDA device on this machine")]
    from ssdlib.engine.trainer import train_step
    from ssdlib.loss import MultiBoxLoss
    from ssdlib.model.ssd import prepare_for_inference

    dev = torch.device("cuda")
    sync = torch.cuda.synchronize
    amp = _amp_dtype()
    pair = build_pair()
    name = torch.cuda.get_device_name()
    rows: list[Row] = []

    # Training, batch 32 (8 in quick mode).
    batch = 8 if s.quick else 32
    images = [x.to(dev) for x in peer_images(batch)]
    boxes, labels = random_targets(batch)
    boxes, labels = [b.to(dev) for b in boxes], [lab.to(dev) for lab in labels]
    ours = copy.deepcopy(pair.ours).to(dev).train().to(memory_format=torch.channels_last)
    peer = copy.deepcopy(pair.peer).to(dev).train().to(memory_format=torch.channels_last)
    ours_opt = torch.optim.SGD(ours.parameters(), lr=1e-4, momentum=0.9)
    peer_opt = torch.optim.SGD(peer.parameters(), lr=1e-4, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    peer_scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    net = torch.compile(ours) if compile_model else ours
    loss_fn = MultiBoxLoss(ours.priors, ours.variances, iou_threshold=0.5, neg_pos_ratio=3)
    x = normalise([i.cpu() for i in images]).to(dev).contiguous(memory_format=torch.channels_last)
    targets = [{"boxes": b * 300.0, "labels": lab} for b, lab in zip(boxes, labels)]
    ours_targets = [{"boxes": b, "labels": lab} for b, lab in zip(boxes, labels)]

    def ours_step():
        train_step(net, loss_fn, ours_opt, x, ours_targets, scaler, amp=amp)

    def peer_step():
        peer_opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=amp):
            loss = sum(peer(images, targets).values())
        peer_scaler.scale(loss).backward()
        peer_scaler.step(peer_opt)
        peer_scaler.update()

    warm = 3 if compile_model else max(s.warmup, 1)
    ours_s, peer_s = measure_pair(ours_step, peer_step, s.repeats * 2, warm, sync)
    rows.append(Row("cuda_train_b32", ours_s, peer_s,
                    f"{batch / ours_s:.0f} img/s (peer {batch / peer_s:.0f}); AMP {amp}, "
                    f"channels_last{', compiled' if compile_model else ''}; {name}"))  # fmt: skip

    # Inference.
    model = prepare_for_inference(copy.deepcopy(pair.ours).to(dev), channels_last=True)
    tv = copy.deepcopy(pair.peer).to(dev).eval()
    for row_name, b in (("cuda_inference_b1", 1), ("cuda_inference_b8", 8)):
        imgs = [i.to(dev) for i in peer_images(b)]
        xb = normalise([i.cpu() for i in imgs]).to(dev)

        def ours_call(xb=xb):
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
                return model.predict(xb)

        def peer_call(imgs=imgs):
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
                return tv(imgs)

        o, p = measure_pair(ours_call, peer_call, s.repeats * 4, max(s.warmup, 2), sync)
        rows.append(Row(row_name, o, p, f"{b / o:.0f} FPS (peer {b / p:.0f}); fp16 autocast, "
                                        f"channels_last, incl. NMS; {name}"))  # fmt: skip
    rows.append(_cuda_match_row(s, dev, name))
    return rows


def _cuda_match_row(s: Settings, dev: torch.device, name: str) -> Row:
    """``match_batch`` + ``encode`` of 32 images on the GPU against the per-image loop there:
    where batching pays (one set of kernels instead of 32)."""
    from ssdlib.boxes import encode
    from ssdlib.config import PriorsConfig
    from ssdlib.matching import match, match_batch
    from ssdlib.priors import generate_priors

    priors = generate_priors(PriorsConfig()).to(dev)
    boxes, labels = random_targets(32, seed=1)
    boxes, labels = [b.to(dev) for b in boxes], [lab.to(dev) for lab in labels]

    def batched():
        return encode(match_batch(boxes, labels, priors)[1], priors)

    def per_image():
        return [encode(match(b, lab, priors)[1], priors) for b, lab in zip(boxes, labels)]

    o, p = measure_pair(batched, per_image, s.repeats * 4, 2, torch.cuda.synchronize)
    return Row("cuda_match_encode_b32", o, p, f"speed-up {p / o:.1f}x; {name}", ">= 5x faster")
