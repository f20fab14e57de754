"""COCO box AP/AR through the official COCOeval, quiet by default and safe on empty results.

The evaluation itself is pycocotools' (the reference); this module only converts detections
to the results format, handles the cases pycocotools trips on (an empty result list makes
``COCO.loadRes`` index ``anns[0]``; ``loadRes`` also mutates the dicts it is given and only
accepts ``str`` paths), and names the 12 numbers of ``COCOeval.stats``.

A backend is chosen by name: ``"pycocotools"`` (default) or ``"faster_coco_eval"`` (the
drop-in C++ port, only if that package is installed; it is meant to give the same stats --
``tests/test_metrics_coco.py`` checks that when the package is present).
"""

import contextlib
import io
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ssdlib.metrics.common import as_numpy

# Order of COCOeval.stats for iouType="bbox" (see COCOeval.summarize).
STAT_NAMES = (
    "AP", "AP50", "AP75", "APs", "APm", "APl",
    "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)  # fmt: skip

BACKENDS = ("pycocotools", "faster_coco_eval")


def _backend_classes(backend: str) -> tuple[type, type]:
    """(COCO, COCOeval) classes of a backend, imported lazily."""
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    if backend == "faster_coco_eval":
        try:
            from faster_coco_eval import COCO, COCOeval_faster
        except ImportError as err:  # optional: never a hard dependency of ssdlib
            raise ImportError(
                "backend 'faster_coco_eval' needs `pip install faster-coco-eval`"
            ) from err
        return COCO, COCOeval_faster
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")


@contextlib.contextmanager
def _quiet(verbose: bool):
    """Swallow pycocotools' progress prints unless ``verbose``."""
    if verbose:
        yield
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            yield


def load_gt(gt: "str | Path | Any", backend: str = "pycocotools", verbose: bool = False) -> Any:
    """A ground-truth COCO object from a json path; an already-loaded COCO passes through."""
    if not isinstance(gt, str | Path):
        return gt
    coco_cls, _ = _backend_classes(backend)
    with _quiet(verbose):
        return coco_cls(str(gt))


def load_results(coco_gt: Any, dets: "Sequence[Mapping[str, Any]] | str | Path") -> Any:
    """A COCO object of detections in results format, including the empty case.

    Args:
        coco_gt: ground-truth COCO object (its class decides the backend).
        dets: list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` or the
            path of a json file holding such a list.
    """
    if isinstance(dets, str | Path):
        with open(dets) as f:
            dets = json.load(f)
    if not isinstance(dets, list | tuple):
        raise TypeError(f"detections must be a list of dicts or a json path, got {type(dets)}")
    unknown = {d["image_id"] for d in dets} - set(coco_gt.getImgIds())
    if unknown:
        raise ValueError(
            f"detections on images absent from the ground truth: {sorted(unknown)[:5]}"
        )
    coco_cls = type(coco_gt)
    if len(dets) == 0:
        # loadRes would crash on anns[0]; an empty results set with the gt's images and
        # categories evaluates fine (AP/AR 0 where there are gts, -1 where there are none).
        res = coco_cls()
        res.dataset = {
            "images": list(coco_gt.dataset["images"]),
            "categories": list(coco_gt.dataset.get("categories", [])),
            "annotations": [],
        }
        res.createIndex()
        return res
    # Shallow copies: loadRes writes id/area/iscrowd/segmentation into each dict.
    return coco_gt.loadRes([dict(d) for d in dets])


def run_cocoeval(
    gt: "str | Path | Any",
    dets: "Sequence[Mapping[str, Any]] | str | Path",
    backend: str = "pycocotools",
    verbose: bool = False,
) -> Any:
    """Run evaluate/accumulate/summarize of COCOeval (iouType "bbox") and return the object.

    Use it when more than the 12 stats is needed, e.g. :func:`per_category_ap`.
    """
    _, eval_cls = _backend_classes(backend)
    with _quiet(verbose):
        coco_gt = load_gt(gt, backend)
        coco_dt = load_results(coco_gt, dets)
        coco_eval = eval_cls(coco_gt, coco_dt, "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval


def evaluate(
    gt_json_path: "str | Path | Any",
    dets: "Sequence[Mapping[str, Any]] | str | Path",
    verbose: bool = False,
    backend: str = "pycocotools",
) -> dict[str, float]:
    """The 12 COCO box metrics of ``dets`` against a ground-truth json.

    Args:
        gt_json_path: path of the COCO ground-truth json (or a loaded COCO object, to avoid
            re-reading it every epoch).
        dets: results-format list (``category_id`` in the json's ids, ``bbox`` xywh pixels)
            or a path to a results json; may be empty.
        verbose: let COCOeval print its usual summary.
        backend: ``"pycocotools"`` or ``"faster_coco_eval"``.

    Returns:
        {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm",
        "ARl"}: floats in [0, 1], or -1 where COCOeval has nothing to average (e.g. no gt of
        that size).
    """
    coco_eval = run_cocoeval(gt_json_path, dets, backend, verbose)
    return {name: float(v) for name, v in zip(STAT_NAMES, coco_eval.stats)}


def per_category_ap(coco_eval: Any, iou_threshold: float | None = None) -> dict[int, float]:
    """{category id: AP} from an accumulated COCOeval, area "all", 100 detections.

    Args:
        coco_eval: result of :func:`run_cocoeval`.
        iou_threshold: one of ``coco_eval.params.iouThrs`` (e.g. 0.5), or None for the mean
            over 0.5:0.95 like the headline AP.

    Returns:
        AP per category; -1 for a category without ground truth (COCO's convention).
    """
    precision = coco_eval.eval["precision"]  # (T iou, R recall, K cat, A area, M maxDets)
    if iou_threshold is not None:
        t = np.flatnonzero(np.isclose(coco_eval.params.iouThrs, iou_threshold))
        if t.size == 0:
            raise ValueError(f"{iou_threshold} not in {coco_eval.params.iouThrs}")
        precision = precision[t]
    out = {}
    for k, cat_id in enumerate(coco_eval.params.catIds):
        p = precision[:, :, k, 0, -1]
        out[int(cat_id)] = float(np.mean(p[p > -1])) if np.any(p > -1) else -1.0
    return out


def detections_to_coco_results(
    image_ids: Sequence[int],
    dets: Sequence[Mapping[str, Any]],
    label_to_cat_id: Mapping[int, int] | Callable[[int], int],
) -> list[dict[str, Any]]:
    """Per-image detections to the COCO results format.

    Args:
        image_ids: the COCO image id of each entry of ``dets``.
        dets: per image ``{"boxes": (M, 4) pixel xyxy, "scores": (M,), "labels": (M,)}``,
            torch tensors or numpy arrays.
        label_to_cat_id: contiguous model label -> category id of the json (a dict or a
            function); COCO's ids are not contiguous (1..90 for 80 classes).

    Returns:
        ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]`` with plain
        Python numbers, so that it is json-serialisable.
    """
    if len(image_ids) != len(dets):
        raise ValueError(f"{len(image_ids)} image ids but {len(dets)} detection entries")
    to_cat = (
        label_to_cat_id.__getitem__ if isinstance(label_to_cat_id, Mapping) else label_to_cat_id
    )
    results = []
    for image_id, d in zip(image_ids, dets):
        boxes = as_numpy(d["boxes"], np.float64).reshape(-1, 4)
        scores = as_numpy(d["scores"], np.float64).reshape(-1)
        labels = as_numpy(d["labels"], np.int64).reshape(-1)
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        for box, score, label in zip(xywh.tolist(), scores.tolist(), labels.tolist()):
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(to_cat(label)),
                    "bbox": box,
                    "score": score,
                }
            )
    return results
