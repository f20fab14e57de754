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
