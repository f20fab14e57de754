"""``onnxruntime_b1`` / ``onnxruntime_b8``: an exported SSD300 in onnxruntime (CPU) against the
same model's PyTorch fp32 ``predict``, same weights, same images, same run.

The file is the raw graph (``ssdlib export`` without ``--postprocess``) run through
:class:`ssdlib.export.OnnxDetector`, whose detections come from the same
:func:`ssdlib.postprocess.detect` as ``predict``'s: the rows compare the two runtimes on the
network. onnxruntime gets as many intra-op threads as torch has.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import torch

from ssdlib.bench.timing import Row, measure_pair
from ssdlib.model.ssd import SSD

__all__ = ["ROW_NAMES", "onnxruntime_available", "onnxruntime_rows"]

ROW_NAMES = ("onnxruntime_b1", "onnxruntime_b8")


def onnxruntime_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def onnxruntime_rows(s, model: SSD, images: torch.Tensor, big_batch: int) -> list[Row]:
    """Rows for ``images[:1]`` and ``images[:big_batch]`` (normalised, (B, 3, S, S)).

    ``s``: the bench Settings (repeats, warm-up, quick)."""
    from ssdlib.export import OnnxDetector, export_onnx

    model = model.eval()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx", image_size=images.shape[-1])
        detector = OnnxDetector(path, threads=torch.get_num_threads())
        size_mib = path.stat().st_size / 2**20
        with torch.inference_mode():
            for name, batch in zip(ROW_NAMES, (1, big_batch)):
                x = images[:batch].contiguous()
                ours_s, peer_s = measure_pair(lambda x=x: detector.predict(x),
                                              lambda x=x: model.predict(x),
                                              s.repeats, s.heavy_warmup)  # fmt: skip
                note = (f"onnxruntime CPU (raw graph, {size_mib:.0f} MiB fp32, "
                        f"{torch.get_num_threads()} threads) + ssdlib detect vs PyTorch fp32 "
                        f"predict (NCHW), batch {batch}")  # fmt: skip
                if batch != (8 if name.endswith("b8") else 1):
                    note += f" [quick: batch {batch}, not 8]"
                rows.append(Row(name, ours_s, peer_s, note))
    return rows
