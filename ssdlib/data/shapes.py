"""Shapes: a synthetic detection dataset rendered on the fly (the course's default data).

Each image is drawn from its own ``numpy.random.default_rng([seed, split_code, index])``, so
any sample is reproducible alone and train (code 0) / test (code 1) never share a stream.

What makes it a real detection problem:

- 5 filled classes (:data:`SHAPES_CLASSES`), 1-6 objects per image, rotated polygons;
- sizes log-uniform from 4 % to 60 % of the image side (circumscribed diameter);
- later shapes are drawn over earlier ones (partial occlusion: a new shape may cover at most
  ``MAX_COVER`` of an earlier one's bounding square, so overlaps stay partial);
- random colours on a two-colour gradient with blotchy low-frequency texture plus pixel noise,
  each shape at least ``MIN_CONTRAST`` (RGB distance) from the pixels it is painted over — a
  shape the eye cannot see is label noise, not a harder problem;
- shapes may cross the border (their box is clipped to the image, ``truncated`` in the XML).

Box policy: the box is the FULL object's box (tight on all pixels of the shape's mask inside
the image, hidden parts included), continuous xyxy: ``x2 = last column + 1``. Occlusion:
an object with less than 15 % of its pixels visible is dropped (it cannot be recognised);
one with less than 50 % visible, or with a box side under 5 % of the image, is marked
``difficult`` (as in VOC: too small or hidden to recognise reliably; not counted by the metric).

Speed (``python data_setup/bench_shapes.py``, one core, 256 px, CPU time): about 350 images/s
for ``render_shapes`` and 320 images/s through ``ShapesDataset.__getitem__`` (tensor conversion
included); wall-clock rates match on an idle core (321 / 315 measured at load average < 1).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

__all__ = [
    "JPEG_OPTIONS", "SHAPES_CLASSES", "ShapesSample", "ShapesDataset", "dihedral_view",
    "jpeg_roundtrip", "render_shapes",
]  # fmt: skip

SHAPES_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon")
SPLIT_CODES = {"train": 0, "test": 1}

MIN_SIZE, MAX_SIZE = 0.04, 0.60  # circumscribed diameter, fraction of the image side
MAX_OBJECTS = 6
MIN_CONTRAST = 90.0  # RGB distance between a shape and the mean of what it covers
MAX_COVER = 0.4  # largest fraction of an earlier shape's bounding square a new one may cover
TRIES = 8  # candidate colours / positions drawn per shape (all drawn up front: deterministic)
DROP_VISIBLE, DIFFICULT_VISIBLE, DIFFICULT_SIDE = 0.15, 0.5, 0.05  # side: fraction of the image
# How write_shapes saves images. No chroma subsampling (4:4:4): the default 4:2:0 halves the
# colour resolution, which smears the edges of 8-px shapes and cost 0.02 mAP.
JPEG_OPTIONS = {"format": "JPEG", "quality": 95, "subsampling": 0}
VIEW_CACHE = 512  # renderings a ShapesDataset with views > 1 keeps (~40 MB at 160 px)


@dataclass
class ShapesSample:
    """One rendered image. ``image (H, W, 3)`` uint8; ``boxes (N, 4)`` float32 xyxy pixels;
    ``labels (N,)`` int64 1..C; ``difficult``/``truncated (N,)`` bool; ``masks (N, H, W)`` bool
    full-object masks inside the image (or None); ``visible_area (N,)`` int64 unoccluded
    pixel counts."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    truncated: np.ndarray
    masks: np.ndarray | None
    visible_area: np.ndarray


def _vertices(cls: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Polygon corners (circumradius ``r``) of a non-circle class."""
    if cls == "star":
        radii = [r if k % 2 == 0 else 0.45 * r for k in range(10)]
        angles = [angle + k * math.pi / 5 for k in range(10)]
    else:
        n = {"square": 4, "triangle": 3, "hexagon": 6}[cls]
        radii = [r] * n
        angles = [angle + k * 2 * math.pi / n for k in range(n)]
    return [(cx + q * math.cos(a), cy + q * math.sin(a)) for q, a in zip(radii, angles)]


def _shape_mask(cls: str, cx: float, cy: float, r: float, angle: float, size: int):
    """Rasterise one shape inside its own window (drawing full-size masks costs 5x more).

    Returns ``(mask (h, w) bool, (wx, wy) window origin, extent (4,) geometric xyxy)``.
    """
    if cls == "circle":
        pts = None
        extent = (cx - r, cy - r, cx + r, cy + r)
    else:
        pts = _vertices(cls, cx, cy, r, angle)
        xs, ys = zip(*pts)
        extent = (min(xs), min(ys), max(xs), max(ys))
    wx, wy = max(int(extent[0]) - 1, 0), max(int(extent[1]) - 1, 0)
    wx2, wy2 = min(int(extent[2]) + 2, size), min(int(extent[3]) + 2, size)
    canvas = Image.new("L", (max(wx2 - wx, 1), max(wy2 - wy, 1)), 0)
    draw = ImageDraw.Draw(canvas)
    if pts is None:
        draw.ellipse((extent[0] - wx, extent[1] - wy, extent[2] - wx, extent[3] - wy), fill=1)
    else:
        draw.polygon([(x - wx, y - wy) for x, y in pts], fill=1)
    mask = np.asarray(canvas, dtype=bool)[: wy2 - wy, : wx2 - wx]
    return mask, (wx, wy), extent


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """``(S, S, 3)`` float32: two-colour linear gradient plus smooth low-frequency blotches."""
    c0, c1 = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    t = (math.cos(theta) * ramp[None, :] + math.sin(theta) * ramp[:, None]) * 0.5 + 0.5
    cells = int(rng.integers(3, 10))
    # Bilinear upsampling keeps the texture smooth: blocky cells would look like squares.
    blotch = Image.fromarray(rng.uniform(-40, 40, size=(cells, cells)).astype(np.float32))
    blotch = np.asarray(blotch.resize((size, size), Image.Resampling.BILINEAR))
    return (c0 + (c1 - c0) * t[:, :, None]) + blotch[:, :, None]


def _place(candidates: np.ndarray, diam: np.ndarray) -> np.ndarray:
    """Centres ``(N, 2)`` from ``(N, TRIES, 2)`` candidates: per shape, the first candidate whose
    bounding square covers at most ``MAX_COVER`` of every earlier shape's square (else the one
    covering least)."""
    chosen = np.zeros((len(diam), 2))
    for k in range(len(diam)):
        r = diam[k] / 2
        worst = np.zeros(candidates.shape[1])
        for j in range(k):
            rj = diam[j] / 2
            overlap = np.prod(np.clip(
                np.minimum(candidates[k] + r, chosen[j] + rj)
                - np.maximum(candidates[k] - r, chosen[j] - rj), 0, None), axis=1)  # fmt: skip
            worst = np.maximum(worst, overlap / (2 * rj) ** 2)
        ok = np.flatnonzero(worst <= MAX_COVER)
        chosen[k] = candidates[k, ok[0] if ok.size else int(np.argmin(worst))]
    return chosen


def _contrasting(candidates: np.ndarray, under: np.ndarray) -> np.ndarray:
    """The first of ``(TRIES, 3)`` colours at least ``MIN_CONTRAST`` from ``under`` (3,), else
    the farthest one."""
    dist = np.linalg.norm(candidates - under, axis=1)
    ok = np.flatnonzero(dist >= MIN_CONTRAST)
    return candidates[ok[0] if ok.size else int(np.argmax(dist))]


def _full_masks(windows: list, size: int) -> np.ndarray:
    """Window masks -> ``(N, S, S)`` bool."""
    out = np.zeros((len(windows), size, size), dtype=bool)
    for k, (m, wx, wy, _) in enumerate(windows):
        out[k, wy : wy + m.shape[0], wx : wx + m.shape[1]] = m
    return out


def render_shapes(
    seed: int, index: int, image_size: int = 256, split: str = "train", with_masks: bool = True
) -> ShapesSample:
    """Render sample ``index`` of ``split`` deterministically. See the module docstring.

    ``with_masks=False`` skips building the ``(N, S, S)`` masks (``masks`` is then None).
    """
    rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
    s = image_size
    img = _background(rng, s)
    n = int(rng.integers(1, MAX_OBJECTS + 1))
    classes = rng.integers(0, len(SHAPES_CLASSES), size=n)
    diam = s * np.exp(rng.uniform(math.log(MIN_SIZE), math.log(MAX_SIZE), size=n))
    centres = _place(rng.uniform(0, s, size=(n, TRIES, 2)), diam)
    angles = rng.uniform(0, 2 * math.pi, size=n)
    colours = rng.uniform(0, 255, size=(n, TRIES, 3)).astype(np.float32)
    windows = []
    for k in range(n):
        m, (wx, wy), ext = _shape_mask(
            SHAPES_CLASSES[classes[k]], *centres[k], diam[k] / 2, angles[k], s
        )
        win = img[wy : wy + m.shape[0], wx : wx + m.shape[1]]
        if m.any():
            win[m] = _contrasting(colours[k], win[m].mean(axis=0))  # later shapes occlude
        windows.append((m, wx, wy, ext))
    noise_std = float(rng.uniform(3, 20))
    # One grain channel for all three colours: a third of the cost of RGB noise.
    img += (rng.standard_normal((s, s), dtype=np.float32) * noise_std)[:, :, None]
    image = np.clip(img, 0, 255).astype(np.uint8)

    boxes, keep, difficult, truncated, visible_area = [], [], [], [], []
    covered = np.zeros((s, s), dtype=bool)
    for k in reversed(range(n)):  # back to front so ``covered`` holds everything drawn later
        m, wx, wy, (x0, y0, x1, y1) = windows[k]
        cov = covered[wy : wy + m.shape[0], wx : wx + m.shape[1]]
        area = int(m.sum())
        vis = int((m & ~cov).sum())
        cov |= m
        if area == 0 or vis < DROP_VISIBLE * area:
            continue
        cols, rows = np.flatnonzero(m.any(axis=0)), np.flatnonzero(m.any(axis=1))
        box = (wx + cols[0], wy + rows[0], wx + cols[-1] + 1, wy + rows[-1] + 1)
        side = min(box[2] - box[0], box[3] - box[1])
        keep.append(k)
        boxes.append(box)
        visible_area.append(vis)
        difficult.append(vis < DIFFICULT_VISIBLE * area or side < DIFFICULT_SIDE * s)
        truncated.append(x0 < 0 or y0 < 0 or x1 > s or y1 > s)
    order = np.argsort(keep)  # back to drawing order
    keep_idx = np.asarray(keep, dtype=np.int64)[order]
    return ShapesSample(
        image=image,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4)[order],
        labels=(classes[keep_idx] + 1).astype(np.int64),
        difficult=np.asarray(difficult, dtype=bool)[order],
        truncated=np.asarray(truncated, dtype=bool)[order],
        masks=_full_masks([windows[k] for k in keep_idx], s) if with_masks else None,
        visible_area=np.asarray(visible_area, dtype=np.int64)[order],
    )


def jpeg_roundtrip(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> the pixels a reader decodes after saving with :data:`JPEG_OPTIONS`."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, **JPEG_OPTIONS)
    return np.array(Image.open(buf).convert("RGB"))  # a writable copy


def dihedral_view(sample: ShapesSample, view: int) -> ShapesSample:
    """View ``view`` (0..7) of a square sample under the symmetries of the square: a horizontal
    flip when ``view >= 4``, then ``view % 4`` quarter turns counter-clockwise. Boxes follow
    exactly (continuous xyxy: a flip maps ``x`` to ``S - x``; a quarter turn ``(x, y)`` to
    ``(y, S - x)``). The generator is invariant under these maps (uniform positions and angles,
    gradient direction uniform, square texture grid, i.i.d. noise), so every view is another
    draw from the same distribution, at the cost of a transpose instead of a rendering.
    ``image`` and ``masks`` are strided views of the input's arrays (no copy)."""
    if not 0 <= view < 8:
        raise ValueError(f"view must be in 0..7, got {view}")
    s = sample.image.shape[0]
    if sample.image.shape[1] != s:
        raise ValueError(f"dihedral views need a square image, got {sample.image.shape[:2]}")
    image, boxes, masks = sample.image, sample.boxes.copy(), sample.masks
    if view >= 4:
        image = image[:, ::-1]
        masks = masks[:, :, ::-1] if masks is not None else None
        boxes[:, [0, 2]] = s - boxes[:, [2, 0]]
    for _ in range(view % 4):
        image = np.rot90(image, 1, axes=(0, 1))
        masks = np.rot90(masks, 1, axes=(1, 2)) if masks is not None else None
        boxes = np.stack([boxes[:, 1], s - boxes[:, 2], boxes[:, 3], s - boxes[:, 0]], axis=1)
    return ShapesSample(
        image=image, boxes=boxes.astype(np.float32, copy=False), labels=sample.labels,
        difficult=sample.difficult, truncated=sample.truncated, masks=masks,
        visible_area=sample.visible_area,
    )  # fmt: skip


class ShapesDataset(Dataset):
    """Shapes rendered on the fly: ``dataset[i] -> (image (3, S, S) uint8, target)``.

    ``target`` follows :mod:`ssdlib.data.common`; ``image_id`` is the VOC file stem that
    :func:`~ssdlib.data.shapes_io.write_shapes` uses (``"{split}_{index:06d}"``). With
    ``return_masks=True`` the target also holds ``"masks" (N, S, S)`` bool (used by tests to
    check that boxes cover the drawn shapes through augmentation). ``keep_difficult=False``
    drops difficult objects like :class:`~ssdlib.data.voc.VOCDataset` does for training.

    ``views`` (1..8) samples share one rendering through :func:`dihedral_view`, which costs a
    transpose instead of a 1.3 ms rendering (160 px). The index layout keeps a rendering's views
    ``VIEW_CACHE`` samples apart, so a batch holds distinct images and a pass in index order
    renders each image once; ``sequential`` is then True and tells the trainer's sampler not to
    shuffle (each index is already a random draw). Random access stays correct, only slower.
    ``jpeg=True`` passes each rendering through :func:`jpeg_roundtrip`, so training sees the
    artefacts of the written test files.
    """

    class_names = SHAPES_CLASSES

    def __init__(
        self,
        split: str = "train",
        num_images: int = 2000,
        image_size: int = 256,
        seed: int = 0,
        transform=None,
        keep_difficult: bool = True,
        return_masks: bool = False,
        views: int = 1,
        jpeg: bool = False,
    ) -> None:
        if split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}, got {split!r}")
        if not 1 <= views <= 8:
            raise ValueError(f"views must be in 1..8 (the symmetries of the square), got {views}")
        self.split, self.num_images = split, num_images
        self.image_size, self.seed = image_size, seed
        self.transform = transform
        self.keep_difficult = keep_difficult
        self.return_masks = return_masks
        self.views, self.jpeg = views, jpeg
        self.sequential = views > 1
        self._cache: dict[int, ShapesSample] = {}

    def __len__(self) -> int:
        return self.num_images

    def render(self, index: int, with_masks: bool = True) -> ShapesSample:
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        sample = render_shapes(self.seed, index, self.image_size, self.split, with_masks)
        if self.jpeg:
            sample.image = jpeg_roundtrip(sample.image)
        return sample

    def locate(self, index: int) -> tuple[int, int]:
        """``(rendering index, view)`` of sample ``index``."""
        if self.views == 1:
            return index, 0
        group, r = divmod(index, self.views * VIEW_CACHE)
        view, slot = divmod(r, VIEW_CACHE)
        return group * VIEW_CACHE + slot, view

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache": {}}  # DataLoader workers start with an empty cache

    def _sample(self, index: int) -> tuple[ShapesSample, str]:
        if self.views == 1:
            return self.render(index, with_masks=self.return_masks), f"{self.split}_{index:06d}"
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        base, view = self.locate(index)
        sample = self._cache.get(base)
        if sample is None:
            sample = self.render(base, with_masks=self.return_masks)
            if len(self._cache) >= VIEW_CACHE:
                self._cache.pop(next(iter(self._cache)))  # the oldest: a pass never returns to it
            self._cache[base] = sample
        return dihedral_view(sample, view), f"{self.split}_{base:06d}_v{view}"

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        sample, image_id = self._sample(index)
        keep = np.ones(len(sample.labels), bool) if self.keep_difficult else ~sample.difficult
        target = {
            "boxes": torch.from_numpy(sample.boxes[keep]),
            "labels": torch.from_numpy(sample.labels[keep]),
            "difficult": torch.from_numpy(sample.difficult[keep]),
            "image_id": image_id,
            "orig_size": torch.tensor([self.image_size] * 2, dtype=torch.int64),
        }
        if self.return_masks:
            target["masks"] = torch.from_numpy(sample.masks[keep])
        # One copy from any (H, W, 3) view, a dihedral one included, straight into (3, H, W).
        image = torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1)))
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target
