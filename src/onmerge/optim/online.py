"""Online merging optimizers (OnDARE, OnTIES): merge every Adam update with the SFT task vector.

Relaxed online merge (the paper's Eq. 2): `theta_t = theta_{t-1} + F(delta_t) (+) F(tau_r)`, where `delta_t` is the
HF-legacy AdamW update and `tau_r = theta_sft - theta_base`. Behaviour follows the published implementation
(QwenLM/online_merging_optimizers), with its defects fixed:

- `tau_r` is sparsified once, at construction, with a fixed mask, and kept as indices + values (about p of a dense
  copy) instead of a dense tensor.
- step-K (`merge_every=K`) runs plain AdamW on every parameter between merges; the published code `return`ed from
  inside the parameter loop there, updating only the first parameter on those steps.
- magnitude pruning keeps at least one entry per tensor (the published OnTIES kept whole tensors dense whenever
  `reserve_p * numel < 1`), and exact top-k avoids a full argsort per step.

`published_semantics=True` puts back the last two defects (step-K's early return, OnTIES' dense small tensors), so
a figure can be drawn "as published" beside "fixed"; everything else (masks, sparse `tau_r`, exact top-k) stays as
here.

Each step's masks come from `seeded_generator(seed, name, step)`: deterministic, independent of visiting order, and
resumable from `state_dict()` alone. The sparse `tau_r` is not part of the state: it is a function of `tau_r` and the
group's options, so the optimizer keeps it beside the state (`reference`) and derives it again when a loaded state
dict changes those options. The state then holds only tensors shaped like their parameter, as FSDP's optimizer
state dict requires (it gathers and re-shards each state tensor as it does the parameter).

Under FSDP (`use_orig_params=True`) a rank holds a flat window of each parameter (`onmerge.optim.sharding`). Given
`windows`, `tau_r` is sparsified over the full tensor and sliced, and OnDARE draws each step's mask over the full
tensor and keeps the window's part: a sharded OnDARE run takes exactly the steps of an unsharded one. OnTIES ranks
an update's magnitudes within each rank's window (top `reserve_p` of the shard), which needs no communication.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import chain
from typing import Any

import torch
from torch import Tensor

from onmerge import hyperparameters
from onmerge.merge_ops import (
    SparseDelta,
    dare,
    keep_count,
    magnitude_keep_indices,
    magnitude_prune,
    random_keep_indices,
    rescale_to_l1,
    seeded_generator,
    sparse_sign_consensus,
    window_indices,
)
from onmerge.optim.adamw import LegacyAdamW, ParamsT
from onmerge.optim.sharding import FlatWindow
from onmerge.optim.task_vector import canonical_name

MergeObserver = Callable[[Tensor, SparseDelta, SparseDelta], None]
# The published OnDARE clamps the sparsified (1/p-scaled) task vector and rescaled updates to this range.
CLIP_VALUE = 1.0
# The group options the sparse tau_r depends on: a loaded state dict that changes one derives it again.
_REFERENCE_OPTIONS = ("reserve_p", "rescale", "seed", "published_semantics")
# What checkpoints of earlier versions kept in the state: the sparse tau_r, now derived instead.
_FORMER_STATE_KEYS = ("reference_indices", "reference_values")


class _OnlineMergingAdamW(LegacyAdamW):
    """Shared machinery: validation, the sparse `tau_r`, step-K accumulation. Subclasses say how to sparsify and
    how to combine.

    `published_semantics`: reproduce the published code's step-K, which ends the whole step after the first
    parameter that takes a plain AdamW step (see `_updated_params`); OnTIES also keeps its small tensors dense.
    A group option like the others: saved and restored with `state_dict()`.
    """

    def __init__(
        self,
        params: ParamsT,
        reference_delta: Mapping[str, Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        reserve_p: float = 0.01,
        alpha: float = 1e-7,
        merge_every: int = 1,
        rescale: bool = False,
        seed: int = 0,
        published_semantics: bool = False,
        foreach: bool | None = None,
        windows: Mapping[str, FlatWindow] | None = None,
    ):
        self._windows = {canonical_name(name): window for name, window in (windows or {}).items()}
        self._merge_observers: list[MergeObserver] = []
        self._reference_delta = reference_delta  # kept (a lazy mapping in training) to derive F(tau_r) again
        self._references: dict[Tensor, SparseDelta] = {}
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            foreach=foreach,
            reserve_p=reserve_p,
            alpha=alpha,
            merge_every=merge_every,
            rescale=rescale,
            seed=seed,
            published_semantics=published_semantics,
        )
        for group in self.param_groups:
            _check_merge_options(group)
        self._attach_reference_delta(reference_delta)

    def _attach_reference_delta(self, reference_delta: Mapping[str, Tensor]) -> None:
        by_name = {canonical_name(key): key for key in reference_delta}
        trainable = [
            (group, name, p)
            for group_index, group in enumerate(self.param_groups)
            for name, p in self.named_params(group, group_index)
            if p.requires_grad
        ]
        missing = [name for _, name, _ in trainable if canonical_name(name) not in by_name]
        if missing:
            raise ValueError(
                f"reference_delta has no entry for {len(missing)} trainable parameter(s), e.g. {missing[:5]}"
            )
        for group, name, p in trainable:
            key = by_name[canonical_name(name)]
            tau = reference_delta[key]
            window = self._windows.get(canonical_name(name))
            if window is None and tau.shape != p.shape:
                raise ValueError(
                    f"reference_delta[{key!r}] has shape {tuple(tau.shape)} but parameter {name!r} "
                    f"has shape {tuple(p.shape)}"
                )
            if window is not None and (tau.numel() != window.full_numel or p.numel() != window.stop - window.start):
                raise ValueError(
                    f"reference_delta[{key!r}] has {tau.numel()} elements but parameter {name!r} is the window "
                    f"[{window.start}, {window.stop}) of {window.full_numel}"
                )
            if not torch.isfinite(tau).all():
                raise ValueError(f"reference_delta[{key!r}] contains NaN or Inf")
            work_dtype = torch.promote_types(p.dtype, torch.float32)  # bf16 weights: sparsify in float32
            sparse = self._sparsify_reference(group, canonical_name(name), tau.to(device=p.device, dtype=work_dtype))
            if window is not None:
                sparse = sparse.window(window.start, window.stop)
            self._references[p] = SparseDelta(sparse.indices, sparse.values.to(p.dtype), p.shape)

    def reference(self, p: Tensor) -> SparseDelta:
        """F(tau_r) of a trainable parameter, as the merges add it: kept flat indices (of this rank's window under
        FSDP) and values in the parameter's dtype."""
        return self._references[p]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As `Optimizer.load_state_dict`; F(tau_r) is derived again if the loaded options it depends on differ."""
        before = [[group[option] for option in _REFERENCE_OPTIONS] for group in self.param_groups]
        super().load_state_dict(state_dict)
        for p in chain.from_iterable(group["params"] for group in self.param_groups):
            for key in _FORMER_STATE_KEYS:
                self.state[p].pop(key, None)
        if before != [[group[option] for option in _REFERENCE_OPTIONS] for group in self.param_groups]:
            self._attach_reference_delta(self._reference_delta)

    def _updated_params(self) -> list[tuple[dict[str, Any], list[tuple[str, Tensor]]]]:
        """Every parameter with a gradient; with `published_semantics` and step-K, only up to the first one whose step
        is not a merge step.

        The published step `return`ed after that parameter's plain AdamW step, so the parameters after it (in this
        group and the later ones) keep their weights, moments and step counters, and their gradients go unused: the
        first parameter moves every step, the second when the first merges (every K-th step), the i-th every K^i-th.
        """
        updated = []
        for group, named in super()._updated_params():
            every = group["merge_every"]
            if group["published_semantics"] and every > 1:
                for position, (_, p) in enumerate(named):
                    if (self.state[p].get("step", 0) + 1) % every != 0:
                        updated.append((group, named[: position + 1]))
                        return updated
            updated.append((group, named))
        return updated

    def _init_state(self, group: dict[str, Any], p: Tensor, state: dict[str, Any]) -> None:
        super()._init_state(group, p, state)
        if group["merge_every"] > 1:
            state["merge_cache"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def observe_merges(self, observer: MergeObserver) -> None:
        """Call `observer(parameter, F(tau_r), F(delta))` at every merge, before it is applied: what a step merged,
        without computing it again (`onmerge.regime` counts the kicks and the sign election so)."""
        self._merge_observers.append(observer)

    def _apply_update(self, group: dict[str, Any], name: str, p: Tensor, state: dict, step_size: float) -> None:
        step, every = state["step"], group["merge_every"]
        accumulated = None
        if every > 1:
            delta = self.adam_delta(state, step_size, group["eps"])
            cache = state["merge_cache"]
            if step % every != 0:  # plain AdamW between merges, remembered so the merge can take it back
                cache.add_(delta)
                p.add_(delta)
                return
            p.sub_(cache)
            accumulated = delta.add_(cache)
            cache.zero_()
        name = canonical_name(name)
        generator = seeded_generator(group["seed"], name, step, device=p.device)
        update = self._sparsify_update(group, state, step_size, generator, accumulated, self._windows.get(name))
        reference = self._references[p]
        for observer in self._merge_observers:
            observer(p, reference, update)
        self._merge(group, p, reference, update)

    def _sparsify_reference(self, group: dict[str, Any], name: str, tau: Tensor) -> SparseDelta:
        raise NotImplementedError

    def _sparsify_update(
        self,
        group: dict[str, Any],
        state: dict[str, Any],
        step_size: float,
        generator: torch.Generator,
        accumulated: Tensor | None,
        window: FlatWindow | None,
    ) -> SparseDelta:
        """F(delta): from the moments (only at the kept entries when possible), or from a step-K `accumulated`.

        `window`: the part of the full tensor this rank holds under FSDP, None when it holds all of it."""
        raise NotImplementedError

    def _merge(self, group: dict[str, Any], p: Tensor, reference: SparseDelta, update: SparseDelta) -> None:
        raise NotImplementedError


def _check_merge_options(group: dict[str, Any]) -> None:
    for name in ("reserve_p", "alpha", "merge_every"):
        hyperparameters.check(name, group[name])


def _clamped(sparse: SparseDelta) -> SparseDelta:
    return SparseDelta(sparse.indices, sparse.values.clamp(-CLIP_VALUE, CLIP_VALUE), sparse.shape)


class OnDAREAdamW(_OnlineMergingAdamW):
    """OnDARE (Eq. 3-4): `theta += (1 - alpha) * F_rand(delta) + alpha * F_rand(tau_r)`.

    `F_rand` keeps each entry with probability `reserve_p` and scales kept entries by `1/reserve_p` (dropout), as the
    published code does, so the sparsified update is unbiased; the paper's text omits the rescaling, the code that
    produced its numbers applies it. The fixed `F_rand(tau_r)` is clamped to [-1, 1]. `rescale=True` additionally
    restores each sparsified update's L1 norm (then clamps), the published optional flag.

    Only `reserve_p` of the entries are drawn, computed and written each step: the moments stay dense, the update
    does not. `reserve_p=1, alpha=0` is plain HF-legacy AdamW; `alpha=0` is update dropout.
    """

    def _sparsify_reference(self, group: dict[str, Any], name: str, tau: Tensor) -> SparseDelta:
        generator = seeded_generator(group["seed"], name, "reference", device=tau.device)
        return _clamped(dare(tau, group["reserve_p"], generator))

    def _sparsify_update(self, group, state, step_size, generator, accumulated, window):
        reserve_p, eps = group["reserve_p"], group["eps"]
        shape, device = state["exp_avg"].shape, state["exp_avg"].device
        if window is None:
            indices = random_keep_indices(shape.numel(), reserve_p, generator, device=device)
        elif reserve_p >= 1.0:
            indices = torch.arange(shape.numel(), device=device)
        else:  # the full tensor's mask, cut to this shard: every rank draws the same one
            full = random_keep_indices(window.full_numel, reserve_p, generator, device=device)
            indices = window_indices(full, window.start, window.stop)
        if accumulated is None and not group["rescale"]:
            return SparseDelta(indices, self.adam_delta(state, step_size, eps, indices).div_(reserve_p), shape)
        dense = self.adam_delta(state, step_size, eps) if accumulated is None else accumulated
        sparse = SparseDelta(indices, dense.reshape(-1).index_select(0, indices).div_(reserve_p), shape)
        if group["rescale"]:
            sparse = _clamped(rescale_to_l1(sparse, dense.abs().sum(), eps=eps))
        return sparse

    def _merge(self, group: dict[str, Any], p: Tensor, reference: SparseDelta, update: SparseDelta) -> None:
        alpha = group["alpha"]
        if alpha > 0.0:
            reference.add_to_(p, alpha)
        update.add_to_(p, 1.0 - alpha)


class OnTIESAdamW(_OnlineMergingAdamW):
    """OnTIES (Eq. 5-7): top-`reserve_p` by magnitude per tensor, then sign consensus with `F_topk(tau_r)`.

    As published: kept entries are not rescaled (unless `rescale=True`, which restores the L1 norm); the sign is
    elected from the *unweighted* sum of the two sparsified tensors, entries that disagree with it are zeroed, and
    `alpha * F(tau_r) + (1 - alpha) * F(delta)` is added. Top-k is exact, computed on `|m| / (sqrt(v) + eps)` (the
    update's magnitude up to the step size) through a sampled-threshold candidate set instead of a full argsort.
    `rescale` applies only where pruning dropped entries (as published: restoring the L1 norm of a whole tensor is
    the identity).
    """

    def _sparsify_reference(self, group: dict[str, Any], name: str, tau: Tensor) -> SparseDelta:
        return self._magnitude_prune(group, tau)

    def _sparsify_update(self, group, state, step_size, generator, accumulated, window):
        if accumulated is not None:
            return self._magnitude_prune(group, accumulated)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        scores = torch.sqrt(exp_avg_sq, out=self.workspace(exp_avg)).add_(group["eps"])
        scores = torch.div(exp_avg, scores, out=scores).abs_()
        density = self._density(group, scores.numel())
        indices = magnitude_keep_indices(scores, keep_count(scores.numel(), density))
        # The kept updates from the scores, as adam_delta would compute them: m / (sqrt(v) + eps) has m's sign.
        quotients = torch.copysign(scores.view(-1).index_select(0, indices), exp_avg.view(-1).index_select(0, indices))
        sparse = SparseDelta(indices, quotients.mul_(-step_size), exp_avg.shape)
        if group["rescale"] and density < 1.0:
            sparse = rescale_to_l1(sparse, scores.sum() * step_size)
        return sparse

    def _magnitude_prune(self, group: dict[str, Any], tensor: Tensor) -> SparseDelta:
        density = self._density(group, tensor.numel())
        return magnitude_prune(tensor, density, rescale_l1=group["rescale"] and density < 1.0)

    @staticmethod
    def _density(group: dict[str, Any], numel: int) -> float:
        """The fraction of a tensor that magnitude pruning keeps: `reserve_p`, at least one entry (`keep_count`).

        With `published_semantics`, a tensor with `int(reserve_p * numel) < 1` is kept whole: the published top-k
        returned early there, leaving `tau_r` and the update dense.
        """
        reserve_p = group["reserve_p"]
        if group["published_semantics"] and int(reserve_p * numel) < 1:
            return 1.0
        return reserve_p

    def _merge(self, group: dict[str, Any], p: Tensor, reference: SparseDelta, update: SparseDelta) -> None:
        alpha = group["alpha"]
        keep_reference, keep_update = sparse_sign_consensus(reference, update)
        p.view(-1).index_add_(0, reference.indices, reference.values * keep_reference * alpha)
        p.view(-1).index_add_(0, update.indices, (update.values * keep_update * (1.0 - alpha)).to(p.dtype))
