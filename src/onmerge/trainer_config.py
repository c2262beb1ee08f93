"""A preset's `training.trainer`: fields of trl's DPOConfig / KTOConfig passed to every training cell's trainer.

Gradient checkpointing, logging, reporting (tensorboard, wandb, trackio) or the attention kernel then need no code
change. The mapping is checked before any job against trl's own dataclasses. A name they lack is refused with the
closest ones. A field the pipeline sets from another preset key is refused naming that key, so each setting has one
spelling. A value of the wrong type for its field is refused, and so is a reporter transformers does not know.

The optimizer fields reach the cells' optimizers as the published fork passes them: `adam_epsilon`, `adam_beta1` and
`adam_beta2` set every method's eps and betas (trl's defaults when unset: `adam_settings`). `optim` may only name
torch.optim.AdamW (`TORCH_ADAMW`), the published AdamW row's optimizer, and changes the `adamw` and `lora` methods
only: unset, they train with transformers' legacy AdamW, the online optimizers' core; every other method keeps its own
optimizer either way.

trl is imported only when a preset has the mapping: Snakemake reads this while it parses the workflow, and the
import costs seconds.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

# Fields the pipeline sets from the preset's other keys, and where to set them instead.
SET_FROM_PRESET = {
    "output_dir": "the cell's path (results/<preset>/<cell>)",
    "seed": "the cell's seed (seeds, or a study's seeds)",
    "data_seed": "the cell's seed (seeds, or a study's seeds)",
    "loss_type": "the cell's loss (a study's losses)",
    "beta": "training.beta (or a method's beta)",
    "learning_rate": "training.learning_rate (or a method's learning_rate)",
    "num_train_epochs": "training.epochs",
    "max_steps": "training.epochs",
    "warmup_steps": "training.warmup_steps",
    "per_device_train_batch_size": "training.per_device_batch_size",
    "gradient_accumulation_steps": "training.batch_size (the global batch, which the accumulation follows from)",
    "max_length": "training.max_length",
    "bf16": "training.bf16",
    "weight_decay": "training.weight_decay",
}
# Old names transformers 5 still reads, but only when the new name is unset, and the pipeline sets
# activation_checkpointing: given under the old name, a setting would be silently ignored.
RENAMED = {
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}
# transformers' `optim` names for torch.optim.AdamW, and whether each asks for the fused kernel.
TORCH_ADAMW = {"adamw_torch": False, "adamw_torch_fused": True}
# Fields the pipeline keeps for itself, and why.
KEPT = {
    **dict.fromkeys(
        ("optim_args", "optim_target_modules"),
        "each cell's optimizer is its method's (methods: in the preset)",
    ),
    **dict.fromkeys(
        ("save_strategy", "save_steps", "save_total_limit", "save_only_model", "resume_from_checkpoint"),
        "the pipeline checkpoints every tenth of a run and resumes a killed cell from its last checkpoint",
    ),
    "use_cpu": "a cell trains on the GPU when there is one",
}
# Keys of `model_init_kwargs` (the models' from_pretrained arguments) that the pipeline sets.
MODEL_INIT_SET = frozenset({"dtype", "torch_dtype"})
REPORTERS_ALSO = ("all", "none")  # report_to's words besides the integrations' names


def losses_trained(preset: Mapping[str, Any]) -> set[str]:
    """The losses of the preset's training cells (a study without `losses` trains DPO)."""
    return {loss for study in preset["studies"].values() for loss in study.get("losses", ["dpo"])}


@functools.cache
def config_class(loss: str) -> type:
    """trl's config dataclass for a loss: DPOConfig for DPO and IPO, KTOConfig for KTO."""
    if loss == "kto":
        from trl.trainer.kto_config import KTOConfig

        return KTOConfig
    from trl.trainer.dpo_config import DPOConfig

    return DPOConfig


def check(trainer: Mapping[str, Any], losses: Iterable[str]) -> None:
    """ValueError naming `training.trainer.<field>` unless every field suits the config of every loss trained."""
    classes = {config_class(loss) for loss in losses}
    for name, value in trainer.items():
        where = f"training.trainer.{name}"
        if name in SET_FROM_PRESET:
            raise ValueError(f"{where}: the pipeline sets {name} from {SET_FROM_PRESET[name]}; set it there")
        if name in KEPT:
            raise ValueError(f"{where}: the pipeline sets {name} itself: {KEPT[name]}")
        if name == "optim" and not (isinstance(value, str) and value in TORCH_ADAMW):
            raise ValueError(
                f"{where}: {value!r} is not an optimizer the pipeline trains with: give {' or '.join(TORCH_ADAMW)} "
                "(torch.optim.AdamW for the adamw and lora methods; every other method keeps its own optimizer), "
                "or leave it unset (transformers' legacy AdamW, the online optimizers' core)"
            )
        if name in RENAMED:
            raise ValueError(
                f"{where}: transformers 5 calls it {RENAMED[name]}: write training.trainer.{RENAMED[name]}"
            )
        for config in sorted(classes, key=lambda cls: cls.__name__):
            fields = _fields(config)
            if name not in fields:
                close = difflib.get_close_matches(name, fields, n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ValueError(f"{where}: trl's {config.__name__} has no such field{hint}")
            annotation = _type_hints(config)[name]
            if not _accepts(annotation, value):
                raise ValueError(f"{where}: {value!r} is not a valid {name} (trl's {config.__name__}: {annotation})")
    reporters = trainer.get("report_to")
    if reporters is not None:
        _check_reporters([reporters] if isinstance(reporters, str) else reporters)
    model_init = trainer.get("model_init_kwargs")
    if model_init is not None and not isinstance(model_init, dict):
        raise ValueError("training.trainer.model_init_kwargs: the pipeline loads the models with it: give a mapping")
    owned = sorted(MODEL_INIT_SET & set(model_init or {}))
    if owned:
        raise ValueError(
            f"training.trainer.model_init_kwargs.{owned[0]}: the pipeline sets the models' dtype from training.bf16"
        )


def adam_settings(trainer: Mapping[str, Any], loss: str) -> dict[str, Any]:
    """`eps` and `betas` for a cell's optimizer: the trainer's `adam_epsilon`, `adam_beta1`, `adam_beta2`, or the
    defaults of trl's config for `loss` where unset (1e-8, 0.9, 0.999), as the published fork builds its optimizers."""
    defaults = {field.name: field.default for field in dataclasses.fields(config_class(loss))}
    setting = {name: trainer.get(name, defaults[name]) for name in ("adam_epsilon", "adam_beta1", "adam_beta2")}
    return {"eps": setting["adam_epsilon"], "betas": (setting["adam_beta1"], setting["adam_beta2"])}


@functools.cache
def _fields(config: type) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(config))


@functools.cache
def _type_hints(config: type) -> dict[str, Any]:
    return typing.get_type_hints(config)


def _accepts(hint: Any, value: Any) -> bool:
    """Whether a YAML value can be a field of type `hint`, as transformers reads it. A type this cannot judge is
    left to trl. A string given for a field typed `SomeEnum | str` must be one of the enum's values."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        named = [arm for arm in arguments if isinstance(arm, type) and issubclass(arm, enum.Enum)]
        if named and isinstance(value, str):
            return any(value in {member.value for member in arm} for arm in named)
        return any(_accepts(arm, value) for arm in arguments)
    if origin is typing.Literal:
        return value in arguments
    if origin in (list, tuple):
        return isinstance(value, list) and (not arguments or all(_accepts(arguments[0], item) for item in value))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return value in {member.value for member in hint}
    return True


def _check_reporters(reporters: Iterable[str]) -> None:
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    known = sorted(INTEGRATION_TO_CALLBACK)
    for reporter in reporters:
        if reporter not in known and reporter not in REPORTERS_ALSO:
            close = difflib.get_close_matches(reporter, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (one of {', '.join(known)})"
            raise ValueError(f"training.trainer.report_to: transformers knows no {reporter!r}{hint}")
