"""CUDA unit tests (run by ``make gpu-check``; skipped where no GPU is present): the library's
GPU results equal its CPU results."""

import copy

import pytest
import torch

from ssdlib.boxes import encode
from ssdlib.config import load_config
from ssdlib.loss import MultiBoxLoss
from ssdlib.matching import match_batch
from ssdlib.model import build_model
from ssdlib.postprocess import detect
from ssdlib.priors import generate_priors

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def _targets(seed, counts=(3, 0, 1, 17, 6)):
    g = torch.Generator().manual_seed(seed)
    boxes, labels = [], []
    for n in counts:
        lo = torch.rand(n, 2, generator=g) * 0.8
        boxes.append(torch.cat([lo, (lo + 0.02 + torch.rand(n, 2, generator=g) * 0.5).clamp(max=1)], 1))
        labels.append(torch.randint(1, 21, (n,), generator=g))
    return boxes, labels


def test_match_batch_on_cuda_equals_cpu():
    priors = generate_priors(load_config("ssd300_voc").priors)
    boxes, labels = _targets(0)
    cpu_labels, cpu_boxes = match_batch(boxes, labels, priors)
    gpu_labels, gpu_boxes = match_batch([b.to(CUDA) for b in boxes], [x.to(CUDA) for x in labels],
                                        priors.to(CUDA))  # fmt: skip
    assert torch.equal(gpu_labels.cpu(), cpu_labels)
    torch.testing.assert_close(gpu_boxes.cpu(), cpu_boxes)
    torch.testing.assert_close(encode(gpu_boxes, priors.to(CUDA)).cpu(), encode(cpu_boxes, priors))


def test_loss_and_detect_on_cuda_equal_cpu():
    g = torch.Generator().manual_seed(1)
    priors = generate_priors(load_config("ssd300_voc").priors)
    boxes, labels = _targets(1, (2, 5, 0, 9))
    logits = torch.randn(4, priors.shape[0], 21, generator=g)
    deltas = torch.randn(4, priors.shape[0], 4, generator=g)
    loss_fn = MultiBoxLoss(priors, (0.1, 0.2), iou_threshold=0.5, neg_pos_ratio=3)
    cpu = loss_fn(logits, deltas, boxes, labels)
    gpu = loss_fn.to(CUDA)(logits.to(CUDA), deltas.to(CUDA), [b.to(CUDA) for b in boxes],
                           [x.to(CUDA) for x in labels])  # fmt: skip
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-4)
    cpu_det = detect(logits, deltas, priors)
    gpu_det = detect(logits.to(CUDA), deltas.to(CUDA), priors.to(CUDA))
    for a, b in zip(cpu_det, gpu_det):
        assert len(a.scores) == len(b.scores)
        torch.testing.assert_close(b.boxes.cpu(), a.boxes, rtol=1e-4, atol=1e-4)


def test_light_model_forward_backward_on_cuda():
    cfg = load_config("shapes", [])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    gpu = copy.deepcopy(model).to(CUDA)
    x = torch.randn(2, 3, 160, 160)
    cpu_out = model(x)
    gpu_out = gpu(x.to(CUDA))
    for a, b in zip(cpu_out, gpu_out):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-3, atol=1e-3)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = sum(o.float().square().mean() for o in gpu(x.to(CUDA)))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in gpu.parameters() if p.grad is not None)
