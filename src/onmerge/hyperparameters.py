"""Each hyper-parameter a cell path spells, registered once: its key in the path, the values it may take and its
default. The grid, the cell paths, the preset schema (`onmerge.config.preset_schema`) and the optimizers' settings
(`onmerge.training.OptimizerSpec`) read these entries, so a method's new hyper-parameter is one `register` call.

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
    """A hyper-parameter that a cell path spells (`p~0.01`): its key there, the values it may take, and the value an
    optimizer takes when a cell does not set it (None: every cell that takes it sets it)."""

    name: str
    path_key: str
    bounds: Bounds
    default: float | int | None = None

    def schema(self) -> dict[str, object]:
        """Its range as JSON schema (the preset schema's, `onmerge.config.preset_schema`)."""
        bounds = self.bounds
        schema: dict[str, object] = {"type": "integer" if bounds.integer else "number"}
        schema["exclusiveMinimum" if bounds.low_open else "minimum"] = bounds.low
        if bounds.high != math.inf:
            schema["exclusiveMaximum" if bounds.high_open else "maximum"] = bounds.high
        return schema


_REGISTRY: dict[str, Hyperparameter] = {}


def register(hyperparameter: Hyperparameter) -> Hyperparameter:
    """Add `hyperparameter`; ValueError if its name or path key is taken, or its key cannot be read back from a path
    (`_` separates a path's hyper-parameters, `~` a key from its value)."""
    for taken in _REGISTRY.values():
        if hyperparameter.name == taken.name or hyperparameter.path_key == taken.path_key:
            raise ValueError(f"hyper-parameter {hyperparameter.name!r}: its name or path key is {taken.name!r}'s")
    if not hyperparameter.path_key.isalnum() or not hyperparameter.path_key.isascii():
        key = hyperparameter.path_key
        raise ValueError(f"hyper-parameter {hyperparameter.name!r}: path key {key!r} is not ASCII letters and digits")
    if hyperparameter.default is not None and not hyperparameter.bounds.admits(hyperparameter.default):
        raise ValueError(f"hyper-parameter {hyperparameter.name!r}: its default must {hyperparameter.bounds}")
    _REGISTRY[hyperparameter.name] = hyperparameter
    return hyperparameter


def get(name: str) -> Hyperparameter:
    """The hyper-parameter `name`; ValueError naming the known ones if there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown hyper-parameter {name!r} (one of {', '.join(_REGISTRY)})") from None


def names() -> tuple[str, ...]:
    """Every hyper-parameter's name, in registration order."""
    return tuple(_REGISTRY)


def registered() -> tuple[Hyperparameter, ...]:
    """Every hyper-parameter, in registration order."""
    return tuple(_REGISTRY.values())


def named_by_path_key(key: str) -> str | None:
    """The hyper-parameter a cell path's key spells (`p` -> `reserve_p`), or None."""
    return next((entry.name for entry in _REGISTRY.values() if entry.path_key == key), None)


def check(name: str, value: object) -> None:
    """ValueError saying the range of `name` unless `value` lies in it (NaN and infinities never do)."""
    bounds = get(name).bounds
    if not bounds.admits(value):
        raise ValueError(f"{name} must {bounds}, got {value}")


for _entry in (
    # The trainer's (onmerge.methods.TRAINER_PARAMS): a cell takes them from its row or the preset's `training`.
    Hyperparameter("beta", "beta", Bounds(0.0, low_open=True)),  # DPO's KL coefficient
    Hyperparameter("learning_rate", "lr", Bounds(0.0, 1.0, low_open=True)),
    # OnDARE, OnTIES, ChildTuning: the share of entries kept
    Hyperparameter("reserve_p", "p", Bounds(0.0, 1.0, low_open=True), 0.01),
    # merging weight: 1 would discard every update
    Hyperparameter("alpha", "alpha", Bounds(0.0, 1.0, high_open=True), 1e-7),
    Hyperparameter("merge_every", "k", Bounds(1, integer=True), 1),  # step-K gap
    Hyperparameter("ema_decay", "decay", Bounds(0.0, 1.0, low_open=True), 1e-3),
    Hyperparameter("lora_rank", "r", Bounds(1, integer=True), 8),
    Hyperparameter("density", "density", Bounds(0.0, 1.0, low_open=True)),  # offline DARE and TIES
    Hyperparameter("weight", "weight", Bounds(0.0, 1.0)),  # offline merges, interpolation: the RLHF model's share
):
    register(_entry)


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
