"""Evaluation with post-processing variants: one forward pass, several settings."""

from __future__ import annotations

import torch

from ssdlib.config import load_config
from ssdlib.data import ShapesDataset, build_test_transform
from ssdlib.engine.evaluator import run_inference
from ssdlib.model import build_model


def test_variants_equal_separate_runs_and_hold_no_logits():
    cfg = load_config("shapes", ["model.width=0.25"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    transform = build_test_transform(cfg.input.image_size, cfg.input.pixel_mean, cfg.input.pixel_std)
    dataset = ShapesDataset("test", 5, image_size=cfg.input.image_size, transform=transform)
    variants = {"same": {}, "nms 0.8": {"nms_threshold": 0.8}, "score 0.3": {"score_threshold": 0.3}}
    result = run_inference(model, dataset, 2, "cpu", progress=False, variants=variants)
    assert set(result.variants) == set(variants)
    alone = {name: run_inference(model, dataset, 2, "cpu", progress=False, **settings)
             for name, settings in variants.items()}  # fmt: skip
    for name in variants:
        assert len(result.variants[name]) == len(dataset)
        for a, b in zip(result.variants[name], alone[name].detections):
            for key in ("boxes", "scores", "labels"):
                assert torch.equal(a[key], b[key]), (name, key)
    for a, b in zip(result.variants["same"], result.detections):
        assert torch.equal(a["scores"], b["scores"])
    assert not any(k not in ("boxes", "scores", "labels") for d in result.detections for k in d)
