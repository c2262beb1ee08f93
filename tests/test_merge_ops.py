"""The merge primitives: Bernoulli selection, exact top-k, sign consensus (dense and sparse)."""

import math

import pytest
import torch

from onmerge.merge_ops import (
    SparseDelta,
    dare,
    geometric_draws,
    keep_count,
    magnitude_keep_indices,
    magnitude_prune,
    random_keep_indices,
    seeded_generator,
    sign_consensus,
    sparse_sign_consensus,
)


@pytest.mark.parametrize("reserve_p", [0.5, 0.2, 0.01, 1e-4])  # dense-draw and geometric-gap branches
def test_random_keep_indices_is_a_bernoulli_selection(reserve_p):
    numel = 2_000_000
    indices = random_keep_indices(numel, reserve_p, seeded_generator(0, "w", 1))
    assert indices.dtype == torch.int64
    assert torch.all(indices[1:] > indices[:-1]), "sorted and unique"
    assert indices.min() >= 0 and indices.max() < numel
    mean, std = numel * reserve_p, math.sqrt(numel * reserve_p * (1 - reserve_p))
    assert abs(indices.numel() - mean) < 5 * std  # Binomial(n, p) count, 5 sigma
    # Spread over the whole range, not clustered: each half holds about half the kept entries.
    first_half = (indices < numel // 2).sum().item()
    assert abs(first_half - indices.numel() / 2) < 5 * math.sqrt(indices.numel() / 4) + 1


def test_random_keep_indices_covers_the_last_entries():
    # The gap sampler must keep drawing until it has passed the end of the tensor.
    hits = torch.zeros(1000)
    for trial in range(400):
        hits[random_keep_indices(1000, 0.05, seeded_generator(trial, "x", 0))] += 1
    assert hits[-50:].sum() > 0.5 * hits[:50].sum()


@pytest.mark.parametrize("p", [0.1, 0.01, 1e-3, 1e-5])
def test_geometric_draws_are_geometric_s_numbers(p):
    """The vectorised gaps are the draws `Tensor.geometric_` makes from the same generator: masks did not change."""
    for seed in range(5):
        expected = torch.empty(200_000, dtype=torch.float64).geometric_(p, generator=seeded_generator(seed, "w", 1))
        assert torch.equal(geometric_draws(200_000, p, seeded_generator(seed, "w", 1)), expected)


def test_seeded_generator_depends_only_on_its_keys():
    draw = lambda *keys: random_keep_indices(10_000, 0.01, seeded_generator(*keys))  # noqa: E731
    assert torch.equal(draw(3, "layer.weight", 7), draw(3, "layer.weight", 7))
    assert not torch.equal(draw(3, "layer.weight", 7), draw(3, "layer.weight", 8))
    assert not torch.equal(draw(3, "layer.weight", 7), draw(4, "layer.weight", 7))


def test_dare_is_unbiased_entrywise():
    """Mean of T independent draws of F(x) is x: each entry's error is compared with its computed std."""
    x = torch.randn(64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    reserve_p, draws = 0.2, 4000
    total = torch.zeros_like(x)
    for trial in range(draws):
        total += dare(x, reserve_p, seeded_generator(trial, "x", 0)).to_dense()
    std_of_mean = x.abs() * math.sqrt((1 - reserve_p) / (reserve_p * draws))
    z = (total / draws - x).abs() / std_of_mean
    # 64 entries; P(max |z| > 4.5) ~ 64 * 6.8e-6 < 1e-3 for a correct sampler (and the seeds are fixed).
    assert z.max() < 4.5


def test_dare_keeps_scaled_entries_and_drops_the_rest():
    x = torch.arange(1.0, 10_001.0)
    sparse = dare(x, 0.1, seeded_generator(0, "x", 0))
    torch.testing.assert_close(sparse.values, x[sparse.indices] / 0.1)
    dense = sparse.to_dense()
    assert torch.count_nonzero(dense) == sparse.indices.numel()


def test_keep_count_keeps_at_least_one():
    assert keep_count(100, 0.01) == 1
    assert keep_count(100, 1e-5) == 1
    assert keep_count(1000, 0.01) == 10
    assert keep_count(5, 1.0) == 5


@pytest.mark.parametrize("numel, k", [(3_000_000, 30_000), (3_000_000, 3), (200_000, 2_000), (500, 5)])
def test_magnitude_keep_indices_is_exact_topk(numel, k):
    scores = torch.randn(numel, generator=torch.Generator().manual_seed(numel + k)).abs()
    got = magnitude_keep_indices(scores, k)
    expected = torch.topk(scores, k).indices.sort().values
    assert torch.equal(got, expected)


def test_magnitude_keep_indices_falls_back_when_the_sample_misleads():
    # The largest entries sit between the sampled positions, so the sampled threshold admits too few candidates.
    numel = 1_000_000
    scores = torch.full((numel,), 1.0)
    stride = numel // 8192
    scores[::stride] = 2.0  # every sampled entry is large: threshold 2.0
    k = 5 * (numel // stride)  # more than the sampled entries can supply
    scores[1::stride] = torch.linspace(1.5, 1.9, scores[1::stride].numel())
    got = magnitude_keep_indices(scores, k)
    assert got.numel() == k
    assert scores[got].min() >= torch.topk(scores, k).values.min()


def test_magnitude_prune_hand_example():
    tensor = torch.tensor([[0.5, -0.2], [0.05, -0.9]])
    sparse = magnitude_prune(tensor, 0.5)
    assert sparse.indices.tolist() == [0, 3]
    assert sparse.values.tolist() == pytest.approx([0.5, -0.9])
    torch.testing.assert_close(sparse.to_dense(), torch.tensor([[0.5, 0.0], [0.0, -0.9]]))
    rescaled = magnitude_prune(tensor, 0.5, rescale_l1=True)
    torch.testing.assert_close(rescaled.l1(), tensor.abs().sum())


def test_sign_consensus_hand_example():
    a = torch.tensor([0.3, -0.5, 0.2, 0.0, -0.1])
    b = torch.tensor([-0.1, 0.4, 0.2, 0.7, -0.1])
    # sums: 0.2 (+), -0.1 (-), 0.4 (+), 0.7 (+), -0.2 (-): the larger magnitude wins where signs disagree.
    kept_a, kept_b = sign_consensus([a, b])
    assert kept_a.tolist() == pytest.approx([0.3, -0.5, 0.2, 0.0, -0.1])
    assert kept_b.tolist() == pytest.approx([0.0, 0.0, 0.2, 0.7, -0.1])


def test_sign_consensus_tie_goes_to_positive():
    kept_a, kept_b = sign_consensus([torch.tensor([0.5]), torch.tensor([-0.5])])
    assert kept_a.item() == 0.5 and kept_b.item() == 0.0


def test_sparse_sign_consensus_matches_dense():
    generator = torch.Generator().manual_seed(5)
    shape = torch.Size([300, 40])
    first = magnitude_prune(torch.randn(shape, generator=generator), 0.2)
    second = dare(torch.randn(shape, generator=generator), 0.3, seeded_generator(0, "x", 1))
    keep_first, keep_second = sparse_sign_consensus(first, second)
    dense_first, dense_second = sign_consensus([first.to_dense(), second.to_dense()])
    masked_first = SparseDelta(first.indices, first.values * keep_first, shape).to_dense()
    masked_second = SparseDelta(second.indices, second.values * keep_second, shape).to_dense()
    assert torch.equal(masked_first, dense_first)
    assert torch.equal(masked_second, dense_second)
    shared = torch.isin(first.indices, second.indices).sum()
    assert shared > 100, "the example must exercise overlapping entries"
