import torch
from torchvision.ops import nms

from ssdlib.boxes import decode
from ssdlib.config import load_config
from ssdlib.postprocess import detect
from ssdlib.priors import generate_priors

PRIORS = generate_priors(load_config("shapes").priors)


def ref_detect(logits, deltas, priors, thr, nms_thr, max_det, top_k=None, clip=False):
    """Class by class with plain NMS, then a global sort: the reference post-processor."""
    out = []
    for lg, dl in zip(logits, deltas):
        scores = torch.softmax(lg, -1)
        boxes = decode(dl, priors)
        if clip:
            boxes = boxes.clamp(0, 1)
        all_b, all_s, all_l = [], [], []
        for c in range(1, scores.shape[1]):
            s = scores[:, c]
            keep = s > thr
            b, s = boxes[keep], s[keep]
            if top_k is not None:
                s, idx = s.topk(min(top_k, s.numel()))
                b = b[idx]
            k = nms(b, s, nms_thr)
            all_b.append(b[k])
            all_s.append(s[k])
            all_l.append(torch.full((len(k),), c))
        b, s, lab = torch.cat(all_b), torch.cat(all_s), torch.cat(all_l)
        order = s.argsort(descending=True)[:max_det]
        out.append((b[order], s[order], lab[order]))
    return out


def logits_and_deltas(seed, b=3, k=6, sharp=4.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, PRIORS.shape[0], k, generator=g) * sharp
    deltas = torch.randn(b, PRIORS.shape[0], 4, generator=g) * 0.5
    return logits, deltas


def test_detect_equals_reference():
    for seed, kwargs in enumerate([
        dict(thr=0.01, nms_thr=0.45, max_det=100),
        dict(thr=0.3, nms_thr=0.5, max_det=20),
        dict(thr=0.01, nms_thr=0.45, max_det=200, top_k=50),
        dict(thr=0.05, nms_thr=0.45, max_det=100, clip=True),
    ]):
        logits, deltas = logits_and_deltas(seed)
        ours = detect(logits, deltas, PRIORS, score_threshold=kwargs["thr"],
                      nms_threshold=kwargs["nms_thr"], max_per_image=kwargs["max_det"],
                      top_k_candidates=kwargs.get("top_k"), clip=kwargs.get("clip", False))
        ref = ref_detect(logits, deltas, PRIORS, **kwargs)
        for d, (b, s, lab) in zip(ours, ref):
            assert len(d) == len(s) > 0
            assert torch.equal(d.scores, s)  # both sorted by score
            # equal scores may come in either order: compare the rows as sets
            rows = lambda b, s, lab: sorted(zip(s.tolist(), lab.tolist(), b.tolist()))  # noqa: E731
            assert rows(d.boxes, d.scores, d.labels) == rows(b, s, lab)


def test_threshold_is_strict_and_boxes_unclipped_by_default():
    logits = torch.full((1, PRIORS.shape[0], 3), -10.0)
    logits[0, 0] = torch.tensor([0.0, 0.0, -1e9])  # softmax: exactly 0.5 for class 1
    deltas = torch.zeros(1, PRIORS.shape[0], 4)
    deltas[0, 0, 2:] = 20.0  # a huge box that leaves the image
    assert len(detect(logits, deltas, PRIORS, score_threshold=0.5)[0]) == 0
    d = detect(logits, deltas, PRIORS, score_threshold=0.49)[0]
    assert len(d) == 1 and d.labels.tolist() == [1] and d.boxes.max() > 1
    assert detect(logits, deltas, PRIORS, score_threshold=0.49, clip=True)[0].boxes.max() == 1


def test_no_detections_shapes():
    logits = torch.zeros(2, PRIORS.shape[0], 6)
    logits[..., 0] = 50
    dets = detect(logits, torch.zeros(2, PRIORS.shape[0], 4), PRIORS)
    assert [len(d) for d in dets] == [0, 0]
    assert dets[0].boxes.shape == (0, 4) and dets[0].labels.dtype == torch.int64


def test_scaled():
    logits, deltas = logits_and_deltas(9, b=1)
    d = detect(logits, deltas, PRIORS, max_per_image=5)[0]
    px = d.scaled(640, 480)
    assert torch.allclose(px.boxes[:, 0], d.boxes[:, 0] * 640)
    assert torch.allclose(px.boxes[:, 3], d.boxes[:, 3] * 480)


def _nms_case(seed, n, classes, spread):
    """n candidate boxes in `classes` classes; a small `spread` puts every box of a class on
    nearly the same spot (NMS keeps about one per class)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(1, classes + 1, (n,), generator=g)
    centres = torch.rand(classes, 2, generator=g)[labels - 1]  # one spot per class
    xy = centres + (torch.rand(n, 2, generator=g) - 0.5) * spread
    wh = 0.1 + 0.05 * spread * torch.rand(n, 2, generator=g)
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], dim=1)
    # Distinct scores (no tie order), in bands by class: the prefix holds few classes.
    scores = (labels * n + torch.randperm(n, generator=g)).double().div(n * (classes + 1)).float()
    return boxes, scores, labels


def test_top_class_nms_equals_full_batched_nms():
    """The prefix answer when it is final, the full run when it is not: both equal to
    batched_nms on everything, cut to max_keep."""
    from torchvision.ops import batched_nms

    from ssdlib.postprocess import top_class_nms

    for seed, spread, classes in ((0, 2.0, 20), (1, 2.0, 90), (2, 0.01, 20), (3, 0.01, 90)):
        boxes, scores, labels = _nms_case(seed, 3000, classes, spread)
        for max_keep in (50, 200):
            full = batched_nms(boxes, scores, labels, 0.45)[:max_keep]
            got = top_class_nms(boxes, scores, labels, 0.45, max_keep)
            assert torch.equal(got, full), (seed, spread, classes, max_keep)
    # Which path each case took: the spread-out boxes fill max_keep from the prefix, the
    # clustered ones keep about one box per class there, so they need the full run.
    spread_out, clustered = _nms_case(0, 3000, 20, 2.0), _nms_case(2, 3000, 20, 0.01)
    for (boxes, scores, labels), final in ((spread_out, True), (clustered, False)):
        top, order = scores.topk(201)
        kept = batched_nms(boxes[order[:200]], top[:200], labels[order[:200]], 0.45)[:50]
        assert (kept.numel() == 50) == final
