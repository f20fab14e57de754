"""The pure functions behind the anchor explorer, and the explorer's observable state."""

from __future__ import annotations

import math

import pytest
import torch

from ssdlib.boxes import box_iou, cxcywh_to_xyxy, decode
from ssdlib.config import load_config
from ssdlib.matching import match
from ssdlib.model import LightBackbone, VGG16Backbone
from ssdlib.priors import generate_priors, priors_per_map
from ssdlib.viz.anchors import (
    describe_location,
    matches_for_box,
    paper_scales,
    prior_index,
    priors_at,
    receptive_fields,
    to_pixels,
)

CONFIGS = ["ssd300_voc", "ssd512_voc", "ssd300_coco", "shapes"]


@pytest.mark.parametrize("name", [*CONFIGS, "shapes:densify"])
def test_priors_at_is_the_slice_of_generate_priors(name):
    name, _, dense = name.partition(":")
    cfg = load_config(name, ["priors.densify=[2, 3, 1, 1, 1]"] if dense else []).priors
    priors = generate_priors(cfg)
    seen = 0
    for k, f in enumerate(cfg.feature_maps):
        for i, j in {(0, 0), (f - 1, f - 1), (f // 2, f // 3), (0, f - 1)}:
            boxes = priors_at(cfg, k, i, j)
            start = prior_index(cfg, k, i, j)
            assert torch.equal(boxes, priors[start : start + len(boxes)]), (k, i, j)
            seen += 1
    assert seen >= len(cfg.feature_maps)


def test_prior_index_walks_every_prior_once():
    cfg = load_config("shapes").priors
    starts = [prior_index(cfg, k, i, j) for k, f in enumerate(cfg.feature_maps)
              for i in range(f) for j in range(f)]  # fmt: skip
    ends = starts[1:] + [sum(priors_per_map(cfg))]
    sizes = [e - s for s, e in zip(starts, ends)]
    # strictly increasing, and each location holds exactly its map's boxes-per-location
    assert all(s > 0 for s in sizes)
    # shapes densifies maps 0 and 1 (2x2 min-size squares): 4 + 1 + 2 and 4 + 1 + 4 boxes
    assert sizes[0] == 7 and sizes[20 * 20] == 9 and sizes[-1] == 4 and 6 in sizes
    with pytest.raises(IndexError, match="outside map 0"):
        prior_index(cfg, 0, 20, 0)


def test_priors_at_overrides_sizes_and_ratios():
    cfg = load_config("ssd300_voc").priors
    boxes = priors_at(cfg, 2, 5, 5, min_size=90, max_size=160, aspect_ratios=[3.0])
    assert boxes.shape == (4, 4)
    w = boxes[:, 2] * 300
    assert w[0].item() == pytest.approx(90)
    assert w[1].item() == pytest.approx(math.sqrt(90 * 160), rel=1e-5)
    assert w[2].item() == pytest.approx(90 * math.sqrt(3), rel=1e-5)
    # centre of cell (5, 5) on a stride-32 map
    assert boxes[0, 0].item() == pytest.approx(5.5 * 32 / 300)


def test_paper_scales_formula():
    s = paper_scales(6)
    assert s[0] == pytest.approx(0.2) and s[-1] == pytest.approx(0.9)
    assert [round(b - a, 6) for a, b in zip(s, s[1:])] == [0.14] * 5
    with pytest.raises(ValueError):
        paper_scales(1)


def test_to_pixels_and_description():
    cfg = load_config("ssd300_voc").priors
    boxes = priors_at(cfg, 5, 0, 0)
    px = to_pixels(boxes, 300)
    assert px[0].tolist() == pytest.approx([18.0, 18.0, 282.0, 282.0], abs=1e-3)
    text = describe_location(cfg, 5, 0, 0, boxes)
    assert text.startswith("map 5 (1x1), location (0, 0): 4 boxes")
    assert "[18, 18, 282, 282]" in text


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_matches_for_box_agrees_with_match(threshold):
    priors = generate_priors(load_config("ssd300_voc").priors)
    gt = torch.tensor([0.21, 0.32, 0.55, 0.71])
    res = matches_for_box(gt, priors, threshold)
    labels, _ = match(gt[None], torch.tensor([1]), priors, threshold)
    assert set(res.indices.tolist()) == set(torch.nonzero(labels).flatten().tolist())
    iou = box_iou(gt[None], cxcywh_to_xyxy(priors))[0]
    assert torch.allclose(res.ious, iou[res.indices])
    assert torch.all(res.ious[:-1] >= res.ious[1:])  # sorted, best first
    assert not res.forced.any()  # this box is large enough to clear every threshold here
    # the targets decode back to the ground truth from every matched prior
    back = decode(res.targets, priors[res.indices])
    assert torch.allclose(back, gt.expand_as(back), atol=1e-5)


def test_matches_for_box_forces_the_best_prior_for_a_tiny_box():
    priors = generate_priors(load_config("ssd300_voc").priors)
    tiny = torch.tensor([0.500, 0.500, 0.530, 0.545])  # 9 x 13.5 px, below every prior
    res = matches_for_box(tiny, priors, 0.5)
    assert len(res.indices) == 1 and res.forced.tolist() == [True]
    iou = box_iou(tiny[None], cxcywh_to_xyxy(priors))[0]
    assert res.indices.item() == int(iou.argmax())
    # a looser threshold adds real matches, and the forced flag follows the threshold
    loose = matches_for_box(tiny, priors, 0.1)
    assert len(loose.indices) > 1 and not loose.forced.any()


def test_receptive_fields_of_vgg16_ssd300():
    rf = receptive_fields(VGG16Backbone(300), 300)
    # conv4_3's 92 px is the textbook VGG16 number; conv7 grows to 420 px thanks to pool5
    # (3x3, stride 1) and the dilation-6 conv6.
    assert [r.size for r in rf] == [92, 420, 452, 516, 644, 772]
    assert [r.jump for r in rf] == [8, 16, 32, 64, 64, 64]
    assert rf[0].start == 4.0  # cell i of conv4_3 is centred at 4 + 8 i = (i + 0.5) * 8


def test_receptive_fields_of_the_light_backbone_and_ssd512():
    light = receptive_fields(LightBackbone(), 160)
    assert [r.jump for r in light] == [8, 16, 32, 64, 64]
    assert all(a.size < b.size for a, b in zip(light, light[1:]))
    assert len(receptive_fields(VGG16Backbone(512), 512)) == 7


def test_anchor_explorer_state_follows_the_controls():
    pytest.importorskip("ipywidgets")
    from ssdlib.viz.anchor_explorer import AnchorExplorer

    cfg = load_config("ssd300_voc").priors
    gt = torch.tensor([[0.1, 0.2, 0.6, 0.7]])
    ex = AnchorExplorer(cfg, gt_boxes=gt)
    assert ex.state["map"] == 0 and ex.state["num_boxes"] == 4
    first_png = bytes(ex.picture.value)
    assert first_png.startswith(b"\x89PNG")

    ex.col.value = ex.col.value + 1
    assert ex.state["location"] == (19, 20)
    assert "location (19, 20): 4 boxes" in ex.status.value
    assert bytes(ex.picture.value) != first_png

    ex.map_index.value = 4  # 3x3: sliders are clamped and sizes reset to the config's
    assert ex.row.max == 2 and ex.state["location"] == (2, 2)
    assert ex.min_size.value == 213 and ex.state["num_boxes"] == 4
    ex.ratios.value = (2.0, 3.0)
    assert ex.state["num_boxes"] == 6 and ex.state["total_priors"] == 8732 + 9 * 2

    ex.mode.value = "matching"
    strict = len(ex.state["indices"])
    ex.iou.value = 0.3
    assert len(ex.state["indices"]) > strict
    assert ex.state["text"].startswith(f"object 0: {len(ex.state['indices'])} matched priors")


def _explorer_with_objects(objects, **kw):
    pytest.importorskip("ipywidgets")
    from ssdlib.viz.anchor_explorer import AnchorExplorer

    return AnchorExplorer(load_config("ssd300_voc").priors, objects=objects, **kw)


def _overlay_points(ex, gid):
    """The (w, h) points the overlay draws for the "covered" or "uncovered" set."""
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    ex.draw_objects_on(ax, ex.state)
    (points,) = [c for c in ax.collections if c.get_gid() == gid]
    return torch.as_tensor(points.get_offsets().data, dtype=torch.float32)


def test_explorer_overlay_highlights_what_anchors_analyze_finds_uncovered():
    from ssdlib.anchors.coverage import analyze_boxes, dataset_objects
    from ssdlib.data import ShapesDataset

    cfg = load_config("ssd300_voc")
    # A box equal to one prior (IoU 1) and a 3 x 3 px box (no prior near IoU 0.5) make the
    # expected answer plain for two objects, whatever the coverage code says.
    prior = cxcywh_to_xyxy(priors_at(cfg.priors, 1, 9, 9))[0]
    tiny = torch.tensor([0.50, 0.50, 0.51, 0.51])
    shapes = dataset_objects(ShapesDataset("test", 24, image_size=300))
    objects = [torch.stack([prior, tiny]), *shapes]
    ex = _explorer_with_objects(objects, iou_threshold=cfg.train.iou_threshold)

    def expected():
        r = analyze_boxes(objects, generate_priors(ex.current_config()), cfg.train.iou_threshold, 300)
        return r, torch.nonzero(~r.covered).flatten()

    r, uncovered = expected()
    state = ex.state["objects"]
    assert torch.equal(state["uncovered"], uncovered) and 1 in uncovered and 0 not in uncovered
    assert 0 < len(uncovered) < len(r.best_iou) // 2
    assert torch.equal(state["best_iou"], r.best_iou) and torch.allclose(state["wh"], r.wh)
    assert f"{len(r.best_iou)} objects, {len(uncovered)} with no prior at IoU &gt;= 0.5" in ex.status.value
    # The picture draws exactly those points in the highlighted set, and the others apart.
    assert torch.equal(_overlay_points(ex, "uncovered"), r.wh[uncovered].clamp(min=0.5))
    assert len(_overlay_points(ex, "covered")) == len(r.wh) - len(uncovered)

    # A new location keeps the overlay; smaller boxes on map 0 cover more small objects.
    overlay_png = bytes(ex.objects_picture.value)
    ex.col.value = 3
    assert bytes(ex.objects_picture.value) == overlay_png
    ex.min_size.value = 20
    r_small, uncovered_small = expected()
    assert torch.equal(ex.state["objects"]["uncovered"], uncovered_small)
    assert len(uncovered_small) < len(uncovered) and 1 in uncovered_small
    assert torch.equal(_overlay_points(ex, "uncovered"), r_small.wh[uncovered_small].clamp(min=0.5))
    assert bytes(ex.objects_picture.value) != overlay_png


def test_explorer_without_objects_has_no_overlay():
    pytest.importorskip("ipywidgets")
    from ssdlib.viz.anchor_explorer import AnchorExplorer

    ex = AnchorExplorer(load_config("shapes").priors)
    assert "objects" not in ex.state and "data:" not in ex.state["text"]
    assert ex.objects_picture not in ex.widget.children[1].children


def test_explorer_grid_draws_each_state_and_restores_the_controls():
    ex = _explorer_with_objects([torch.tensor([[0.1, 0.1, 0.4, 0.5], [0.5, 0.5, 0.52, 0.53]])],
                                gt_boxes=torch.tensor([[0.1, 0.2, 0.6, 0.7]]))  # fmt: skip
    ex.row.value = 7
    before, text = ex.controls(), ex.state["text"]
    fig = ex.grid([{"map_index": 4, "row": 0, "col": 0},
                   {"map_index": 0, "min_size": 12.0},
                   {"mode": "matching", "iou": 0.3},
                   {"map_index": 0, "min_size": 12.0, "show": "objects"}], ncols=3)  # fmt: skip
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "map 4 (3x3) at (0, 0): 4 boxes"
    assert titles[1] == "map 0 (38x38) at (7, 19): 4 boxes\nmap 0: min 12, max 60, ratios [2.0]"
    ex.set_controls({"mode": "matching", "iou": 0.3})
    assert titles[2] == f"object 0: {len(ex.state['indices'])} priors at IoU ≥ 0.30"
    assert titles[3].startswith("2 objects, 1 below IoU 0.5\nmap 0: min 12")
    assert titles[4:] == ["", ""] and not fig.axes[5].axison  # the unused panels stay blank
    ex.set_controls(before)
    assert ex.controls() == before and ex.state["text"] == text
    with pytest.raises(KeyError, match="unknown controls"):
        ex.set_controls({"zoom": 2})
