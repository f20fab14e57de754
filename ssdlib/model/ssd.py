"""The SSD detector: backbone feature maps -> multibox heads -> (class logits, box offsets)."""

from __future__ import annotations

import torch
from torch import nn

from ssdlib.model.heads import SSDHead
from ssdlib.postprocess import Detections, detect


class SSD(nn.Module):
    """Single Shot MultiBox Detector.

    ``forward(images (B, 3, S, S) normalised) -> (cls_logits (B, P, K), box_deltas (B, P, 4))``,
    P = number of priors, K = classes + background. ``predict`` adds post-processing.

    Args:
        backbone: returns a list of feature maps, one per prior feature map.
        head: :class:`SSDHead` over those maps.
        priors: (P, 4) cx, cy, w, h relative — stored as a buffer so it follows ``.to(device)``.
        variances: box coding variances.
        postprocess: keyword defaults of :func:`ssdlib.postprocess.detect`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: SSDHead,
        priors: torch.Tensor,
        variances: tuple[float, float] = (0.1, 0.2),
        postprocess: dict | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        # Not persistent: priors are derived from the config, so checkpoints stay small and a
        # config change is never silently overridden by stale priors from a file.
        self.register_buffer("priors", priors, persistent=False)
        self.variances = tuple(variances)
        self.postprocess = dict(postprocess or {})
        # Layout ``predict`` gives its input; :func:`prepare_for_inference` sets channels_last.
        self.input_memory_format = torch.preserve_format
        # Input side in pixels (build_model sets it from cfg.input): ONNX export needs it.
        self.image_size: int | None = None

    @property
    def num_classes(self) -> int:
        """Object classes, background excluded."""
        return self.head.num_logits - 1

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.backbone(images))

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, **overrides) -> list[Detections]:
        """Detections per image (boxes xyxy relative to the input); ``overrides`` replace the
        model's post-processing defaults (``score_threshold=0.5`` ...)."""
        return self.detect(*self(self.prepare_input(images)), **overrides)

    def prepare_input(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` in the weights' dtype and layout (a no-op for a float32 model in the default
        layout); outputs are decoded in float32 whatever the network ran in."""
        weight = next(self.parameters())
        return images.to(device=weight.device, dtype=weight.dtype, memory_format=self.input_memory_format)

    def detect(self, cls_logits: torch.Tensor, box_deltas: torch.Tensor, **overrides) -> list[Detections]:
        """Post-processing of head outputs ``(B, P, K)``, ``(B, P, 4)`` with the model's priors
        and defaults: one forward pass can be post-processed with several settings."""
        kwargs = {**self.postprocess, **overrides}
        return detect(cls_logits, box_deltas, self.priors, variances=self.variances, **kwargs)


def prepare_for_inference(
    model: SSD, channels_last: bool = True, dtype: torch.dtype | None = None
) -> SSD:
    """Put ``model`` (in place) into eval mode and a faster inference layout; returns it.

    Args:
        channels_last: NHWC weights and inputs. On CPU (oneDNN) and on tensor-core GPUs the
            convolutions run without the NCHW<->blocked reorders around every layer.
        dtype: e.g. ``torch.bfloat16``: backbone and head weights in that dtype (``predict``
            casts its input to match). The priors stay float32 and post-processing runs in
            float32, so only the network's own arithmetic loses precision.
    """
    model.eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
        model.input_memory_format = torch.channels_last
    if dtype is not None:
        model.backbone.to(dtype)
        model.head.to(dtype)
    return model
