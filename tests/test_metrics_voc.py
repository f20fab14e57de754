"""Tests of ssdlib.metrics.voc / curves: hand-computed cases and a loop reference of voc_eval."""


import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ssdlib.metrics import common, curves, voc

# --------------------------------------------------------------------------------------------
# Reference: a plain-loop transcription of py-faster-rcnn's voc_eval / voc_ap, written from the
# devkit semantics, one class at a time, one detection at a time.
# --------------------------------------------------------------------------------------------


def ref_voc_ap(rec, prec, use_07_metric):
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            if np.sum(rec >= t) == 0:
                p = 0
            else:
                p = np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def ref_voc_eval(gts, dets, cls, ovthresh, use_07_metric, branches=None):
    branches = {} if branches is None else branches  # counts of each decision, for coverage
    class_recs = {}
    npos = 0
    for img, g in enumerate(gts):
        keep = np.asarray(g["labels"]) == cls
        difficult = np.asarray(g["difficult"], dtype=bool)[keep]
        npos = npos + sum(~difficult)
        class_recs[img] = {
            "bbox": np.asarray(g["boxes"], dtype=float).reshape(-1, 4)[keep],
            "difficult": difficult,
            "det": [False] * int(keep.sum()),
        }
    image_ids, confidence, bbs = [], [], []
    for img, d in enumerate(dets):  # the order voc_eval's detection file is written in
        for k in range(len(d["scores"])):
            if int(d["labels"][k]) == cls:
                image_ids.append(img)
                confidence.append(float(d["scores"][k]))
                bbs.append([float(z) for z in d["boxes"][k]])
    confidence = np.array(confidence)
    BB = np.array(bbs).reshape(-1, 4)
    sorted_ind = np.argsort(-confidence)
    BB = BB[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]
    nd = len(image_ids)
    tp = np.zeros(nd)
    fp = np.zeros(nd)
    for d in range(nd):
        R = class_recs[image_ids[d]]
        bb = BB[d, :].astype(float)
        ovmax = -np.inf
        BBGT = R["bbox"].astype(float)
        if BBGT.size > 0:
            ixmin = np.maximum(BBGT[:, 0], bb[0])
            iymin = np.maximum(BBGT[:, 1], bb[1])
            ixmax = np.minimum(BBGT[:, 2], bb[2])
            iymax = np.minimum(BBGT[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
            ih = np.maximum(iymax - iymin + 1.0, 0.0)
            inters = iw * ih
            uni = (
                (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                + (BBGT[:, 2] - BBGT[:, 0] + 1.0) * (BBGT[:, 3] - BBGT[:, 1] + 1.0)
                - inters
            )
            with np.errstate(invalid="ignore"):  # degenerate boxes: 0/0, as in the devkit
                overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)
        if ovmax > ovthresh:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1.0
                    R["det"][jmax] = 1
                    branches["tp"] = branches.get("tp", 0) + 1
                else:
                    fp[d] = 1.0
                    branches["taken"] = branches.get("taken", 0) + 1
            else:
                branches["difficult"] = branches.get("difficult", 0) + 1
        else:
            fp[d] = 1.0
            branches["miss"] = branches.get("miss", 0) + 1
    fp = np.cumsum(fp)
    tp = np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return rec, prec, ref_voc_ap(rec, prec, use_07_metric)


def random_dataset(seed, num_images=50, num_classes=5):
    """Integer-ish boxes and 1-decimal scores, so that IoU ties, IoU == 0.5 and score ties
    all occur; dets are jittered copies of gts (hits, duplicates) plus clutter."""
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for _ in range(num_images):
        n = int(rng.integers(0, 6))
        xy = rng.integers(0, 60, (n, 2)).astype(float)
        wh = rng.integers(1, 40, (n, 2)).astype(float)
        boxes = np.concatenate([xy, xy + wh], axis=1)
        labels = rng.integers(1, num_classes + 1, n)
        gts.append({"boxes": boxes, "labels": labels, "difficult": rng.random(n) < 0.2})
        m_hit = int(rng.integers(0, 3 * n + 1))
        src = rng.integers(0, max(n, 1), m_hit)
        hit_boxes = boxes[src] + rng.integers(-4, 5, (m_hit, 4)) if n else np.zeros((0, 4))
        hit_labels = labels[src] if n else np.zeros(0, dtype=int)
        m_bg = int(rng.integers(0, 8))
        bg_xy = rng.integers(0, 60, (m_bg, 2)).astype(float)
        bg = np.concatenate([bg_xy, bg_xy + rng.integers(1, 40, (m_bg, 2))], axis=1)
        dets.append(
            {
                "boxes": np.concatenate([hit_boxes, bg]),
                "labels": np.concatenate([hit_labels, rng.integers(1, num_classes + 1, m_bg)]),
                "scores": np.round(rng.random(m_hit + m_bg), 1),
            }
        )
    return gts, dets


@pytest.mark.parametrize("use_07_metric", [True, False])
@pytest.mark.parametrize("seed", range(8))
def test_matches_loop_reference_exactly(seed, use_07_metric):
    gts, dets = random_dataset(seed)
    if seed % 2:  # torch inputs must give the very same numbers as numpy ones
        gts = [{k: torch.as_tensor(v) for k, v in g.items()} for g in gts]
        dets = [{k: torch.as_tensor(v) for k, v in d.items()} for d in dets]
    out = voc.evaluate(gts, dets, iou_threshold=0.5, use_07_metric=use_07_metric)
    aps = []
    for cls in range(1, 6):
        num_gt = sum(int((~np.asarray(g["difficult"])[np.asarray(g["labels"]) == cls]).sum())
                     for g in gts)  # fmt: skip
        assert out["num_gt"][cls] == num_gt
        if num_gt == 0:  # voc_eval divides by zero here; we report NaN instead
            assert np.isnan(out["ap"][cls])
            continue
        rec, prec, ap = ref_voc_eval(gts, dets, cls, 0.5, use_07_metric)
        assert abs(out["ap"][cls] - ap) < 1e-12
        np.testing.assert_array_equal(out["recall"][cls], rec)
        np.testing.assert_array_equal(out["precision"][cls], prec)
        aps.append(ap)
    assert abs(out["map"] - np.mean(aps)) < 1e-12


def test_reference_data_exercises_the_edge_cases():
    # Guard for the test above: the random data must really contain score ties, IoU exactly
    # 0.5, and detections whose best gt is difficult or already taken, else it proves little.
    gts, dets = random_dataset(0)
    scores = np.concatenate([d["scores"] for d in dets])
    assert len(np.unique(scores)) < len(scores)
    branches = {}
    for cls in range(1, 6):
        ref_voc_eval(gts, dets, cls, 0.5, True, branches)
    assert min(branches.get(k, 0) for k in ("tp", "taken", "difficult", "miss")) >= 3
    boundary = sum(
        int(np.sum(voc._iou_plus_one(d["boxes"], g["boxes"][None].repeat(len(d["boxes"]), 0))
                   == 0.5))
        for g, d in zip(gts, dets)
    )  # fmt: skip
    assert boundary > 0


# --------------------------------------------------------------------------------------------
# Hand-computed cases. Boxes are xyxy; with the +1 convention [0, 0, 9, 9] is 10 x 10 pixels.
# --------------------------------------------------------------------------------------------


def gt(boxes, labels=None, difficult=None):
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    labels = np.ones(len(boxes), dtype=int) if labels is None else np.asarray(labels)
    out = {"boxes": boxes, "labels": labels}
    if difficult is not None:
        out["difficult"] = np.asarray(difficult, dtype=bool)
    return out


def det(boxes, scores, labels=None):
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    labels = np.ones(len(boxes), dtype=int) if labels is None else np.asarray(labels)
    return {"boxes": boxes, "scores": np.asarray(scores, dtype=float), "labels": labels}


A = [0, 0, 9, 9]
B = [20, 20, 29, 29]


@pytest.mark.parametrize("use_07_metric", [True, False])
def test_perfect_detection_gives_ap_one(use_07_metric):
    out = voc.evaluate([gt([A])], [det([A], [0.9])], use_07_metric=use_07_metric)
    # 11 * (1 / 11) accumulated one term at a time is 1 + 2e-16 in the devkit too.
    assert out["ap"][1] == pytest.approx(1.0, abs=1e-12)
    assert out["map"] == out["ap"][1]
    assert out["num_gt"] == {1: 1}


def test_detection_on_difficult_gt_is_ignored():
    # B is difficult; its detection has the higher score. Ignored means cumulative
    # (tp, fp) = (0, 0) then (1, 0): precision [0/eps = 0, 1], recall [0, 1], AP 1.
    # Were it a fp, precision at recall 1 would be 1/2 and the 11-point AP 0.5.
    out = voc.evaluate([gt([A, B], difficult=[False, True])], [det([B, A], [0.9, 0.8])])
    np.testing.assert_array_equal(out["precision"][1], [0.0, 1.0])
    np.testing.assert_array_equal(out["recall"][1], [0.0, 1.0])
    assert out["num_gt"][1] == 1
    assert out["ap"][1] == pytest.approx(1.0, abs=1e-12)


def test_duplicate_detection_is_false_positive_and_hand_computed_aps():
    # Detections in score order: A (tp), A shifted by 1 px (duplicate -> fp), B (tp).
    # npos 2: precision [1, 1/2, 2/3], recall [1/2, 1/2, 1].
    # 11-point: t = 0..0.5 (6 thresholds) see max precision 1, t = 0.6..1 (5) see 2/3:
    #   (6 * 1 + 5 * 2/3) / 11 = 28/33.
    # Area: envelope 1 on recall (0, 1/2], 2/3 on (1/2, 1]: 1/2 + 1/3 = 5/6.
    gts = [gt([A, B])]
    dets = [det([A, [1, 0, 10, 9], B], [0.9, 0.8, 0.7])]
    out07 = voc.evaluate(gts, dets, use_07_metric=True)
    np.testing.assert_allclose(out07["precision"][1], [1.0, 0.5, 2 / 3], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(out07["recall"][1], [0.5, 0.5, 1.0])
    assert out07["ap"][1] == pytest.approx(28 / 33, abs=1e-12)
    out10 = voc.evaluate(gts, dets, use_07_metric=False)
    assert out10["ap"][1] == pytest.approx(5 / 6, abs=1e-12)


@pytest.mark.parametrize("use_07_metric", [True, False])
def test_no_detections_gives_ap_zero(use_07_metric):
    out = voc.evaluate([gt([A]), gt([B])], [det([], []), det([], [])], use_07_metric=use_07_metric)
    assert out["ap"] == {1: 0.0}
    assert out["map"] == 0.0
    assert out["precision"][1].shape == (0,)


def test_class_without_ground_truth_is_nan_and_left_out_of_map():
    # Label 2 only has detections, label 3 only a difficult gt: both NaN, neither in the mAP.
    gts = [gt([A, B], labels=[1, 3], difficult=[False, True])]
    dets = [det([A, B], [0.9, 0.8], labels=[1, 2])]
    out = voc.evaluate(gts, dets)
    assert set(out["ap"]) == {1, 2, 3}
    assert np.isnan(out["ap"][2]) and np.isnan(out["ap"][3])
    assert out["num_gt"] == {1: 1, 2: 0, 3: 0}
    assert out["map"] == pytest.approx(1.0, abs=1e-12)


def test_plus_one_pixel_convention_turns_a_miss_into_a_hit():
    # gt [0,0,9,9], det [0,0,9,4.2] nested inside it.
    # +1 convention: 10 x 5.2 = 52 over 10 x 10 = 100 -> IoU 0.52 > 0.5: hit.
    # Plain areas:    9 x 4.2 = 37.8 over 81        -> IoU 0.467: would be a miss.
    out = voc.evaluate([gt([A])], [det([[0, 0, 9, 4.2]], [0.9])], use_07_metric=False)
    assert out["ap"][1] == 1.0
    plain_iou = (9 * 4.2) / (9 * 9)
    assert plain_iou < 0.5


def test_iou_exactly_at_threshold_is_not_a_hit():
    # det [0,0,9,4]: 10 x 5 = 50 pixels inside the 100-pixel gt: IoU exactly 0.5 (exact in
    # floating point), and a hit needs IoU strictly above the threshold.
    dets = [det([[0, 0, 9, 4]], [0.9])]
    assert voc.evaluate([gt([A])], dets, iou_threshold=0.5)["ap"][1] == 0.0
    assert voc.evaluate([gt([A])], dets, iou_threshold=0.49)["ap"][1] == pytest.approx(1.0)


@pytest.mark.parametrize("use_07_metric, expected", [(True, 6 / 11), (False, 0.5)])
def test_no_fall_through_to_second_best_gt(use_07_metric, expected):
    # Two overlapping gts A = [0,0,9,9] and C = [0,1,9,10] (IoU 90/110 with each other).
    # Both detections equal A: best gt A for both. The second one is a fp even though its IoU
    # with the still-free C is 0.82 > 0.5. tp/fp = (1,0),(1,1): precision [1, 1/2],
    # recall [1/2, 1/2]. 11-point: 1 for t = 0..0.5, nothing above -> 6/11; area: 1/2.
    # (Falling through to C would give AP 1.)
    gts = [gt([A, [0, 1, 9, 10]])]
    out = voc.evaluate(gts, [det([A, A], [0.9, 0.8])], use_07_metric=use_07_metric)
    np.testing.assert_array_equal(out["precision"][1], [1.0, 0.5])
    assert out["ap"][1] == pytest.approx(expected, abs=1e-12)


def test_detections_only_compete_within_their_image():
    # The same box in image 1 must not match the gt of image 0.
    out = voc.evaluate([gt([A]), gt([B])], [det([A], [0.9]), det([A], [0.8])])
    np.testing.assert_array_equal(out["precision"][1], [1.0, 0.5])
    np.testing.assert_array_equal(out["recall"][1], [0.5, 0.5])


def test_curves_hand_computed():
    # PR points (recall, precision): (0.25, 1), (0.25, 0.5), (0.5, 2/3), (0.75, 0.75), (0.75, 0.6)
    # 11-point: t 0..0.2 -> 1 (3x); t 0.3..0.5 -> max(2/3, 3/4, 0.6) = 3/4 (3x);
    #   t 0.6, 0.7 -> 3/4 (2x); t 0.8..1 -> 0 (3x). (3 + 5 * 0.75) / 11 = 6.75 / 11.
    # Area: envelope 1 on (0, .25], 3/4 on (.25, .75], 0 after: .25 + .5 * .75 = 0.625.
    rec = np.array([0.25, 0.25, 0.5, 0.75, 0.75])
    prec = np.array([1.0, 0.5, 2 / 3, 0.75, 0.6])
    assert curves.ap_11_point(rec, prec) == pytest.approx(6.75 / 11, abs=1e-12)
    assert curves.ap_area(rec, prec) == pytest.approx(0.625, abs=1e-12)
    np.testing.assert_array_equal(curves.precision_envelope(prec), [1.0, 0.75, 0.75, 0.75, 0.6])
    for use_07_metric in (True, False):
        assert curves.voc_ap(rec, prec, use_07_metric) == ref_voc_ap(rec, prec, use_07_metric)


def test_precision_recall_counts():
    # tp/fp per detection: ignored, tp, fp, tp with 4 positives.
    prec, rec = curves.precision_recall([0, 1, 0, 1], [0, 0, 1, 0], 4)
    np.testing.assert_array_equal(prec, [0.0, 1.0, 0.5, 2 / 3])
    np.testing.assert_array_equal(rec, [0.0, 0.25, 0.25, 0.5])


def test_inputs_torch_numpy_and_missing_difficult_agree():
    gts, dets = random_dataset(3)
    no_difficult = [{"boxes": g["boxes"], "labels": g["labels"]} for g in gts]
    all_false = [{**g, "difficult": np.zeros(len(g["labels"]), bool)} for g in gts]
    torch_dets = [{k: torch.as_tensor(v) for k, v in d.items()} for d in dets]
    a = voc.evaluate(no_difficult, dets)
    b = voc.evaluate(all_false, torch_dets)
    assert a["ap"] == pytest.approx(b["ap"], nan_ok=True) and a["map"] == b["map"]


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="images"):
        voc.evaluate([gt([A])], [])
    with pytest.raises(ValueError, match="scores"):
        voc.evaluate([gt([A])], [{"boxes": np.zeros((2, 4)), "scores": [1.0], "labels": [1, 1]}])


def test_format_table_and_per_class_ap():
    gts = [gt([A, B], labels=[1, 2])]
    out = voc.evaluate(gts, [det([A], [0.9], labels=[1])], use_07_metric=False)
    table = voc.format_table(out, ["cat", "dog"])
    lines = table.splitlines()
    assert lines[1].split() == ["cat", "1.0000", "1", "1"]
    assert lines[2].split() == ["dog", "0.0000", "1", "0"]
    assert lines[-1].split() == ["mAP", "0.5000"]
    assert voc.per_class_ap(out, {1: "cat", 2: "dog"}) == {"cat": 1.0, "dog": 0.0}
    assert voc.per_class_ap(out) == {"1": 1.0, "2": 0.0}


def test_pr_curve_points_and_plot():
    import matplotlib

    matplotlib.use("Agg")
    from ssdlib.viz.pr_curves import plot_pr_curves, pr_curve_points

    # Raw precision [0 (ignored difficult first), 1, 0.5] -> envelope [1, 1, 0.5], plus a
    # leading point at recall 0 carrying the first precision.
    rec, prec = pr_curve_points(np.array([0.0, 0.5, 0.5]), np.array([0.0, 1.0, 0.5]))
    np.testing.assert_array_equal(rec, [0.0, 0.0, 0.5, 0.5])
    np.testing.assert_array_equal(prec, [1.0, 1.0, 1.0, 0.5])
    rec, prec = pr_curve_points(np.zeros(0), np.zeros(0), interpolated=False)
    np.testing.assert_array_equal(prec, [0.0])

    gts, dets = random_dataset(5)
    out = voc.evaluate(gts, dets)
    ax = plot_pr_curves(out, class_names=["a", "b", "c", "d", "e"])
    drawn = [line.get_label() for line in ax.get_lines()]
    expected = [common.class_name(c, "abcde") for c, n in out["num_gt"].items() if n > 0]
    assert [d.split(" ")[0] for d in drawn] == expected
    matplotlib.pyplot.close(ax.figure)


def test_crowded_image_in_small_blocks_gives_the_same(monkeypatch):
    # One image with 40 gts and many detections: splitting the IoU into blocks of a few
    # detections (the memory guard) must not change anything.
    rng = np.random.default_rng(11)
    xy = rng.integers(0, 100, (40, 2)).astype(float)
    boxes = np.concatenate([xy, xy + rng.integers(5, 30, (40, 2))], axis=1)
    gts = [gt(boxes, labels=rng.integers(1, 3, 40), difficult=rng.random(40) < 0.2)]
    src = rng.integers(0, 40, 300)
    dets = [det(boxes[src] + rng.integers(-3, 4, (300, 4)), np.round(rng.random(300), 2),
                labels=rng.integers(1, 3, 300))]  # fmt: skip
    whole = voc.evaluate(gts, dets, use_07_metric=False)
    monkeypatch.setattr(voc, "_BLOCK_PAIRS", 64)  # 64 // 40 gts -> 1 detection per block
    blocked = voc.evaluate(gts, dets, use_07_metric=False)
    assert whole["ap"] == blocked["ap"]
    for cls in (1, 2):
        rec, prec, ap = ref_voc_eval(gts, dets, cls, 0.5, False)
        assert blocked["ap"][cls] == ap


small_box = st.tuples(*[st.integers(0, 12)] * 4).map(
    lambda b: [min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])]
)


@st.composite
def tiny_dataset(draw):
    """A few images of small integer boxes in 2 classes: many exact IoU ties and boundaries."""
    gts, dets = [], []
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(0, 4))
        m = draw(st.integers(0, 6))
        gts.append(gt(draw(st.lists(small_box, min_size=n, max_size=n)),
                      labels=draw(st.lists(st.integers(1, 2), min_size=n, max_size=n)),
                      difficult=draw(st.lists(st.booleans(), min_size=n, max_size=n))))  # fmt: skip
        dets.append(det(draw(st.lists(small_box, min_size=m, max_size=m)),
                        draw(st.lists(st.sampled_from([0.1, 0.5, 0.9]), min_size=m, max_size=m)),
                        labels=draw(st.lists(st.integers(1, 2), min_size=m, max_size=m))))  # fmt: skip
    return gts, dets


@settings(max_examples=150, deadline=None, derandomize=True)
@given(data=tiny_dataset(), use_07_metric=st.booleans(), thr=st.sampled_from([0.3, 0.5, 0.7]))
def test_property_matches_loop_reference(data, use_07_metric, thr):
    gts, dets = data
    out = voc.evaluate(gts, dets, iou_threshold=thr, use_07_metric=use_07_metric)
    for cls, ap in out["ap"].items():
        if out["num_gt"][cls] == 0:
            assert np.isnan(ap)
            continue
        _, _, ref = ref_voc_eval(gts, dets, cls, thr, use_07_metric)
        assert ap == ref
