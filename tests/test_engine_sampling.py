import math
import random

import pytest
import torch

from ssdlib.engine.sampling import IterationBatchSampler, SeededDataset, batch_items, sample_seed
from ssdlib.engine.schedule import WarmupCosine, WarmupMultiStep, build_optimizer, build_scheduler


def test_warmup_then_steps():
    f = WarmupMultiStep([10, 20], gamma=0.1, warmup_iters=4, warmup_factor=0.25)
    assert f(0) == pytest.approx(0.25)
    assert f(2) == pytest.approx(0.625)
    assert f(4) == f(9) == 1.0
    assert f(10) == pytest.approx(0.1) and f(20) == pytest.approx(0.01)


def test_warmup_then_cosine_to_zero():
    f = WarmupCosine(max_iter=100, warmup_iters=10, warmup_factor=0.5)
    assert f(0) == pytest.approx(0.5)
    assert f(5) == pytest.approx(0.75 * (1 + math.cos(math.pi * 0.05)) / 2)
    assert f(50) == pytest.approx(0.5)  # half way: half the rate
    assert f(100) == pytest.approx(0.0, abs=1e-12) and f(150) == pytest.approx(0.0, abs=1e-12)
    values = [f(i) for i in range(10, 101)]
    assert all(a > b for a, b in zip(values, values[1:]))  # falls at every iteration after warm-up


def test_cosine_scheduler_and_unknown_kind():
    opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.2)
    sched = build_scheduler(opt, [], 0.1, warmup_iters=0, warmup_factor=1.0, kind="cosine", max_iter=4)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.2, 0.2 * (1 + math.cos(math.pi / 4)) / 2, 0.1,
                                 0.2 * (1 + math.cos(3 * math.pi / 4)) / 2, 0.0])  # fmt: skip
    with pytest.raises(ValueError, match="'linear' unknown"):
        build_scheduler(opt, [], 0.1, 0, 1.0, kind="linear")


def test_scheduler_follows_iterations_and_skips_decay_on_1d_params():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    opt = build_optimizer(model, lr=0.1, momentum=0.9, weight_decay=1e-4)
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0]
    assert len(opt.param_groups[1]["params"]) == 3  # linear bias, BN weight and bias
    sched = build_scheduler(opt, [3], 0.1, warmup_iters=2, warmup_factor=0.5)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.05, 0.075, 0.1, 0.01, 0.01])


def test_batches_are_a_function_of_seed_and_iteration():
    a = batch_items(7, 4, 10, seed=3)
    assert a == batch_items(7, 4, 10, seed=3)
    assert a != batch_items(7, 4, 10, seed=4)
    # An epoch visits every sample once; the next epoch is another permutation.
    epoch0 = [i for it in range(5) for i, _ in batch_items(it, 2, 10, seed=0)]
    epoch1 = [i for it in range(5, 10) for i, _ in batch_items(it, 2, 10, seed=0)]
    assert sorted(epoch0) == sorted(epoch1) == list(range(10)) and epoch0 != epoch1
    # A sampler started at iteration k yields what an uninterrupted one yields from k.
    full = list(IterationBatchSampler(10, 3, 0, 0, 8))
    assert list(IterationBatchSampler(10, 3, 0, 5, 8)) == full[5:]


def test_ranks_get_disjoint_samples_covering_the_epoch():
    ranks = [[i for it in range(3) for i, _ in batch_items(it, 2, 12, 0, r, 2)] for r in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1])
    assert sorted(ranks[0] + ranks[1]) == list(range(12))
    seeds = {s for it in range(3) for r in (0, 1) for _, s in batch_items(it, 2, 12, 0, r, 2)}
    assert len(seeds) == 12


def test_sample_seeds_differ_and_are_non_negative_63_bit():
    seeds = [sample_seed(0, p) for p in range(1000)]
    assert len(set(seeds)) == 1000 and all(0 <= s < 2**63 for s in seeds)


class _Noisy(torch.utils.data.Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return i, torch.rand(3), random.random()


def test_seeded_dataset_is_reproducible_and_leaves_global_rngs_alone():
    ds = SeededDataset(_Noisy())
    torch.manual_seed(0)
    random.seed(0)
    before = torch.get_rng_state(), random.getstate()
    a, b, c = ds[(2, 11)], ds[(2, 11)], ds[(2, 12)]
    assert torch.equal(a[1], b[1]) and a[2] == b[2]
    assert not torch.equal(a[1], c[1])
    assert torch.equal(torch.get_rng_state(), before[0]) and random.getstate() == before[1]


def test_unshuffled_sampler_keeps_index_order_across_ranks_and_epochs():
    order = [i for it in range(6) for i, _ in batch_items(it, 4, 10, seed=0, shuffle=False)]
    assert order == [*range(10), *range(10), *range(4)]
    ranks = [[i for b in IterationBatchSampler(12, 2, 0, 0, 3, r, 2, shuffle=False) for i, _ in b]
             for r in (0, 1)]  # fmt: skip
    assert ranks == [[0, 1, 4, 5, 8, 9], [2, 3, 6, 7, 10, 11]]
    assert list(IterationBatchSampler(12, 2, 0, 2, 4, shuffle=False)) == list(
        IterationBatchSampler(12, 2, 0, 0, 4, shuffle=False))[2:]  # fmt: skip
