"""ONNX export of an :class:`~ssdlib.model.SSD`, and running the exported file in onnxruntime.

Two graphs, both with a dynamic batch dimension (a file exported at batch 1 runs at batch 8):

* raw (default): ``images (B, 3, S, S) float32, normalised`` -> ``cls_logits (B, P, K)``,
  ``box_deltas (B, P, 4)``, exactly :meth:`SSD.forward`. :class:`OnnxDetector` decodes them with
  :func:`ssdlib.postprocess.detect`, the PyTorch path's own code.
* ``postprocess=True``: final detections in the graph (softmax, :func:`ssdlib.boxes.decode`,
  per-class top-k candidates, score threshold, class-wise ONNX ``NonMaxSuppression``, best
  ``max_per_image`` overall), with the model's post-processing settings baked in. Outputs, with
  M = ``max_per_image``:

  - ``boxes (B, M, 4)`` float32 xyxy relative to the input (multiply by the image size),
  - ``scores (B, M)`` float32, descending per image,
  - ``labels (B, M)`` int64 in 1..C,
  - ``num_detections (B,)`` int64: rows ``[:num_detections[b]]`` of image b are its
    detections, the rest is padding (boxes 0, scores 0, labels 0).

  These equal :meth:`SSD.predict` (same labels; scores and boxes to float rounding).

``dtype="fp16"`` stores the network's weights in float16 (half the file); the input and every
output stay float32 (casts in the graph) and post-processing runs in float32.

The file carries what inference needs besides the graph as metadata (``ssdlib.*`` keys): the
priors, box variances and post-processing settings for the raw graph, the input size and
normalisation, and the class names, so ``ssdlib demo --onnx model.onnx`` needs no config.

The TorchScript-based exporter (``dynamo=False``) is used: it traces the dynamic batch size
through ``Shape`` ops and lets the multi-class NMS be one ONNX ``NonMaxSuppression`` node
(``_MultiClassNMS.symbolic``) rather than a per-image loop unrolled at the traced batch size.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torchvision.ops import nms

from ssdlib.boxes import decode
from ssdlib.model import SSD
from ssdlib.postprocess import Detections, detect

__all__ = ["EXPORT_DTYPES", "DetectionGraph", "OnnxDetector", "RawGraph", "export_onnx"]

EXPORT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
DEFAULT_OPSET = 17
RAW_OUTPUTS = ["cls_logits", "box_deltas"]
DETECTION_OUTPUTS = ["boxes", "scores", "labels", "num_detections"]


class RawGraph(nn.Module):
    """``images (B, 3, S, S) float32 -> (cls_logits (B, P, K), box_deltas (B, P, 4))`` float32,
    the network running in its weights' dtype."""

    def __init__(self, model: SSD) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = next(self.model.parameters()).dtype
        cls_logits, box_deltas = self.model(images.to(dtype))
        return cls_logits.float(), box_deltas.float()


class _MultiClassNMS(torch.autograd.Function):
    """``(boxes (B, P, 4) xyxy, scores (B, C, P)) -> selected (N, 3) int64 (image, class, box)``:
    per image and class, greedy NMS of the boxes scoring strictly above ``score_threshold``,
    at most ``max_per_class`` of them, best first. Exported as one ONNX ``NonMaxSuppression``,
    whose semantics (``score > threshold``, suppression at ``IoU > iou_threshold``) these are."""

    @staticmethod
    def forward(ctx, boxes, scores, max_per_class: int, iou_threshold: float, score_threshold: float):
        out = []
        for b in range(scores.shape[0]):
            for c in range(scores.shape[1]):
                idx = (scores[b, c] > score_threshold).nonzero().flatten()
                kept = idx[nms(boxes[b, idx], scores[b, c, idx], iou_threshold)[:max_per_class]]
                out.append(torch.stack([torch.full_like(kept, b), torch.full_like(kept, c), kept], 1))
        return torch.cat(out) if out else torch.zeros(0, 3, dtype=torch.int64)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class: int, iou_threshold: float, score_threshold: float):
        def const(value, dtype):
            return g.op("Constant", value_t=torch.tensor([value], dtype=dtype))

        return g.op("NonMaxSuppression", boxes, scores, const(max_per_class, torch.int64),
                    const(iou_threshold, torch.float32), const(score_threshold, torch.float32),
                    center_point_box_i=0)  # fmt: skip


class DetectionGraph(nn.Module):
    """``images (B, 3, S, S) -> boxes (B, M, 4), scores (B, M), labels (B, M), num_detections (B,)``
    (module docstring), the steps of :func:`ssdlib.postprocess.detect` in batched form."""

    def __init__(self, model: SSD) -> None:
        super().__init__()
        self.raw = RawGraph(model)
        self.register_buffer("priors", model.priors.float(), persistent=False)
        self.variances = model.variances
        p = {**DEFAULT_POSTPROCESS, **model.postprocess}
        self.score_threshold = float(p["score_threshold"])
        self.nms_threshold = float(p["nms_threshold"])
        self.max_per_image = int(p["max_per_image"])
        self.top_k = p["top_k_candidates"]
        self.clip = bool(p["clip"])
        self.max_log_scale = p["max_log_scale"]
        if self.score_threshold < 0:
            raise ValueError(f"score_threshold must be >= 0 for export, got {self.score_threshold}")

    def forward(self, images: torch.Tensor):
        cls_logits, box_deltas = self.raw(images)
        scores = torch.softmax(cls_logits, dim=-1)[..., 1:].transpose(1, 2)  # (B, C, P)
        boxes = decode(box_deltas, self.priors, self.variances, self.max_log_scale)  # (B, P, 4)
        if self.clip:
            boxes = boxes.clamp(0.0, 1.0)
        num_classes, num_priors = scores.shape[1], scores.shape[2]
        if self.top_k is not None and self.top_k < num_priors:
            # Per class only the best top_k candidates can survive: zero the others, which the
            # score threshold (>= 0, strict) then drops.
            top_scores, top_idx = scores.topk(int(self.top_k), dim=2)
            scores = torch.zeros_like(scores).scatter(2, top_idx, top_scores)
        # Each image keeps at most max_per_image boxes overall, so as many per class suffice.
        selected = _MultiClassNMS.apply(boxes, scores, self.max_per_image, self.nms_threshold,
                                        self.score_threshold)  # fmt: skip
        image, cls, prior = selected[:, 0], selected[:, 1], selected[:, 2]
        # Scatter the survivors' scores into a (B, C * P) table (-1 elsewhere); its row-wise
        # top M is each image's best M detections, best first, padded with -1 scores.
        table = torch.full((scores.shape[0], num_classes * num_priors), -1.0, device=scores.device)
        table = table.index_put((image, cls * num_priors + prior), scores[image, cls, prior])
        top_scores, top_idx = table.topk(min(self.max_per_image, num_classes * num_priors), dim=1)
        valid = top_scores >= 0
        labels = torch.where(valid, top_idx // num_priors + 1, torch.zeros_like(top_idx))
        box_idx = (top_idx % num_priors).unsqueeze(-1).expand(-1, -1, 4)
        out_boxes = boxes.gather(1, box_idx) * valid.unsqueeze(-1).to(boxes.dtype)
        out_scores = torch.where(valid, top_scores, torch.zeros_like(top_scores))
        return out_boxes, out_scores, labels, valid.sum(dim=1)


DEFAULT_POSTPROCESS = {"score_threshold": 0.01, "nms_threshold": 0.45, "max_per_image": 100,
                       "top_k_candidates": None, "clip": False, "max_log_scale": None}  # fmt: skip


def require(module: str):
    """``import module``, or an ImportError that says which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{module} is not installed: pip install 'ssdlib[export]'") from e


def _encode_tensor(t: torch.Tensor) -> str:
    return base64.b64encode(t.detach().float().contiguous().cpu().numpy().tobytes()).decode("ascii")


def _decode_tensor(text: str, shape: Sequence[int]) -> torch.Tensor:
    import numpy as np

    return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype=np.float32).copy()).view(*shape)


def export_onnx(
    model: SSD,
    path: str | os.PathLike,
    postprocess: bool = False,
    dtype: str = "fp32",
    opset: int = DEFAULT_OPSET,
    image_size: int | None = None,
    pixel_mean: Sequence[float] | None = None,
    pixel_std: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    batch_size: int = 1,
) -> Path:
    """Write ``model`` as an ONNX file at ``path`` (atomically: a temporary file, then renamed);
    returns the path. See the module docstring for the two graphs and their outputs.

    Args:
        postprocess: detections in the graph instead of raw outputs.
        dtype: "fp32" or "fp16" network weights (inputs and outputs stay float32).
        opset: ONNX opset (>= 11, NonMaxSuppression's with a dynamic batch).
        image_size: network input side S; default ``model.image_size`` (set by ``build_model``).
        pixel_mean, pixel_std, class_names: stored as metadata for ``demo --onnx``.
        batch_size: of the example traced; the file runs at any batch size.
    """
    onnx = require("onnx")
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(EXPORT_DTYPES)}, got {dtype!r}")
    if opset < 11:
        raise ValueError(f"opset must be >= 11 (NonMaxSuppression), got {opset}")
    image_size = image_size or model.image_size
    if not image_size:
        raise ValueError("image_size is required (the network's input side in pixels)")
    path = Path(path)
    # A float32 CPU copy in eval mode, in the exported dtype; the caller's model is untouched.
    net = _cpu_copy(model).to(EXPORT_DTYPES[dtype]).eval()
    net.priors = model.priors.detach().float().cpu()
    graph = DetectionGraph(net) if postprocess else RawGraph(net)
    outputs = DETECTION_OUTPUTS if postprocess else RAW_OUTPUTS
    example = torch.zeros(batch_size, 3, image_size, image_size)
    dynamic = {"images": {0: "batch"}, **{name: {0: "batch"} for name in outputs}}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(graph, (example,), tmp, input_names=["images"], output_names=outputs,
                              dynamic_axes=dynamic, opset_version=opset, dynamo=False,
                              do_constant_folding=True)  # fmt: skip
        proto = onnx.load(tmp)
        meta = {
            "ssdlib.graph": "detections" if postprocess else "raw",
            "ssdlib.dtype": dtype,
            "ssdlib.input": json.dumps({"image_size": image_size,
                                        "pixel_mean": list(map(float, pixel_mean or [0, 0, 0])),
                                        "pixel_std": list(map(float, pixel_std or [1, 1, 1]))}),
            "ssdlib.postprocess": json.dumps({**DEFAULT_POSTPROCESS, **model.postprocess}),
            "ssdlib.variances": json.dumps(list(model.variances)),
            "ssdlib.num_priors": str(model.priors.shape[0]),
            "ssdlib.priors": _encode_tensor(model.priors),
            "ssdlib.class_names": json.dumps(list(class_names or [])),
        }
        for key, value in meta.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 -> an ordinary file's mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _cpu_copy(model: SSD) -> SSD:
    import copy

    return copy.deepcopy(model).cpu().float()


class OnnxDetector:
    """An exported file in onnxruntime with :meth:`SSD.predict`'s interface.

    ``predict(images (B, 3, S, S) normalised) -> list[Detections]``: a raw graph's outputs go
    through :func:`ssdlib.postprocess.detect` with the stored priors and settings (``overrides``
    replace those settings); a detection graph's padded outputs are cut at ``num_detections``
    (its settings are fixed in the graph, so overrides other than a higher ``score_threshold``
    are refused).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        ort = require("onnxruntime")
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"--onnx {path}: no such file")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ValueError(f"--onnx {path}: not a loadable ONNX model ({str(e)[:200]})") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        if "ssdlib.graph" not in meta:
            raise ValueError(f"--onnx {path}: no ssdlib metadata; export it with `ssdlib export`")
        self.path = path
        self.graph = meta["ssdlib.graph"]
        self.input = json.loads(meta["ssdlib.input"])
        self.postprocess = json.loads(meta["ssdlib.postprocess"])
        self.variances = tuple(json.loads(meta["ssdlib.variances"]))
        self.priors = _decode_tensor(meta["ssdlib.priors"], (int(meta["ssdlib.num_priors"]), 4))
        self.class_names = json.loads(meta["ssdlib.class_names"])

    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The graph's outputs (torch tensors) for ``images`` (B, 3, S, S) float32."""
        feed = {"images": images.detach().float().contiguous().cpu().numpy()}
        return [torch.from_numpy(o) for o in self.session.run(None, feed)]

    def eval(self) -> OnnxDetector:
        return self

    def predict(self, images: torch.Tensor, **overrides) -> list[Detections]:
        if self.graph == "raw":
            cls_logits, box_deltas = self(images)
            kwargs = {**self.postprocess, **overrides}
            return detect(cls_logits, box_deltas, self.priors, variances=self.variances, **kwargs)
        unknown = set(overrides) - {"score_threshold"}
        if unknown:
            raise ValueError(f"{self.path}: post-processing is fixed in this graph; cannot "
                             f"override {', '.join(sorted(unknown))}")  # fmt: skip
        threshold = overrides.get("score_threshold", self.postprocess["score_threshold"])
        if threshold < self.postprocess["score_threshold"]:
            raise ValueError(f"{self.path}: score threshold {threshold} is below the "
                             f"{self.postprocess['score_threshold']} fixed in this graph")  # fmt: skip
        boxes, scores, labels, counts = self(images)
        out = []
        for b, s, lab, n in zip(boxes, scores, labels, counts):
            keep = s[: int(n)] > threshold
            out.append(Detections(b[: int(n)][keep], s[: int(n)][keep], lab[: int(n)][keep]))
        return out
