"""The grid IoU and the batched matcher against the textbook formula, bit for bit, on the
configs' priors and on priors without a grid (shuffled, float64)."""

import torch

from reference_impl import ref_iou, ref_match
from ssdlib.boxes import cxcywh_to_xyxy
from ssdlib.config import load_config
from ssdlib.matching import match_batch
from ssdlib.prior_grid import PriorAxes, grid_blocks
from ssdlib.priors import generate_priors


def priors_of(name):
    return generate_priors(load_config(name).priors)


def hard_boxes(g, n):
    """Random boxes plus the hard cases: touching the borders, the whole image, exact
    duplicates (ties between ground truths) and a box equal to a prior (IoU exactly 1)."""
    lo = torch.rand(n, 2, generator=g) * 0.8
    boxes = torch.cat([lo, (lo + 0.01 + torch.rand(n, 2, generator=g) * 0.5).clamp(max=1)], 1)
    special = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.3, 0.2, 1.0], [0.9, 0.0, 1.0, 0.05]])
    return torch.cat([boxes, special, boxes[:2]])


def test_ssd300_blocks_are_its_feature_maps():
    priors = cxcywh_to_xyxy(priors_of("ssd300_voc"))
    blocks = grid_blocks(*priors.unbind(1))
    assert [b[1:] for b in blocks] == [(38, 38, 4), (19, 19, 6), (10, 10, 6), (5, 5, 6), (3, 3, 4), (1, 1, 4)]
    assert PriorAxes(priors).x_lo.shape == (372,)


def test_iou_equals_textbook_bitwise():
    g = torch.Generator().manual_seed(0)
    boxes = hard_boxes(g, 40)
    for name in ("ssd300_voc", "ssd512_voc", "shapes"):
        priors = priors_of(name)
        corners = cxcywh_to_xyxy(priors)
        boxes_with_prior = torch.cat([boxes, corners[100:101]])
        assert torch.equal(PriorAxes(corners).iou(boxes_with_prior), ref_iou(boxes_with_prior, corners))


def test_priors_without_grid_fall_back_exactly():
    g = torch.Generator().manual_seed(1)
    priors = priors_of("shapes")[torch.randperm(3890, generator=g)]
    corners = cxcywh_to_xyxy(priors)
    axes = PriorAxes(corners)
    assert sum(r * c * a for _, r, c, a in axes.blocks) == priors.shape[0]
    boxes = hard_boxes(g, 10)
    assert torch.equal(axes.iou(boxes), ref_iou(boxes, corners))


def test_match_batch_equals_reference_loop_on_hard_batches():
    g = torch.Generator().manual_seed(2)
    for priors in (priors_of("ssd300_voc"), priors_of("shapes")[torch.randperm(3890, generator=g)],
                   priors_of("shapes").double()):  # fmt: skip
        images = [hard_boxes(g, n) for n in (30, 0, 1, 7, 0, 12, 3, 70)]  # 70: a 7-bit rank in the keys
        images.append(torch.tensor([[0.4, 0.4, 0.6, 0.6]] * 3, dtype=torch.float32))  # one shared best prior
        labels = [torch.randint(1, 21, (len(b),), generator=g) for b in images]
        images = [b.to(priors.dtype) for b in images]
        for thr in (0.5, 0.3):
            out_labels, out_boxes = match_batch(images, labels, priors, thr)
            for i, (b, lab) in enumerate(zip(images, labels)):
                if len(b) == 0:
                    assert (out_labels[i] == 0).all() and (out_boxes[i] == 0).all()
                    continue
                ref_labels, ref_boxes = ref_match(b, lab, priors, thr)
                assert torch.equal(out_labels[i], ref_labels) and torch.equal(out_boxes[i], ref_boxes)


def test_match_batch_without_float64_keys_is_the_same(monkeypatch):
    # Apple's MPS has no float64: the matcher then takes the exact max/where way (float32).
    import ssdlib.matching as matching

    g = torch.Generator().manual_seed(4)
    priors = priors_of("ssd300_voc")
    images = [hard_boxes(g, n) for n in (9, 0, 1, 25)]
    labels = [torch.randint(1, 21, (len(b),), generator=g) for b in images]
    keyed = match_batch(images, labels, priors, 0.5, return_index=True)
    asked = []
    monkeypatch.setattr(matching, "_keys_fit", lambda *args: asked.append(args) or False)
    exact = match_batch(images, labels, priors, 0.5, return_index=True)
    assert asked  # the exact way was taken
    assert all(torch.equal(a, b) for a, b in zip(keyed, exact))
