"""The training methods a preset's rows train with, one registry entry each (in the spirit of mergekit's merge
method registry).

A method is what `methods.<row>.method` names in a preset: its hyper-parameters and their order in a cell's path,
how its optimizer is built, whether it needs the base model, where Table 1 places it and how the figures draw it.
The preset check, the grid, the training job, the tables, figures, curves and verdicts and the workflow read these
entries, so adding a method is one `register(Method(...))` below plus its optimizer: a factory that takes
`onmerge.training.OptimizerInputs` and returns a `torch.optim.Optimizer`, reading its hyper-parameters' values as
`inputs.spec["name"]`. A hyper-parameter no method has yet is one more entry, in `onmerge.hyperparameters` (its path
key, range and default); the preset schema takes its range from there.

This module imports nothing heavy: Snakemake reads it while it parses the workflow (through `onmerge.grid`), so an
entry names its factory by dotted path, imported only when a training job builds its optimizer.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from onmerge import hyperparameters

# Hyper-parameters that the trainer takes, not the optimizer (DPO's beta, the learning rate): a method that lists one
# takes it from the preset's `training` unless its row (or a search) sets it. The rest go to the optimizer.
TRAINER_PARAMS = ("beta", "learning_rate")
# Table 1's groups, in the paper's order (`onmerge.tables` labels them and adds the rows that are not methods).
TABLE_GROUPS = ("baseline", "regularization", "offline_merging", "online_merging")


@dataclass(frozen=True)
class Style:
    """How figures draw a method: its colour, its marker on the interpolation plane, its training curves' line."""

    color: str
    marker: str = "o"
    markersize: float | None = None  # None: the figure's size for every group of points
    linestyle: str = "-"


@dataclass(frozen=True)
class Method:
    """One training method.

    `factory` is `module:function`, called with `onmerge.training.OptimizerInputs`. A method with `published_of`
    trains that method's optimizer with the published code's semantics where ours fixes it (PAPER.md section 2):
    the training job knows it as `published_of` plus a switch (`optimizer`, `published_semantics`).
    """

    name: str
    params: tuple[str, ...]  # its hyper-parameters, in the order its cells' paths spell them
    factory: str
    label: str  # its row's name in tables, figures and verdicts (a preset row's own `label` overrides it)
    style: Style
    group: str | None = None  # its Table 1 group (TABLE_GROUPS); None: not a row of Table 1
    needs_base: bool = False  # reads tau_r = theta_sft - theta_base, so a cell needs the base model
    online: bool = False  # merges with tau_r during training
    lora_adapters: bool = False  # trains LoRA adapters (rank `lora_rank`), merged into the weights when saved
    published_of: str | None = None

    @property
    def optimizer(self) -> str:
        """The optimizer as the training job names it (`onmerge.training.OptimizerSpec.name`)."""
        return self.published_of or self.name

    @property
    def published_semantics(self) -> bool:
        return self.published_of is not None

    @property
    def optimizer_params(self) -> tuple[str, ...]:
        """The hyper-parameters its optimizer takes (the others are the trainer's)."""
        return tuple(param for param in self.params if param not in TRAINER_PARAMS)

    def load_factory(self) -> Callable[[Any], Any]:
        """Its factory, imported: called with an `onmerge.training.OptimizerInputs`, it returns the optimizer."""
        module, _, function = self.factory.partition(":")
        return getattr(importlib.import_module(module), function)


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add `method`; ValueError if its name is taken or an entry refers to nothing."""
    if method.name in _REGISTRY:
        raise ValueError(f"method {method.name!r} is already registered")
    unknown = [param for param in method.params if param not in hyperparameters.names()]
    if unknown:
        raise ValueError(f"method {method.name!r}: no hyper-parameter {', '.join(unknown)} (onmerge.hyperparameters)")
    if "beta" not in method.params:
        raise ValueError(f"method {method.name!r}: every method trains with DPO's beta, so its params list it")
    if method.group is not None and method.group not in TABLE_GROUPS:
        groups = ", ".join(TABLE_GROUPS)
        raise ValueError(f"method {method.name!r}: Table 1 has no group {method.group!r} (one of {groups})")
    module, colon, function = method.factory.partition(":")
    if not (module and colon and function):
        raise ValueError(f"method {method.name!r}: factory {method.factory!r} should read module:function")
    if method.published_of is not None:
        original = _REGISTRY.get(method.published_of)
        if original is None or original.published_semantics:
            raise ValueError(f"method {method.name!r}: {method.published_of!r} is not a registered method")
        if (original.params, original.factory) != (method.params, method.factory):
            raise ValueError(f"method {method.name!r}: runs {original.name}'s optimizer, so its params and factory")
    _REGISTRY[method.name] = method
    return method


def get(name: str) -> Method:
    """The method `name`; ValueError naming the known ones if there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r} (one of {', '.join(_REGISTRY)})") from None


def names() -> tuple[str, ...]:
    """Every method's name, in registration order."""
    return tuple(_REGISTRY)


def registered() -> tuple[Method, ...]:
    """Every method, in registration order (Table 1 lists a group's methods so)."""
    return tuple(_REGISTRY.values())


def training_optimizer(name: str, published_semantics: bool) -> Method:
    """The method whose optimizer a training job builds, from what the job is told (`OptimizerSpec`)."""
    for method in _REGISTRY.values():
        if (method.optimizer, method.published_semantics) == (name, published_semantics):
            return method
    if published_semantics:
        published = ", ".join(method.optimizer for method in _REGISTRY.values() if method.published_semantics)
        raise ValueError(f"published_semantics reproduces the published optimizers ({published}), not {name!r}")
    optimizers = ", ".join(method.name for method in _REGISTRY.values() if not method.published_semantics)
    raise ValueError(f"unknown optimizer {name!r} (one of {optimizers})")


def published(method: Method) -> Method:
    """`method` as the published code runs it: same optimizer and settings, drawn dashed, not a row of Table 1."""
    return dataclasses.replace(
        method,
        name=f"{method.name}-published",
        label=f"{method.label} (as published)",
        style=dataclasses.replace(method.style, linestyle="--"),
        group=None,
        published_of=method.name,
    )


# Registered in Table 1's order within each group (the paper's: EMA, ChildTuning, LoRA; OnTIES, then OnDARE). The
# colours: the interpolation plane's for the online optimizers, AdamW's that of its SFT -> AdamW curve.
_ONLINE_PARAMS = ("beta", "reserve_p", "alpha", "merge_every")
register(
    Method(
        "adamw",
        ("beta",),
        "onmerge.training:adamw_optimizer",
        "AdamW",
        Style("tab:blue"),
        group="baseline",
    )
)
register(
    Method(
        "ema",
        ("beta", "ema_decay"),
        "onmerge.training:ema_optimizer",
        "EMA",
        Style("tab:olive"),
        group="regularization",
    )
)
register(
    Method(
        "childtuning",
        ("beta", "reserve_p"),
        "onmerge.training:childtuning_optimizer",
        "ChildTuning",
        Style("tab:gray"),
        group="regularization",
    )
)
# AdamW over LoRA adapters on every linear layer, with LLaMA-Factory's defaults (the paper's trainer).
register(
    Method(
        "lora",
        ("beta", "lora_rank", "learning_rate"),
        "onmerge.training:adamw_optimizer",
        "LoRA",
        Style("tab:pink"),
        group="regularization",
        lora_adapters=True,
    )
)
_ONTIES = register(
    Method(
        "onties",
        _ONLINE_PARAMS,
        "onmerge.training:onties_optimizer",
        "OnTIES",
        Style("tab:brown", marker="D"),
        group="online_merging",
        needs_base=True,
        online=True,
    )
)
_ONDARE = register(
    Method(
        "ondare",
        _ONLINE_PARAMS,
        "onmerge.training:ondare_optimizer",
        "OnDARE",
        Style("tab:purple", marker="*", markersize=13.0),
        group="online_merging",
        needs_base=True,
        online=True,
    )
)
# The published code's step-K (only the first tensors updated between merges) and OnTIES kept dense where
# reserve_p * numel < 1: for Figures 2 and 3 "as published".
register(published(_ONDARE))
register(published(_ONTIES))
