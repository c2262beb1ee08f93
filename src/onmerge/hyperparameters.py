"""Each hyper-parameter a cell path spells, defined once: its key in the path and the values it may take.

The optimizers refuse a value outside its range when they are built, which is after a training job has loaded its
models. The preset check (`onmerge.grid.check_preset`) and the parsing of hand-written cell paths (`onmerge.grid.parse`)
call the same `check` before any job, so a preset or a path cannot ask for a value that a job would refuse later.

This module imports nothing heavy: Snakemake reads it while it parses the workflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Bounds:
    """An interval of the real line (open or closed at each end), or of the integers."""

    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def admits(self, value: object) -> bool:
        """Whether `value` is a number within; NaN fails every comparison, so it never is."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not (isinstance(value, int) or value.is_integer()):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        """What a value must do, as the optimizers' messages say it: `lie in (0, 1]`, `be an integer >= 1`."""
        if self.integer:
            return f"be an integer >= {self.low:g}"
        if self.high == math.inf:
            return f"be {'>' if self.low_open else '>='} {self.low:g}"
        return f"lie in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


@dataclass(frozen=True)
class Hyperparameter:
    """A hyper-parameter that a cell path spells (`p~0.01`): its key there, and the values it may take."""

    path_key: str
    bounds: Bounds


HYPERPARAMETERS: dict[str, Hyperparameter] = {
    "beta": Hyperparameter("beta", Bounds(0.0, low_open=True)),  # DPO's KL coefficient
    "learning_rate": Hyperparameter("lr", Bounds(0.0, 1.0, low_open=True)),
    "reserve_p": Hyperparameter("p", Bounds(0.0, 1.0, low_open=True)),  # OnDARE, OnTIES, ChildTuning: the share kept
    "alpha": Hyperparameter("alpha", Bounds(0.0, 1.0, high_open=True)),  # merging weight: 1 would discard every update
    "merge_every": Hyperparameter("k", Bounds(1, integer=True)),  # step-K gap
    "ema_decay": Hyperparameter("decay", Bounds(0.0, 1.0, low_open=True)),
    "lora_rank": Hyperparameter("r", Bounds(1, integer=True)),
    "density": Hyperparameter("density", Bounds(0.0, 1.0, low_open=True)),  # offline DARE and TIES
    "weight": Hyperparameter("weight", Bounds(0.0, 1.0)),  # offline merges, interpolation: the RLHF model's share
}
BOUNDS: dict[str, Bounds] = {name: entry.bounds for name, entry in HYPERPARAMETERS.items()}
PATH_KEYS: dict[str, str] = {name: entry.path_key for name, entry in HYPERPARAMETERS.items()}
INTEGER_PARAMS = frozenset(name for name, entry in HYPERPARAMETERS.items() if entry.bounds.integer)


def check(name: str, value: object) -> None:
    """ValueError saying the range of `name` unless `value` lies in it (NaN and infinities never do)."""
    if not BOUNDS[name].admits(value):
        raise ValueError(f"{name} must {BOUNDS[name]}, got {value}")


def split_batch(global_batch: int, per_device: int | None, processes: int) -> tuple[int, int]:
    """(per-device batch, gradient accumulation steps) that make `global_batch` over `processes` processes.

    `per_device` None puts the whole share of each process on its device. ValueError when the global batch cannot be
    split so, since the trainer would otherwise train on another batch size than the preset says.
    """
    per_device = per_device or global_batch // processes
    if per_device < 1:
        raise ValueError(f"global batch {global_batch} leaves no example for each of {processes} processes")
    if global_batch % (per_device * processes):
        raise ValueError(
            f"global batch {global_batch} is not a multiple of {per_device} per device x {processes} processes"
        )
    return per_device, global_batch // (per_device * processes)
