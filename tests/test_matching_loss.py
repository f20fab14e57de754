import torch

from reference_impl import ref_loss, ref_match
from ssdlib.boxes import cxcywh_to_xyxy, encode
from ssdlib.config import load_config
from ssdlib.loss import MultiBoxLoss, hard_negative_mining, multibox_loss, prepare_targets
from ssdlib.matching import match, match_batch
from ssdlib.priors import generate_priors

PRIORS = generate_priors(load_config("ssd300_voc").priors)


def random_gts(g, n):
    lo = torch.rand(n, 2, generator=g) * 0.8
    boxes = torch.cat([lo, (lo + 0.02 + torch.rand(n, 2, generator=g) * 0.5).clamp(max=1)], 1)
    labels = torch.randint(1, 21, (n,), generator=g)
    return boxes, labels


def test_match_equals_reference_loop_many_images():
    g = torch.Generator().manual_seed(0)
    for n in [1, 2, 5, 20]:
        for _ in range(5):
            boxes, labels = random_gts(g, n)
            for thr in (0.5, 0.3):
                ours = match(boxes, labels, PRIORS, thr)
                ref = ref_match(boxes, labels, PRIORS, thr)
                assert torch.equal(ours[0], ref[0]) and torch.equal(ours[1], ref[1])


def test_every_ground_truth_gets_a_prior_even_tiny_ones():
    boxes = torch.tensor([[0.10, 0.10, 0.11, 0.11], [0.5, 0.5, 0.9, 0.95], [0.3, 0.6, 0.32, 0.7]])
    labels = torch.tensor([3, 7, 9])
    matched_labels, matched_boxes = match(boxes, labels, PRIORS)
    for k in range(3):
        hits = (matched_labels == labels[k]) & (matched_boxes == boxes[k]).all(1)
        assert hits.any(), f"ground truth {k} has no prior"


def test_threshold_and_background():
    boxes = torch.tensor([[0.2, 0.2, 0.6, 0.7]])
    labels = torch.tensor([4])
    matched_labels, matched_boxes = match(boxes, labels, PRIORS, 0.5)
    from torchvision.ops import box_iou

    ious = box_iou(boxes, cxcywh_to_xyxy(PRIORS))[0]
    positives = matched_labels > 0
    assert torch.equal(positives, (ious >= 0.5) | (torch.arange(len(ious)) == ious.argmax()))
    assert (matched_labels[positives] == 4).all()
    assert (matched_boxes == boxes[0]).all()  # a single ground truth: every prior holds it


def test_later_ground_truth_wins_shared_prior():
    box = torch.tensor([[0.40, 0.40, 0.60, 0.60]])
    boxes = box.repeat(2, 1)
    matched_labels, _ = match(boxes, torch.tensor([1, 2]), PRIORS)
    from torchvision.ops import box_iou

    best = box_iou(box, cxcywh_to_xyxy(PRIORS))[0].argmax()
    # The shared best prior goes to the later ground truth; other priors break the IoU tie
    # towards the first one, as torch.max does in the reference code.
    assert matched_labels[best] == 2
    others = (matched_labels > 0) & (torch.arange(PRIORS.shape[0]) != best)
    assert others.any() and (matched_labels[others] == 1).all()


def test_no_ground_truth_gives_background():
    labels, boxes = match(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), PRIORS)
    assert (labels == 0).all() and boxes.shape == (PRIORS.shape[0], 4)


def test_match_batch_equals_per_image():
    g = torch.Generator().manual_seed(3)
    gts = [random_gts(g, n) for n in (3, 0, 1, 17, 6)]
    labels, boxes = match_batch([b for b, _ in gts], [lab for _, lab in gts], PRIORS)
    for i, (b, lab) in enumerate(gts):
        l1, b1 = match(b, lab, PRIORS)
        assert torch.equal(labels[i], l1) and torch.equal(boxes[i], b1)


def make_batch(seed, b=4, k=21):
    g = torch.Generator().manual_seed(seed)
    gts = [random_gts(g, n) for n in (2, 5, 0, 9)[:b]]
    labels, boxes = match_batch([x for x, _ in gts], [y for _, y in gts], PRIORS)
    targets = encode(boxes, PRIORS)
    targets[labels == 0] = 0  # background targets are never used
    logits = torch.randn(b, PRIORS.shape[0], k, generator=g)
    deltas = torch.randn(b, PRIORS.shape[0], 4, generator=g)
    return logits, deltas, labels, targets


def test_loss_equals_reference():
    for seed in range(4):
        logits, deltas, labels, targets = make_batch(seed)
        ours = multibox_loss(logits, deltas, labels, targets, 3)
        ref = ref_loss(logits, deltas, labels, targets, 3)
        torch.testing.assert_close(ours[0], ref[0])
        torch.testing.assert_close(ours[1], ref[1])


def test_loss_from_ground_truth_equals_reference_match_encode_and_loss():
    # MultiBoxLoss owns the priors and the matching rule: from raw ground truth it must give
    # the reference loop's matching, the encoder's targets and the reference loss.
    g = torch.Generator().manual_seed(11)
    gts = [random_gts(g, n) for n in (2, 5, 1, 9)]
    logits = torch.randn(4, PRIORS.shape[0], 21, generator=g)
    deltas = torch.randn(4, PRIORS.shape[0], 4, generator=g)
    loss_fn = MultiBoxLoss(PRIORS, (0.1, 0.2), iou_threshold=0.5, neg_pos_ratio=3)
    loc, cls = loss_fn(logits, deltas, [b for b, _ in gts], [lab for _, lab in gts])
    matched = [ref_match(b, lab, PRIORS, 0.5) for b, lab in gts]
    labels = torch.stack([lab for lab, _ in matched])
    targets = encode(torch.stack([b for _, b in matched]), PRIORS, (0.1, 0.2))
    ref = ref_loss(logits, deltas, labels, targets, 3)
    torch.testing.assert_close(loc, ref[0])
    torch.testing.assert_close(cls, ref[1])
    # ... and it is exactly its two halves.
    halves = multibox_loss(logits, deltas, *prepare_targets(
        [b for b, _ in gts], [lab for _, lab in gts], PRIORS, (0.1, 0.2), 0.5), 3)  # fmt: skip
    assert torch.equal(loc, halves[0]) and torch.equal(cls, halves[1])


def test_degenerate_ground_truth_is_dropped_before_matching():
    g = torch.Generator().manual_seed(12)
    gts = [random_gts(g, n) for n in (3, 2, 4)]
    bad = torch.tensor([[0.2, 0.2, 0.2, 0.5], [0.1, float("nan"), 0.3, 0.4], [0.5, 0.6, 0.4, 0.9]])
    dirty = [torch.cat([gts[0][0], bad[:1]]), bad[1:], torch.cat([bad[2:], gts[2][0]])]
    dirty_labels = [torch.cat([gts[0][1], torch.tensor([5])]), torch.tensor([6, 7]),
                    torch.cat([torch.tensor([8]), gts[2][1]])]  # fmt: skip
    clean = [gts[0][0], torch.zeros(0, 4), gts[2][0]]
    clean_labels = [gts[0][1], torch.zeros(0, dtype=torch.int64), gts[2][1]]
    got = prepare_targets(dirty, dirty_labels, PRIORS, return_index=True)
    expected = prepare_targets(clean, clean_labels, PRIORS, return_index=True)
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert torch.isfinite(got[1]).all() and (got[0][1] == 0).all()


def test_loss_of_a_batch_without_objects_is_zero_and_priors_follow_to():
    loss_fn = MultiBoxLoss(PRIORS.double()).to(torch.float32)  # a buffer: moved and cast by .to
    assert loss_fn.priors.dtype == torch.float32 and "priors" not in loss_fn.state_dict()
    logits = torch.randn(2, PRIORS.shape[0], 21, requires_grad=True)
    deltas = torch.randn(2, PRIORS.shape[0], 4, requires_grad=True)
    no_boxes, no_labels = [torch.zeros(0, 4)] * 2, [torch.zeros(0, dtype=torch.int64)] * 2
    loc, cls = loss_fn(logits, deltas, no_boxes, no_labels)
    assert loc.item() == 0 and cls.item() == 0
    (loc + cls).backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(deltas.grad).all()


def test_loss_tiny_hand_computed_case():
    # One image, 5 priors, 2 classes + background. Prior 0 is positive (label 1).
    logits = torch.zeros(1, 5, 3)
    logits[0, 1, 0] = -2.0  # a hard negative: low background score
    logits[0, 2, 0] = -1.0  # the next hardest
    labels = torch.tensor([[1, 0, 0, 0, 0]])
    deltas = torch.zeros(1, 5, 4)
    deltas[0, 0] = torch.tensor([0.5, -2.0, 0.0, 0.0])
    targets = torch.zeros(1, 5, 4)
    loc, cls = multibox_loss(logits, deltas, labels, targets, neg_pos_ratio=2)
    # smooth L1: 0.5 * 0.5^2 + (2 - 0.5) = 1.625; N = 1
    assert torch.isclose(loc, torch.tensor(1.625))
    lse = lambda b: torch.log(torch.exp(torch.tensor(b)) + 2)  # noqa: E731
    expected = torch.log(torch.tensor(3.0)) + (lse(-2.0) + 2.0) + (lse(-1.0) + 1.0)
    assert torch.isclose(cls, expected)


def test_zero_positive_batch_gives_zero_not_nan():
    logits = torch.randn(2, PRIORS.shape[0], 21, requires_grad=True)
    deltas = torch.randn(2, PRIORS.shape[0], 4, requires_grad=True)
    labels = torch.zeros(2, PRIORS.shape[0], dtype=torch.int64)
    loc, cls = multibox_loss(logits, deltas, labels, torch.zeros(2, PRIORS.shape[0], 4))
    assert loc.item() == 0 and cls.item() == 0
    (loc + cls).backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(deltas.grad).all()


def test_hard_negative_mining_counts():
    g = torch.Generator().manual_seed(5)
    loss = torch.rand(3, 50, generator=g)
    labels = torch.zeros(3, 50, dtype=torch.int64)
    labels[0, :2] = 1
    labels[1, :20] = 4  # more negatives asked for than exist: all negatives used
    mask = hard_negative_mining(loss, labels, 3)
    assert mask[0].sum() == 2 + 6 and mask[1].sum() == 50 and mask[2].sum() == 0
    negatives = mask[0] & (labels[0] == 0)
    assert loss[0][negatives].min() >= loss[0][(labels[0] == 0) & ~mask[0]].max()


def stable_sort_mining(background_loss, labels, neg_pos_ratio):
    """The ranking by a full stable sort that hard_negative_mining's partial sort replaces."""
    positive = labels > 0
    ranked = background_loss.masked_fill(positive, -torch.inf)
    order = ranked.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1]).expand_as(order))
    return positive | (rank < positive.sum(dim=1, keepdim=True) * neg_pos_ratio)


def test_hard_negative_mining_equals_stable_sort_with_ties():
    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        b, p = int(torch.randint(1, 9, (1,), generator=g)), int(torch.randint(1, 300, (1,), generator=g))
        loss = torch.rand(b, p, generator=g)
        if trial % 3 == 0:
            loss = (loss * 4).floor()  # many equal losses: prior order decides
        if trial % 7 == 0:
            loss[:, ::5] = torch.inf
        labels = (torch.rand(b, p, generator=g) < float(torch.rand(1, generator=g)) * 0.6).long() * 3
        labels[0] = 0 if trial % 5 == 0 else labels[0]
        for ratio in (0, 1, 3, 10):
            expected = stable_sort_mining(loss, labels, ratio)
            assert torch.equal(hard_negative_mining(loss, labels, ratio), expected)


def test_loss_gradients_flow():
    logits, deltas, labels, targets = make_batch(7)
    logits.requires_grad_(True)
    deltas.requires_grad_(True)
    loc, cls = multibox_loss(logits, deltas, labels, targets)
    (loc + cls).backward()
    used = labels > 0
    assert deltas.grad[used].abs().sum() > 0 and deltas.grad[~used].abs().sum() == 0
    assert logits.grad.abs().sum() > 0
