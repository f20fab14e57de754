"""draw_detections: boxes in the class colour with captions, on a copy, from any image type."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ssdlib.viz.draw import class_colour, draw_detections


def test_boxes_and_captions_in_the_class_colour_on_a_copy():
    image = torch.full((3, 60, 80), 200, dtype=torch.uint8)
    before = image.clone()
    pic = draw_detections(image, torch.tensor([[10.0, 12, 50, 40]]), torch.tensor([2]),
                          torch.tensor([0.9]), ["circle", "square"])  # fmt: skip
    a = np.asarray(pic)
    assert pic.size == (80, 60) and torch.equal(image, before)
    colour = class_colour(2)
    assert tuple(a[30, 10]) == colour and tuple(a[40, 30]) == colour  # left and bottom edges
    assert tuple(a[30, 30]) == (200, 200, 200) and tuple(a[5, 5]) == (200, 200, 200)
    caption = a[14:26, 13:50]
    assert (caption == colour).all(axis=-1).any() and (caption < 60).all(axis=-1).any()  # black text


def test_image_types_agree_and_no_boxes_is_a_plain_copy():
    hwc = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    boxes, labels = np.array([[5.0, 5, 30, 20]]), np.array([1])
    from_array = np.asarray(draw_detections(hwc, boxes, labels))
    from_pil = np.asarray(draw_detections(Image.fromarray(hwc), boxes, labels))
    from_tensor = np.asarray(draw_detections(torch.from_numpy(hwc).permute(2, 0, 1), boxes, labels))
    assert np.array_equal(from_array, from_pil) and np.array_equal(from_array, from_tensor)
    assert not np.array_equal(from_array, hwc)
    assert np.array_equal(np.asarray(draw_detections(hwc, np.zeros((0, 4)), np.zeros(0))), hwc)


def test_plot_losses_draws_the_logged_rows_in_a_new_figure_or_into_an_axes(tmp_path):
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ssdlib.viz.draw import plot_losses

    rows = [{"iteration": i, "loss": 3.0 / i, "loc_loss": 1.0 / i, "cls_loss": 2.0 / i, "lr": 1e-3}
            for i in (10, 20, 30)]  # fmt: skip
    rows.insert(1, {"iteration": 15, "mAP": 0.5})  # an evaluation row: not a loss
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    fig = plot_losses(tmp_path, tmp_path / "losses.png")
    assert len(fig.axes) == 2 and (tmp_path / "losses.png").stat().st_size > 0
    loss_ax, lr_ax = fig.axes
    assert [ln.get_label() for ln in loss_ax.lines] == ["total", "localisation", "confidence"]
    assert list(loss_ax.lines[2].get_ydata()) == [2.0 / 10, 2.0 / 20, 2.0 / 30]
    assert list(lr_ax.lines[0].get_xdata()) == [10, 20, 30]
    own, ax = plt.subplots()
    assert plot_losses(tmp_path / "metrics.jsonl", ax=ax) is own and len(own.axes) == 1
    assert list(ax.lines[0].get_ydata()) == [0.3, 3.0 / 20, 0.1]
    plt.close(fig)
    plt.close(own)
