"""train.object_balance: which ground truth each prior matched, the per-object weights, and the
weighted MultiBox loss."""

import pytest
import torch

from ssdlib.config import ConfigError, PriorsConfig, load_config
from ssdlib.loss import MultiBoxLoss, multibox_loss, object_balance_weights, prepare_targets
from ssdlib.matching import match_batch
from ssdlib.priors import generate_priors


def _batch(seed=0, images=6):
    g = torch.Generator().manual_seed(seed)
    boxes, labels = [], []
    for b in range(images):
        n = b % 4  # 0..3 boxes, one image without any
        xy = torch.rand(n, 2, generator=g) * 0.6
        wh = 0.03 + torch.rand(n, 2, generator=g) * 0.35
        boxes.append(torch.cat([xy, xy + wh], dim=1))
        labels.append(torch.randint(1, 5, (n,), generator=g))
    return boxes, labels


def test_the_index_names_the_matched_box_and_is_minus_one_on_background():
    priors = generate_priors(PriorsConfig())
    boxes, labels = _batch()
    lab, matched, index = match_batch(boxes, labels, priors, 0.5, return_index=True)
    lab0, matched0 = match_batch(boxes, labels, priors, 0.5)
    assert torch.equal(lab, lab0) and torch.equal(matched, matched0)  # the index changes nothing
    positive = lab > 0
    assert torch.equal(index < 0, ~positive)
    table, label_table = torch.cat(boxes), torch.cat(labels)
    assert torch.equal(table[index[positive]], matched[positive])
    assert torch.equal(label_table[index[positive]], lab[positive])
    # Rows are the batch's: image b's positives point into image b's boxes.
    first = torch.tensor([0, *torch.tensor([len(x) for x in boxes]).cumsum(0).tolist()])
    for b in range(len(boxes)):
        rows = index[b][positive[b]]
        assert ((rows >= first[b]) & (rows < first[b + 1])).all(), b
    # Every object keeps at least one positive (the forced match).
    assert set(index[positive].tolist()) == set(range(len(table)))


def test_weights_even_out_objects_and_keep_the_loss_size():
    index = torch.tensor([[0, 0, 0, 1, -1], [2, -1, -1, -1, -1]])
    w = object_balance_weights(index, 1.0)
    # counts 3, 1, 1: raw 1/3, 1/3, 1/3, 1, 1 (sum 3) scaled by 5 positives / 3
    expected = torch.tensor([[5 / 9, 5 / 9, 5 / 9, 5 / 3, 1.0], [5 / 3, 1, 1, 1, 1]])
    torch.testing.assert_close(w, expected)
    assert w[index >= 0].sum().item() == pytest.approx(5.0)
    # Per object the weights sum to the same value with power 1.
    assert w[0, :3].sum().item() == pytest.approx(w[0, 3].item())
    assert torch.equal(object_balance_weights(index, 0.0), torch.ones(2, 5))
    half = object_balance_weights(index, 0.5)
    assert half[0, 0] / half[0, 3] == pytest.approx(3**-0.5)


def test_unit_weights_give_the_papers_loss():
    torch.manual_seed(0)
    priors = generate_priors(PriorsConfig())
    boxes, labels = _batch(1)
    lab, target = prepare_targets(boxes, labels, priors)
    logits, deltas = torch.randn(len(boxes), len(priors), 5), torch.randn(len(boxes), len(priors), 4)
    plain = multibox_loss(logits, deltas, lab, target)
    ones = multibox_loss(logits, deltas, lab, target, weights=torch.ones(lab.shape))
    for a, b in zip(plain, ones):
        torch.testing.assert_close(a, b)


def test_the_balanced_loss_weighs_each_prior_by_its_object():
    torch.manual_seed(0)
    priors = generate_priors(PriorsConfig())
    boxes, labels = _batch(2)
    logits = torch.randn(len(boxes), len(priors), 5, requires_grad=True)
    deltas = torch.randn(len(boxes), len(priors), 4, requires_grad=True)
    loc, cls = MultiBoxLoss(priors, iou_threshold=0.5, object_balance=1.0)(logits, deltas, boxes, labels)
    lab, target, index = prepare_targets(boxes, labels, priors, return_index=True)
    weights = object_balance_weights(index, 1.0)
    loc_ref, cls_ref = multibox_loss(logits, deltas, lab, target, weights=weights)
    torch.testing.assert_close(loc, loc_ref)
    torch.testing.assert_close(cls, cls_ref)
    plain_loc, _ = MultiBoxLoss(priors, iou_threshold=0.5)(logits, deltas, boxes, labels)
    assert not torch.isclose(loc, plain_loc)  # the weights change the loss
    (loc + cls).backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(deltas.grad).all()


def test_the_setting_is_checked_and_reaches_the_trainer(tmp_path):
    with pytest.raises(ConfigError, match="train.object_balance"):
        load_config("shapes", ["train.object_balance=2"])
    from ssdlib.engine.distributed import DistInfo
    from ssdlib.engine.trainer import _build_run

    cfg = load_config("shapes", ["train.object_balance=0.5", "model.width=0.25"])
    run = _build_run(cfg, torch.device("cpu"), DistInfo(), None)
    assert run.loss_fn.object_balance == 0.5
