"""ssdlib: SSD (Single Shot MultiBox Detector) in PyTorch — a library and a course.

One module per concept: ``config``, ``priors``, ``boxes``, ``matching``, ``loss``,
``postprocess``; the network in ``model/``, data in ``data/``, training and evaluation in
``engine/`` and ``metrics/``, pictures in ``viz/``.
"""

__version__ = "0.1.0"

from ssdlib.versions import check_versions

# An older torch/torchvision would fail deep inside a training step or a drawing: say it here.
check_versions()
