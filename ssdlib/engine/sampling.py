"""Data order and augmentation randomness as pure functions of ``(seed, iteration)``.

Nothing about "where the data stream is" lives in an iterator: sample ``k`` of the batch of
iteration ``i`` on rank ``r`` has global position ``p = (i * world_size + r) * batch + k``;
epoch ``p // N`` is a permutation seeded by ``(seed, epoch)`` and the sample is
``perm[p % N]``, augmented under its own RNG seed derived from ``(seed, p)``. A run resumed
at iteration ``i`` thus sees exactly the images and augmentations an uninterrupted run would,
whatever ``num_workers`` is, and ranks never share samples (rank-strided, no padding).
``shuffle=False`` replaces the permutation by index order, for datasets whose every index is
already an independent random draw (a ``sequential`` :class:`~ssdlib.data.ShapesDataset`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["IterationBatchSampler", "SeededDataset", "batch_items", "sample_seed"]

_MASK63 = (1 << 63) - 1


def sample_seed(seed: int, position: int) -> int:
    """Augmentation seed of the sample at global ``position`` (a fixed 64-bit mixing)."""
    x = (seed * 0x9E3779B97F4A7C15 + position * 0xBF58476D1CE4E5B9 + 1) & _MASK63
    x ^= x >> 31
    x = (x * 0x94D049BB133111EB) & _MASK63
    return x ^ (x >> 29)


class _Permutations:
    """Epoch permutations of ``range(n)``, derived from ``(seed, epoch)`` and cached (the cache
    is only a speed-up: every entry can be recomputed from its key). ``shuffle=False``: the
    identity every epoch."""

    def __init__(self, n: int, seed: int, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self._cache: dict[int, list[int]] = {}

    def __call__(self, epoch: int) -> list[int] | range:
        if not self.shuffle:
            return range(self.n)
        if epoch not in self._cache:
            if len(self._cache) > 2:
                self._cache.pop(min(self._cache))
            g = torch.Generator().manual_seed(sample_seed(self.seed, -1 - epoch))
            self._cache[epoch] = torch.randperm(self.n, generator=g).tolist()
        return self._cache[epoch]


def batch_items(
    iteration: int,
    batch_size: int,
    num_samples: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    permutations: _Permutations | None = None,
    shuffle: bool = True,
) -> list[tuple[int, int]]:
    """``[(dataset index, augmentation seed), ...]`` of one rank's batch at ``iteration``."""
    perms = permutations or _Permutations(num_samples, seed, shuffle)
    start = (iteration * world_size + rank) * batch_size
    items = []
    for p in range(start, start + batch_size):
        epoch, offset = divmod(p, num_samples)
        items.append((perms(epoch)[offset], sample_seed(seed, p)))
    return items


class IterationBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches for iterations ``start_iter .. max_iter - 1`` (a DataLoader ``batch_sampler``)."""

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int,
        start_iter: int,
        max_iter: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        if num_samples <= 0:
            raise ValueError("the training dataset is empty")
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.start_iter, self.max_iter = start_iter, max_iter
        self.rank, self.world_size = rank, world_size
        self._perms = _Permutations(num_samples, seed, shuffle)

    def __len__(self) -> int:
        return max(self.max_iter - self.start_iter, 0)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for it in range(self.start_iter, self.max_iter):
            yield batch_items(it, self.batch_size, self.num_samples, self.seed,
                              self.rank, self.world_size, self._perms)  # fmt: skip


class SeededDataset(Dataset):
    """``dataset[(index, seed)]``: the sample ``index`` transformed under RNG seed ``seed``.

    The torch and Python RNGs are seeded for the call and restored afterwards, so loading in
    the main process (``num_workers=0``) does not disturb the training RNG either.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        py_state = random.getstate()
        with torch.random.fork_rng(devices=[]):
            # Only the CPU generator: torch.manual_seed also queues CUDA/XPU/MTIA seeding,
            # formatting a stack trace each time (0.35 ms of a 3 ms Shapes sample).
            torch.random.default_generator.manual_seed(seed)
            random.seed(seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
