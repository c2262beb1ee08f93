"""Where a training cell sits relative to the paper's regime (issue 15), measured while it trains.

The paper trains pure bf16 weights at lr 1e-6, about 5e-5 of a typical weight per step and below half a bf16 step
(2^-9..2^-8 of the weight): most AdamW updates round away, while OnDARE's 1/p-scaled kicks survive. Whether a toy
cell reproduces that is a matter of a few ratios, measured here:

- pure definitions (tensors in, floats out), each over all the tensors passed, together;
- `RegimeRecorder`, a transformers callback that measures the per-step quantities of a run (which updates changed
  the stored weights, OnDARE's kicks, OnTIES' sign election) and, once training ends, the rest from the trained
  policy, the SFT model and tau_r: `RegimeRecorder.record`, the `regime` entry of the cell's training log.

`onmerge.tables.regime` names the quantities and lays them out beside the paper's published settings.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from torch import Tensor, nn
from torch.optim import Optimizer
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from onmerge.atomic import atomic_file
from onmerge.merge_ops import SparseDelta, sparse_sign_consensus
from onmerge.optim import OnDAREAdamW, OnTIESAdamW, canonical_name, task_vector
from onmerge.optim.online import CLIP_VALUE
from onmerge.tables.regime import QUANTITIES

# bf16 keeps 8 significant bits (7 stored), and float32's exponent range: below 2^-126 its spacing is the subnormals'.
BF16_MANTISSA_BITS = 7
BF16_MIN_EXPONENT = -126
# The float32 bit pattern of |w|, split in two 16-bit halves: the exact median takes one histogram pass per half.
_HALF_BITS = 16


# ---------------------------------------------------------------------------------------------------------------------
# Definitions


def median_abs(tensors: Sequence[Tensor]) -> float:
    """The median of |w| over every entry of `tensors` together, with torch.median's convention (the lower of the two
    middle values for an even count).

    Exact, without a concatenated copy of a model's weights: non-negative floats order as their float32 bit patterns
    do, so two histogram passes (the high 16 bits, then the low 16 bits within the median's bin) find it, and
    histograms add up over processes.
    """
    device = tensors[0].device if tensors else torch.device("cpu")
    median = _median_abs_or_none(tensors, device, across_processes=False)
    if median is None:
        raise ValueError("the median of no entries")
    return median


def _median_abs_or_none(tensors: Iterable[Tensor], device: torch.device, across_processes: bool) -> float | None:
    """`median_abs` of float32 |values|, None for no entries; with `across_processes`, over every process's values
    together (under FSDP each rank's shards: every process must call it, and the histograms are summed first)."""
    tensors = list(tensors)
    counts = torch.zeros(1 << (_HALF_BITS - 1), dtype=torch.long, device=device)  # the sign bit is 0
    for tensor in tensors:
        counts += torch.bincount(_abs_bits(tensor) >> _HALF_BITS, minlength=counts.numel())
    if across_processes:
        _sum_over_processes_(counts)
    total = int(counts.sum())
    if total == 0:
        return None
    high, rank = _select(counts, (total - 1) // 2)
    low_counts = torch.zeros(1 << _HALF_BITS, dtype=torch.long, device=device)
    for bits in map(_abs_bits, tensors):
        low_counts += torch.bincount(bits[(bits >> _HALF_BITS) == high] & 0xFFFF, minlength=low_counts.numel())
    if across_processes:
        _sum_over_processes_(low_counts)
    low, _ = _select(low_counts, rank)
    return torch.tensor([(high << _HALF_BITS) | low], dtype=torch.int32).view(torch.float32).item()


def _abs_bits(tensor: Tensor) -> Tensor:
    return tensor.detach().abs().to(torch.float32).reshape(-1).view(torch.int32).long()


def _select(counts: Tensor, rank: int) -> tuple[int, int]:
    """The bin holding the `rank`-th smallest entry (from 0), and its rank within that bin."""
    cumulative = counts.cumsum(0)
    index = int(torch.searchsorted(cumulative, torch.tensor(rank, device=counts.device), right=True))
    return index, rank - (int(cumulative[index - 1]) if index else 0)


def bf16_half_step(weights: Tensor) -> Tensor:
    """Half of bf16's spacing at each entry: an update smaller than this rounds away (round to nearest; moving
    towards zero from a power of two, the spacing below is half as large).

    bf16 keeps 8 significant bits: `ulp(w) = 2^(floor(log2|w|) - 7)`, half a step `2^(floor(log2|w|) - 8)`. Zero and
    subnormal entries (|w| < 2^-126) take the subnormal spacing 2^-133, the step an update there really rounds to, so
    the function stays non-decreasing in |w| (float32 results: 2^-134 is representable).
    """
    magnitude = weights.detach().abs().to(torch.float32)
    _, exponent = torch.frexp(magnitude)  # |w| = m 2^e with m in [0.5, 1): floor(log2|w|) = e - 1
    floor_log2 = torch.where(magnitude < 2.0**BF16_MIN_EXPONENT, BF16_MIN_EXPONENT, exponent - 1)
    return torch.ldexp(torch.ones_like(magnitude), floor_log2 - BF16_MANTISSA_BITS - 1)


def step_over_weight(learning_rate: float, weights: Sequence[Tensor]) -> float:
    """Peak learning rate / median |w| over the weights (an Adam step moves an entry by about the learning rate)."""
    return learning_rate / median_abs(weights)


def bf16_half_step_over_weight(weights: Sequence[Tensor]) -> float:
    """Median half bf16 step / median |w|: between 2^-9 and 2^-8 for any weights in bf16's normal range.

    The half step is non-decreasing in |w|, so its median is the half step at the median |w|."""
    median = median_abs(weights)
    return bf16_half_step(torch.tensor([median])).item() / median


def step_over_bf16_half_step(learning_rate: float, weights: Sequence[Tensor]) -> float:
    """Peak learning rate / median over entries of half a bf16 step (`bf16_half_step`): below 1, a typical AdamW
    update of a typical entry rounds away in pure bf16. The half step is non-decreasing in |w|, so its median is the
    half step at the median |w|."""
    return learning_rate / bf16_half_step(torch.tensor([median_abs(weights)])).item()


def merge_share(applied: Sequence[Tensor], tau: Sequence[Tensor]) -> float:
    """|| sum over merge steps of alpha F(tau_r), as applied || / || tau_r ||: how far the merges alone would have
    moved the weights, against the SFT task vector. `applied` holds that sum for each tensor (dense, or the values of
    its kept entries: the norm is the same)."""
    return math.sqrt(_square(applied) / _square(tau))


def drift(trained: Iterable[Tensor], sft: Iterable[Tensor], tau: Iterable[Tensor]) -> tuple[float, float]:
    """(|| theta_rlhf - theta_sft || / || tau_r ||, cos(theta_rlhf - theta_sft, tau_r)): how far training moved the
    weights, against the SFT task vector, and whether along it. Computed in float64; the cosine is nan when the
    weights did not move."""
    moved = square = along = 0.0
    for final, start, task in zip(trained, sft, tau, strict=True):
        delta = final.detach().double() - start.detach().double()
        task = task.detach().double()
        moved += float(delta.square().sum())
        square += float(task.square().sum())
        along += float((delta * task).sum())
    denominator = math.sqrt(moved * square)
    return math.sqrt(moved / square), along / denominator if denominator > 0 else math.nan


def survival(before: Sequence[Tensor], after: Sequence[Tensor], attempted: Sequence[Tensor]) -> float | None:
    """The fraction of attempted entry updates that changed the stored weight: an update that rounds away (in bf16,
    one under half a step of its entry) leaves it equal. `attempted` are boolean masks; None if none was attempted."""
    survived = sum(int((mask & (new != old)).sum()) for old, new, mask in zip(before, after, attempted, strict=True))
    tried = sum(int(mask.sum()) for mask in attempted)
    return survived / tried if tried else None


def changed_fraction(ever_changed: Sequence[Tensor]) -> float:
    """The fraction of entries that changed at least once during the run (boolean masks, one per tensor)."""
    return _ratio(*_changed_counts(ever_changed))


def _changed_counts(ever_changed: Iterable[Tensor]) -> tuple[int, int]:
    ever_changed = list(ever_changed)
    return sum(int(mask.sum()) for mask in ever_changed), sum(mask.numel() for mask in ever_changed)


def clamp_fraction(reference_values: Sequence[Tensor]) -> float | None:
    """The fraction of F(tau_r)'s kept entries at OnDARE's clamp (|value| == 1, after the 1/p scaling): there the
    merge no longer follows tau_r's magnitude. The values as the optimizer stores them (in the weights' dtype);
    None if nothing was kept."""
    return _ratio(*_clamp_counts(reference_values))


def _clamp_counts(reference_values: Iterable[Tensor]) -> tuple[int, int]:
    reference_values = list(reference_values)
    clamped = sum(int((values.abs() == CLIP_VALUE).sum()) for values in reference_values)
    return clamped, sum(values.numel() for values in reference_values)


def sign_election_dominance(reference: Sequence[Tensor], update: Sequence[Tensor]) -> tuple[float | None, float | None]:
    """OnTIES' sign election between F(tau_r) and F(delta) (dense tensors, zero where not kept): (the median, the
    lower for an even count, of |F(tau_r)| / |F(delta)| over the entries where both are non-zero, the fraction of the
    update's non-zero entries
    that lie on F(tau_r)'s support). A large ratio means tau_r decides every contested sign; a small fraction that
    few updates are contested at all. None where there is no such entry."""
    ratios, on_support, kept = [], 0, 0
    for tau, delta in zip(reference, update, strict=True):
        found, shared, nonzero = _dominance_counts(_sparse(tau), _sparse(delta))
        ratios.append(found)
        on_support += shared
        kept += nonzero
    merged = torch.cat(ratios) if ratios else torch.empty(0, dtype=torch.float64)
    return (float(merged.median()) if merged.numel() else None), (on_support / kept if kept else None)


def _sparse(dense: Tensor) -> SparseDelta:
    flat = dense.reshape(-1)
    indices = flat.nonzero().view(-1)
    return SparseDelta(indices, flat[indices], dense.shape)


def _dominance_counts(reference: SparseDelta, update: SparseDelta) -> tuple[Tensor, int, int]:
    """(|F(tau_r)| / |F(delta)| where both are non-zero, how many such entries, how many non-zero update entries),
    from the kept entries only (sorted flat indices), so a step costs about p of a dense pass."""
    tau_kept, delta_kept = reference.values != 0, update.values != 0
    tau_indices, tau_values = reference.indices[tau_kept], reference.values[tau_kept]
    delta_indices, delta_values = update.indices[delta_kept], update.values[delta_kept]
    if tau_indices.numel() == 0 or delta_indices.numel() == 0:
        return torch.empty(0, dtype=torch.float64), 0, delta_indices.numel()
    slot = torch.searchsorted(tau_indices, delta_indices).clamp_(max=tau_indices.numel() - 1)
    shared = tau_indices[slot] == delta_indices
    ratios = tau_values[slot[shared]].double().abs() / delta_values[shared].double().abs()
    return ratios, ratios.numel(), delta_indices.numel()


def _square(tensors: Iterable[Tensor]) -> float:
    """The squared norm of the tensors together, in float64."""
    return sum(float(t.detach().double().square().sum()) for t in tensors)


# ---------------------------------------------------------------------------------------------------------------------
# Measuring a run


@dataclasses.dataclass(frozen=True)
class _Trained:
    """A trained parameter and where its entries sit in the run's flat vectors (all parameters, in optimizer order)."""

    group: dict[str, Any]
    param: Tensor
    start: int

    @property
    def stop(self) -> int:
        return self.start + self.param.numel()


# Run totals.
_COUNTERS = (
    "update_attempted",
    "update_survived",
    "merge_attempted",
    "merge_survived",
    "kicks",
    "update_kept",
    "update_on_reference",
)


def regime_file(checkpoint: Path) -> Path:
    """Where a process keeps what it has counted in a checkpoint folder: its totals and per-entry accumulators."""
    return checkpoint / f"regime-{_rank()}-of-{_processes()}.pt"


class RegimeRecorder(TrainerCallback):
    """Measures a cell's regime quantities (`QUANTITIES`) during its training; `record` gives them once it ends.

    At every optimizer step the trainable parameters are copied just before the step and compared with their values
    after it, entry by entry (an entry changed if its stored bits did), against what the step meant to change: for
    AdamW and the dense baselines, every entry whose Adam update is non-zero (where the first moment is, at a
    positive learning rate); for OnDARE and OnTIES at a merge, the non-zero entries of F(delta) that reach the
    weights (OnTIES: that win the sign election) and, apart, the entries only alpha F(tau_r) reached; with step-K,
    the plain AdamW steps between merges, and at a merge also every entry whose accumulated steps the merge takes
    back. Weight decay adds every non-zero entry. An attempted entry that changed is a surviving update. For LoRA
    these are its adapters; for EMA the trained (not the averaged) weights.

    F(delta) is the one the step computed: the online optimizers hand it over (`observe_merges`), so nothing is
    recomputed and the step is unchanged.
    The work is done on flat vectors over all parameters at once: a few operations a step, whatever the model's
    number of tensors.

    Exact across a resume: each process writes what it has counted (the run totals, the entries that ever changed,
    OnTIES' applied merges) into each checkpoint folder (`regime_file`) just before the Trainer writes its own files
    there, so a complete checkpoint has it, and reads it back when a run resumes from that checkpoint. The rest is
    computed at the end from what a resumed run has too: the trained policy, the SFT model, tau_r and the optimizer's
    state. (Not in the optimizer's state: FSDP's optimizer state dict takes only tensors shaped like their
    parameter, all of one dtype.)

    Under FSDP each process sees its shards of the weights and of the optimizer's state, and counts over them; the
    counts are summed over processes at the end (`sum_over_processes`), and each OnTIES step's median is taken over
    every process's entries. `record` then takes the gathered weights, on the main process.
    """

    def __init__(self, optimizer: Callable[[], Optimizer | None] | None = None):
        self._optimizer = optimizer  # the Trainer builds the cell's optimizer late and does not pass it to callbacks
        self.totals = dict.fromkeys(_COUNTERS, 0)
        self.dominance_medians: list[float] = []  # OnTIES: each merge step's median ratio
        self.measured = False  # every step of the run was seen, by this process or (resumed) before its checkpoint
        self._trained: list[_Trained] = []
        self._references: list[Tensor] = []  # online: each parameter's F(tau_r) indices, offset into the flat vectors
        self._merges: dict[Tensor, SparseDelta] = {}  # this step's F(delta) of each parameter that merged
        self._before: Tensor | None = None
        self._changed: Tensor | None = None  # the entries that ever changed, flat
        self._applied: list[Tensor] = []  # OnTIES: per trained parameter, the merges that applied each F(tau_r) entry
        self._steps: list[int] = []
        self._caches: dict[int, Tensor] = {}
        self._step_ratios: Tensor | None = None  # OnTIES: this step's |F(tau_r)| / |F(delta)| where both are kept

    def on_train_begin(self, args, state, control, **kwargs):
        """Start counting, or go on from the counts in the checkpoint the Trainer resumed from (its state is loaded
        by now). A checkpoint without them (written before the recorder) leaves the run unmeasured."""
        optimizer = self._cell_optimizer()
        if optimizer is None:
            return
        saved = None
        if state.global_step > 0:
            path = regime_file(Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            if not path.is_file():
                return
            saved = torch.load(path, map_location=self._device())
        start = 0
        for group in optimizer.param_groups:
            for param in group["params"]:
                if param.requires_grad:
                    self._trained.append(_Trained(group, param, start))
                    start += param.numel()
        if saved is None:
            self._changed = torch.zeros(start, dtype=torch.bool, device=self._device())
        else:
            self.totals, self.dominance_medians = saved["totals"], saved["dominance_medians"]
            self._changed, self._applied = saved["changed"], saved["applied"]
        self.measured = True
        if isinstance(optimizer, (OnDAREAdamW, OnTIESAdamW)):
            self._references = [optimizer.reference(t.param).indices + t.start for t in self._trained]
            optimizer.observe_merges(self._observe_merge)
        if isinstance(optimizer, OnTIESAdamW) and saved is None:
            self._applied = [
                torch.zeros_like(optimizer.reference(t.param).indices, dtype=torch.int32) for t in self._trained
            ]

    def _observe_merge(self, p: Tensor, reference: SparseDelta, update: SparseDelta) -> None:
        self._merges[p] = update

    def on_step_end(self, args, state, control, **kwargs):
        """Before the Trainer writes a checkpoint (the flow callback, which runs first, has decided to), this
        process's counts go into its folder, so that a complete checkpoint has them."""
        if not (control.should_save and self.measured):
            return
        counts = {
            "totals": self.totals,
            "dominance_medians": self.dominance_medians,
            "changed": self._changed,
            "applied": self._applied,
        }
        with atomic_file(regime_file(Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")) as out:
            torch.save(counts, out)

    def _device(self) -> torch.device:
        """Where the run's parameters are: the sums go through the process group's backend (NCCL: a GPU)."""
        optimizer = self._cell_optimizer()
        params = (p for group in ([] if optimizer is None else optimizer.param_groups) for p in group["params"])
        return next((p.device for p in params), torch.device("cpu"))

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if not self.measured:
            return
        optimizer = self._cell_optimizer()
        self._merges.clear()
        params = [t.param.detach().reshape(-1) for t in self._trained]
        if self._before is None:
            self._before = torch.cat(params)
        else:  # into the same buffer each step
            torch.cat(params, out=self._before)
        self._steps = [int(optimizer.state[t.param].get("step", 0)) for t in self._trained]
        self._caches = {}
        for index, trained in enumerate(self._trained):  # a step-K merge takes back the plain steps since the last
            param_state, every = optimizer.state[trained.param], trained.group.get("merge_every", 1)
            if every > 1 and (self._steps[index] + 1) % every == 0 and "merge_cache" in param_state:
                self._caches[index] = param_state["merge_cache"].reshape(-1).bool()

    def on_optimizer_step(self, args, state, control, **kwargs):
        if not self.measured:
            return
        optimizer = self._cell_optimizer()
        changed = _differs(_flat(t.param for t in self._trained), self._before)
        updated = [  # published step-K's early return leaves the parameters after the first alone
            index
            for index, trained in enumerate(self._trained)
            if int(optimizer.state[trained.param].get("step", 0)) != self._steps[index]
        ]
        self._changed.logical_or_(changed)
        merged = [index for index in updated if self._trained[index].param in self._merges]
        reaching, reached = self._merged(optimizer, merged) if merged else (self._nothing(), self._nothing())
        decayed = [index for index in updated if _decays(self._trained[index].group)]
        self._caches = {index: cache for index, cache in self._caches.items() if index in updated}
        if len(merged) == len(self._trained) and not self._caches and not decayed:  # a sparse merge step
            attempted, survived = reaching.numel(), int(changed[reaching].sum())
            on_update = _within(reached, reaching)
        else:
            mask = self._dense_attempted(optimizer, updated, merged, decayed, changed)
            mask[reaching] = True
            attempted, survived = int(mask.sum()), int((mask & changed).sum())
            on_update = mask[reached]
        merge_only = reached[~on_update]
        self.totals["update_attempted"] += attempted
        self.totals["update_survived"] += survived
        self.totals["merge_attempted"] += merge_only.numel()
        self.totals["merge_survived"] += int(changed[merge_only].sum())
        self._merges.clear()
        if isinstance(optimizer, OnTIESAdamW):  # every process, every step: the median is over all of them
            ratios = self._step_ratios if self._step_ratios is not None else torch.empty(0, device=self._device())
            median = _median_abs_or_none([ratios], self._device(), across_processes=True)
            if median is not None:
                self.dominance_medians.append(median)
            self._step_ratios = None

    def _dense_attempted(
        self, optimizer: Optimizer, updated: list[int], merged: list[int], decayed: list[int], changed: Tensor
    ) -> Tensor:
        """The entries a step moved outside a sparse merge, as a flat mask: every entry of a dense Adam step
        (-step_size * m / (sqrt(v) + eps): where m is non-zero), what a step-K merge takes back, what decays."""
        dense = [index for index in updated if index not in merged and self._trained[index].group["lr"] > 0.0]
        if len(dense) == len(self._trained):
            mask = _flat(optimizer.state[t.param]["exp_avg"] for t in self._trained).bool()  # non-zero
        else:
            mask = torch.zeros_like(changed)
            for index in dense:
                trained = self._trained[index]
                mask[trained.start : trained.stop] = optimizer.state[trained.param]["exp_avg"].reshape(-1).bool()
        for index, cache in self._caches.items():
            mask[self._trained[index].start : self._trained[index].stop] |= cache
        for index in decayed:
            entries = slice(self._trained[index].start, self._trained[index].stop)
            mask[entries] |= self._before[entries].bool()
        return mask

    def _merged(self, optimizer: Optimizer, merged: list[int]) -> tuple[Tensor, Tensor]:
        """This step's merges: the flat indices of the F(delta) entries that reach the weights and of the F(tau_r)
        entries that do (each sorted); counts the kicks and, for OnTIES, the sign election."""
        trained = [self._trained[index] for index in merged]
        updates = [self._merges[t.param] for t in trained]
        update = SparseDelta(
            torch.cat([u.indices + t.start for t, u in zip(trained, updates, strict=True)]),
            torch.cat([u.values for u in updates]),
            torch.Size([self._trained[-1].stop]),
        )
        reference = SparseDelta(
            torch.cat([self._references[index] for index in merged]),
            torch.cat([optimizer.reference(t.param).values for t in trained]),
            update.shape,
        )
        self.totals["kicks"] += update.indices.numel()
        keep_reference = torch.ones_like(reference.values, dtype=torch.bool)
        keep_update = torch.ones_like(update.values, dtype=torch.bool)
        if isinstance(optimizer, OnTIESAdamW):
            keep_reference, keep_update = sparse_sign_consensus(reference, update)
            counts = [self._references[index].numel() for index in merged]
            for index, kept in zip(merged, keep_reference.split(counts), strict=True):
                self._applied[index].add_(kept)
            self._step_ratios, on_support, kept = _dominance_counts(reference, update)
            self.totals["update_on_reference"] += on_support
            self.totals["update_kept"] += kept
        reaches_update = keep_update & (update.values != 0)
        reaches_reference = keep_reference & (reference.values != 0)
        update_sizes = [u.indices.numel() for u in updates]
        reference_sizes = [self._references[index].numel() for index in merged]
        for t, to_update, to_reference in zip(
            trained, reaches_update.split(update_sizes), reaches_reference.split(reference_sizes), strict=True
        ):
            if t.group["alpha"] >= 1.0:  # views: the whole masks change
                to_update.zero_()
            if t.group["alpha"] <= 0.0:
                to_reference.zero_()
        return update.indices[reaches_update], reference.indices[reaches_reference]

    def _applied_merges(self, optimizer: OnDAREAdamW | OnTIESAdamW) -> list[Tensor]:
        """Per parameter, the sum over its merge steps of alpha F(tau_r) as applied, as F(tau_r)'s kept values:
        OnDARE adds all of it at every merge (a parameter merges at each K-th of its own steps); OnTIES the entries
        its sign election kept, as counted (none if the run was not measured)."""
        applied = []
        trained = [
            (group, param) for group in optimizer.param_groups for param in group["params"] if param.requires_grad
        ]
        for index, (group, param) in enumerate(trained):
            values = optimizer.reference(param).values.double() * group["alpha"]
            if isinstance(optimizer, OnTIESAdamW):
                applied.append(values * self._applied[index] if self.measured else torch.zeros_like(values))
            else:
                applied.append(values * (optimizer.state[param].get("step", 0) // group["merge_every"]))
        return applied

    def _nothing(self) -> Tensor:
        return torch.empty(0, dtype=torch.long, device=self._before.device)

    def _cell_optimizer(self) -> Optimizer | None:
        return None if self._optimizer is None else self._optimizer()

    def sum_over_processes(self) -> RunCounts:
        """What the run counted, summed over its processes: every process calls it once training ends."""
        optimizer = self._cell_optimizer()
        online = isinstance(optimizer, (OnDAREAdamW, OnTIESAdamW))
        changed, entries = _changed_counts([self._changed]) if self.measured else (0, 0)
        clamped, kept = (0, 0)
        if isinstance(optimizer, OnDAREAdamW):
            clamped, kept = _clamp_counts(optimizer.reference(t.param).values for t in self._trained)
        own = [*(self.totals[name] for name in _COUNTERS), changed, entries, clamped, kept]
        applied = _square(self._applied_merges(optimizer)) if online else 0.0
        *counts, applied = _sum_over_processes([*own, applied], self._device())
        *totals, changed, entries, clamped, kept = (int(count) for count in counts)
        return RunCounts(
            dict(zip(_COUNTERS, totals, strict=True)), changed, entries, clamped, kept, applied, self.dominance_medians
        )

    def record(
        self,
        policy: nn.Module,
        sft_model: nn.Module | None,
        counts: RunCounts,
        *,
        learning_rate: float,
        sft: Path,
        base: Path | None,
    ) -> dict[str, float | None]:
        """The regime quantities of the run that just ended (`QUANTITIES`, plain floats; None where one does not
        apply to the method, or was not measured), from what it counted (`sum_over_processes`) and its weights.

        `policy` is the model as the cell saves it, whole (under FSDP, gathered; EMA's averaged weights copied in;
        LoRA's adapters are merged here, as saving merges them); `sft_model` the SFT model, whole (the reference;
        None for LoRA, whose frozen base weights are the SFT's). The step sizes, drift and merge share are over the
        weights the method trains (for LoRA, the adapted layers' weights); tau_r = theta_sft - theta_base needs
        `base` (the workflow gives every cell its base model): without it, drift and merge share are None. Over the
        run: survival and the update-on-reference fraction pool every step's entries; kicks per entry are the
        F(delta) entries of every merge over the trained entries; the dominance ratio is the median over merge
        steps of each step's median.
        """
        record: dict[str, float | None] = dict.fromkeys(QUANTITIES)
        names, starts, finals = zip(*_trained_weights(policy, sft_model), strict=True)
        record["step_over_weight"] = step_over_weight(learning_rate, starts)
        record["bf16_half_step_over_weight"] = bf16_half_step_over_weight(starts)
        record["step_over_bf16_half_step"] = step_over_bf16_half_step(learning_rate, starts)
        optimizer = self._cell_optimizer()
        online = isinstance(optimizer, (OnDAREAdamW, OnTIESAdamW))
        taus = None
        if base is not None:
            vector = task_vector(base, sft)
            taus = [vector[name] for name in names]
            record["drift"], record["drift_cosine"] = drift(finals, starts, taus)
        if online and taus is not None and (self.measured or isinstance(optimizer, OnDAREAdamW)):
            record["merge_share"] = math.sqrt(counts.applied_square / _square(taus))  # OnTIES: counted each step
        if not self.measured:
            return record
        totals = counts.totals
        record["survival"] = _ratio(totals["update_survived"], totals["update_attempted"])
        record["changed_fraction"] = _ratio(counts.changed, counts.entries)
        if online:
            record["merge_survival"] = _ratio(totals["merge_survived"], totals["merge_attempted"])
            record["kicks_per_entry"] = totals["kicks"] / counts.entries
        if isinstance(optimizer, OnDAREAdamW):
            record["clamp_fraction"] = _ratio(counts.clamped, counts.reference_kept)
        if isinstance(optimizer, OnTIESAdamW):
            medians = counts.dominance_medians
            record["dominance_ratio"] = statistics.median(medians) if medians else None
            record["update_on_reference"] = _ratio(totals["update_on_reference"], totals["update_kept"])
        return record


@dataclasses.dataclass(frozen=True)
class RunCounts:
    """What a run counted over every process (`RegimeRecorder.sum_over_processes`)."""

    totals: dict[str, int]  # `_COUNTERS`
    changed: int  # trained entries that ever changed
    entries: int  # trained entries (0 if the run was not measured)
    clamped: int  # OnDARE: kept entries of F(tau_r) at the clamp
    reference_kept: int  # OnDARE: kept entries of F(tau_r)
    applied_square: float  # online: || sum of alpha F(tau_r) applied ||^2
    dominance_medians: list[float]  # OnTIES: each merge step's median ratio, over every process's entries


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _sum_over_processes(numbers: Sequence[float], device: torch.device) -> list[float]:
    """The numbers summed over the processes of a distributed run (float64: counts stay exact below 2^53)."""
    if _processes() == 1:
        return [float(number) for number in numbers]
    summed = torch.tensor(numbers, dtype=torch.float64, device=device)
    dist.all_reduce(summed)
    return summed.tolist()


def _sum_over_processes_(counts: Tensor) -> None:
    """A histogram summed over the processes, in place."""
    if _processes() > 1:
        dist.all_reduce(counts)


def _processes() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _decays(group: Mapping[str, Any]) -> bool:
    """Whether a step's decoupled weight decay moves every non-zero entry of the group's parameters."""
    return group["lr"] * group["weight_decay"] > 0.0


def _within(needles: Tensor, sorted_haystack: Tensor) -> Tensor:
    """Which of `needles` are in `sorted_haystack` (a binary search each: faster than torch.isin on sorted indices)."""
    if sorted_haystack.numel() == 0:
        return torch.zeros_like(needles, dtype=torch.bool)
    slot = torch.searchsorted(sorted_haystack, needles).clamp_(max=sorted_haystack.numel() - 1)
    return sorted_haystack[slot] == needles


def _differs(after: Tensor, before: Tensor) -> Tensor:
    """Where the stored values changed: their bits differ (an exclusive or, several times faster than `!=` on CPU)."""
    integer = {2: torch.int16, 4: torch.int32, 8: torch.int64}[after.element_size()]
    return (after.view(integer) ^ before.view(integer)).bool()


def _flat(params: Iterable[Tensor]) -> Tensor:
    """The parameters' entries as one flat vector, in order (a copy)."""
    return torch.cat([param.detach().reshape(-1) for param in params])


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _trained_weights(policy: nn.Module, sft_model: nn.Module | None) -> Iterator[tuple[str, Tensor, Tensor]]:
    """(checkpoint name, SFT value as loaded, value as saved) of each weight the cell trains.

    LoRA: each adapted layer's frozen weight and that weight with the adapters merged in, as `merge_and_unload`
    merges them when the cell is saved (`weight += delta`, in the weight's dtype)."""
    if isinstance(policy, PeftModel):
        for name, module in policy.get_base_model().named_modules():
            if isinstance(module, LoraLayer):
                weight = module.get_base_layer().weight.detach()
                merged = weight.clone()
                for adapter in module.active_adapters:
                    merged += module.get_delta_weight(adapter).detach()
                yield f"{name}.weight", weight, merged
        return
    if sft_model is None:
        raise ValueError("the SFT model is needed to measure how far full fine-tuning moved the weights")
    starts = dict(sft_model.named_parameters())
    for name, param in policy.named_parameters():
        if param.requires_grad:
            yield canonical_name(name), starts[name].detach(), param.detach()


# ---------------------------------------------------------------------------------------------------------------------
# The table
