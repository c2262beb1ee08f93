"""Merge primitives: sparsify at random (DARE), sparsify by magnitude (TIES), sign consensus.

One set of operations serves both the online merging optimizers (applied to each step's update) and the offline
merges of finished models: the paper's point is that online merging is offline merging done at every step.

Sparse results are kept as `SparseDelta` (flat indices + values), so a fixed task vector sparsified at reserve rate
p costs about p of a dense copy, and applying it touches only the kept entries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from onmerge.seeding import stable_seed

# Above this reserve rate one dense uniform draw is cheaper than geometric gap sampling.
_DENSE_DRAW_ABOVE_P = 0.1
# A candidate pre-selection keeps this many times the wanted count, so the exact top-k runs on a small set.
_CANDIDATE_MARGIN = 3.0
_THRESHOLD_SAMPLE_SIZE = 8192


@dataclass(frozen=True)
class SparseDelta:
    """Kept entries of a tensor: sorted flat `indices` (int64) and their `values`."""

    indices: Tensor
    values: Tensor
    shape: torch.Size

    def to_dense(self) -> Tensor:
        dense = self.values.new_zeros(self.shape.numel())
        dense[self.indices] = self.values
        return dense.view(self.shape)

    def add_to_(self, target: Tensor, alpha: float = 1.0) -> None:
        """`target += alpha * self`, touching only the kept entries."""
        values = self.values if alpha == 1.0 else self.values * alpha
        target.view(-1).index_add_(0, self.indices, values.to(target.dtype))

    def l1(self) -> Tensor:
        return self.values.abs().sum()

    def window(self, start: int, stop: int) -> SparseDelta:
        """The kept entries among flat positions `[start, stop)`, as a 1-D delta of that window (an FSDP shard)."""
        low, high = _window_bounds(self.indices, start, stop)
        return SparseDelta(self.indices[low:high] - start, self.values[low:high], torch.Size([stop - start]))


def _window_bounds(indices: Tensor, start: int, stop: int) -> tuple[int, int]:
    bounds = torch.searchsorted(indices, torch.tensor([start, stop], device=indices.device))
    return int(bounds[0]), int(bounds[1])


def window_indices(indices: Tensor, start: int, stop: int) -> Tensor:
    """Sorted flat `indices` of a full tensor that fall in `[start, stop)`, as positions within that window."""
    low, high = _window_bounds(indices, start, stop)
    return indices[low:high] - start


def seeded_generator(seed: int, *keys: object, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator whose stream depends only on (seed, keys): counter-based randomness.

    Masks drawn from `seeded_generator(seed, name, step)` do not depend on the order tensors are visited in, survive a
    resume without saving any RNG state, and let a test redraw exactly the mask an optimizer used.
    """
    return torch.Generator(device=device).manual_seed(stable_seed(seed, *keys))


def random_keep_indices(numel: int, reserve_p: float, generator: torch.Generator, device=None) -> Tensor:
    """Sorted indices of a Bernoulli(reserve_p) selection over `numel` entries.

    For small p the gaps between kept entries are drawn from a geometric distribution (the same process), which costs
    O(numel * p) instead of one random number per entry.
    """
    if reserve_p >= 1.0:
        return torch.arange(numel, device=device)
    if reserve_p > _DENSE_DRAW_ABOVE_P:
        draws = torch.rand(numel, generator=generator, device=device)
        return (draws < reserve_p).nonzero().view(-1)
    chunks: list[Tensor] = []
    position = -1  # index of the last kept entry so far
    while position < numel:
        remaining = numel - position - 1
        expected = remaining * reserve_p
        batch = int(expected + 6.0 * math.sqrt(expected) + 16)
        positions = geometric_draws(batch, reserve_p, generator, device).cumsum(0).add_(position).long()
        position = int(positions[-1])
        chunks.append(positions)
    indices = torch.cat(chunks) if len(chunks) > 1 else chunks[0]
    return indices[: int(torch.searchsorted(indices, numel))]


def geometric_draws(count: int, p: float, generator: torch.Generator, device=None) -> Tensor:
    """`count` draws of Geometric(p) (trials up to the first success, >= 1) as float64: `Tensor.geometric_`'s numbers.

    On CPU `geometric_` transforms one uniform per draw serially; `ceil(log(u) / log(1 - p))` on the same uniforms
    (`torch.rand` consumes the generator the same way) is the same transform, vectorised, and about twice as fast.
    `tests/test_merge_ops.py` checks the two agree draw for draw.
    """
    if torch.device(device or "cpu").type != "cpu":
        return torch.empty(count, dtype=torch.float64, device=device).geometric_(p, generator=generator)
    uniforms = torch.rand(count, dtype=torch.float64, generator=generator)
    return uniforms.log_().div_(math.log1p(-p)).ceil_()


def keep_count(numel: int, density: float) -> int:
    """How many entries magnitude pruning keeps: at least one, as mergekit does.

    The published OnTIES kept the whole tensor dense when `density * numel < 1`; always sparsifying is the fix.
    """
    return min(numel, max(1, int(density * numel)))


def magnitude_keep_indices(scores: Tensor, k: int) -> Tensor:
    """Sorted flat indices of the k largest entries of `scores` (non-negative), exactly.

    A sampled threshold first selects a few times k candidates with one cheap comparison pass; the exact top-k then
    runs on the candidates only. If the threshold let fewer than k through, it falls back to a full top-k, so the
    result is always the exact top-k (ties broken arbitrarily).
    """
    flat = scores.reshape(-1)
    numel = flat.numel()
    if k >= numel:
        return torch.arange(numel, device=flat.device)
    wanted_fraction = _CANDIDATE_MARGIN * k / numel
    if wanted_fraction < 0.5 and numel > 4 * _THRESHOLD_SAMPLE_SIZE:
        sample = flat[:: numel // _THRESHOLD_SAMPLE_SIZE]
        rank = max(1, int(sample.numel() * (1.0 - wanted_fraction)))
        threshold = sample.kthvalue(rank).values
        candidates = (flat >= threshold).nonzero().view(-1)
        if candidates.numel() >= k:
            return candidates.index_select(0, _top_k_positions(flat.index_select(0, candidates), k))
    return torch.topk(flat, k, sorted=False).indices.sort().values


def _top_k_positions(values: Tensor, k: int) -> Tensor:
    """Ascending positions of the k largest `values`, so that a sorted index list taken at them stays sorted: a mask
    over the values, where sorting the chosen indices measured slower than the top-k itself."""
    top = torch.topk(values, k, sorted=False).indices
    return torch.zeros_like(values, dtype=torch.bool).index_fill_(0, top, True).nonzero().view(-1)


def dare(tensor: Tensor, reserve_p: float, generator: torch.Generator) -> SparseDelta:
    """Drop-and-rescale: keep each entry with probability p and scale it by 1/p (unbiased, like dropout)."""
    flat = tensor.reshape(-1)
    indices = random_keep_indices(flat.numel(), reserve_p, generator, device=flat.device)
    return SparseDelta(indices, flat[indices] / reserve_p, tensor.shape)


def magnitude_prune(tensor: Tensor, density: float, rescale_l1: bool = False) -> SparseDelta:
    """Keep the top `density` fraction of entries by magnitude, unscaled (TIES' trim step)."""
    flat = tensor.reshape(-1)
    indices = magnitude_keep_indices(flat.abs(), keep_count(flat.numel(), density))
    sparse = SparseDelta(indices, flat.index_select(0, indices), tensor.shape)
    return rescale_to_l1(sparse, flat.abs().sum()) if rescale_l1 else sparse


def rescale_to_l1(sparse: SparseDelta, dense_l1: Tensor, eps: float = 0.0) -> SparseDelta:
    """Scale kept entries so their L1 norm matches the dense tensor's; tensors with L1 < 1e-8 stay as they are."""
    if dense_l1 < 1e-8:
        return sparse
    scale = dense_l1 / (sparse.l1() + eps)
    return SparseDelta(sparse.indices, sparse.values * scale, sparse.shape)


def elect_sign(deltas: Sequence[Tensor]) -> Tensor:
    """TIES sign election: +1 where the sum of the deltas is >= 0, else -1."""
    total = torch.stack(list(deltas)).sum(0)
    return torch.where(total >= 0, 1.0, -1.0).to(total.dtype)


def sign_consensus(deltas: Sequence[Tensor]) -> list[Tensor]:
    """Zero every entry whose sign disagrees with the elected sign of the sum (dense tensors, any count).

    Electing from the sum keeps, where two deltas disagree, the one with the larger magnitude. Pass weighted deltas
    to elect by weighted sum (mergekit's TIES), unweighted ones to elect as the published OnTIES does.
    """
    majority = elect_sign(deltas)
    return [delta * (delta.sign() == majority) for delta in deltas]


def sparse_sign_consensus(first: SparseDelta, second: SparseDelta) -> tuple[Tensor, Tensor]:
    """`sign_consensus` for two sparse deltas of one tensor: boolean keep-masks over each one's values.

    Only entries kept by both can disagree; everywhere else each delta is its own sum and survives.
    """
    keep_first = torch.ones_like(first.values, dtype=torch.bool)
    keep_second = torch.ones_like(second.values, dtype=torch.bool)
    if first.indices.numel() == 0 or second.indices.numel() == 0:
        return keep_first, keep_second
    slot = torch.searchsorted(first.indices, second.indices).clamp_(max=first.indices.numel() - 1)
    second_shared = (first.indices.index_select(0, slot) == second.indices).nonzero().view(-1)
    first_shared = slot.index_select(0, second_shared)
    a, b = first.values.index_select(0, first_shared), second.values.index_select(0, second_shared)
    majority = torch.where(a + b >= 0, 1.0, -1.0).to(a.dtype)
    keep_first[first_shared] = a.sign() == majority
    keep_second[second_shared] = b.sign() == majority
    return keep_first, keep_second
