"""RLHF training cells: thin glue around trl's DPOTrainer (DPO, IPO) and KTOTrainer, with the paper's optimizers.

One cell = an SFT model, preference data, a loss, and an optimizer with its hyper-parameters. The policy and the
reference both start from the SFT model; the online merging optimizers merge with `tau_r = theta_sft - theta_base`.
The trained model is written atomically: a killed run leaves no folder that looks finished. Beside it, the cell's
training log: trl's metrics at each logging step and where the run sits in the paper's regime
(`write_training_log`, `onmerge.regime`). The job's log shows the run's progress.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from datasets import Dataset
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback
from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer

from onmerge import hyperparameters, methods, trainer_config
from onmerge.atomic import atomic_dir, write_json
from onmerge.checkpoints import check_model_folder
from onmerge.optim import ChildTuningAdamW, EMAAdamW, LegacyAdamW, OnDAREAdamW, OnTIESAdamW, task_vector
from onmerge.optim.sharding import fsdp_windows
from onmerge.preferences import check_rows
from onmerge.progress import Progress, quiet_library_bars
from onmerge.regime import RegimeRecorder

# A checkpoint every tenth of a run (transformers reads a save_steps below 1 as a fraction of the total steps).
CHECKPOINT_FRACTION = 0.1
# Metrics logged every 32nd of a run unless a preset sets trainer.logging_steps: 32 points on any run's curves.
LOGGING_FRACTION = 1 / 32
# The trainer settings a preset's `training.trainer` may override (the paper's cosine schedule, quiet defaults).
TRAINER_DEFAULTS = {
    "lr_scheduler_type": "cosine",
    "logging_steps": LOGGING_FRACTION,
    "activation_checkpointing": False,  # trl turns it on by default; the toy models do not need it
    "report_to": [],
    "disable_tqdm": True,  # its bar would flood the job's log: progress lines instead (onmerge.progress)
}
# Log entries' keys that are not a record of the training: timings (the provenance record has the step's), and
# trl's token count, which a resumed run restarts from zero.
UNRECORDED_KEYS = ("num_tokens", "total_flos")
UNRECORDED_SUFFIXES = ("_runtime", "_per_second")

Loss = Literal["dpo", "ipo", "kto"]


@dataclass(frozen=True)
class OptimizerSpec:
    """Which optimizer a cell trains with (a method's `optimizer`, `onmerge.methods`) and the values of its
    hyper-parameters; one it does not set takes its default (`onmerge.hyperparameters`).

    A method with `lora_adapters` trains LoRA adapters on every linear layer, with LLaMA-Factory's defaults (the
    paper's trainer): lora_alpha = 2 x rank, no dropout; the adapters are merged into the weights when the model is
    saved. `published_semantics` (for an optimizer that a `-published` method runs: ondare, onties) reproduces the
    published optimizers' step-K and OnTIES small-tensor defects (`onmerge.optim.online`).
    """

    name: str = "adamw"
    values: Mapping[str, float | int] = dataclasses.field(default_factory=dict)
    published_semantics: bool = False

    def __post_init__(self) -> None:
        for name in self.values:
            hyperparameters.get(name)  # ValueError naming the known ones

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> OptimizerSpec:
        """From a training job's `optimizer` settings (`onmerge.grid.training_settings`): its `name`, its
        `published_semantics` where set, and its hyper-parameters' values."""
        values = {key: value for key, value in settings.items() if key not in ("name", "published_semantics")}
        return cls(settings["name"], values, bool(settings.get("published_semantics", False)))

    def __getitem__(self, name: str) -> float | int:
        """The value of hyper-parameter `name`: the cell's, else its default."""
        if name in self.values:
            return self.values[name]
        default = hyperparameters.get(name).default
        if default is None:
            raise ValueError(f"optimizer {self.name!r}: {name} has no default, and the cell sets none")
        return default

    def identity(self) -> dict[str, Any]:
        """Every setting, defaults filled in (each optimizer hyper-parameter's, whichever optimizer this is): what
        a cell's checkpoint folder is named by, so the same settings always find the same folder."""
        known = [
            entry.name
            for entry in hyperparameters.registered()
            if entry.default is not None or entry.name in self.values
        ]
        return {"name": self.name, "published_semantics": self.published_semantics} | {
            name: self[name] for name in known
        }


@dataclass(frozen=True)
class PreferenceTraining:
    """The trainer's hyper-parameters (the paper: beta 0.1, lr 1e-6, cosine, 100 warm-up steps, 2 epochs)."""

    loss: Loss = "dpo"
    beta: float = 0.1
    learning_rate: float = 1e-6
    epochs: float = 2.0
    batch_size: int = 128  # global: per device x processes x gradient accumulation
    per_device_batch_size: int | None = None  # None: the whole batch on each device
    warmup_steps: int = 100
    max_length: int = 2048
    weight_decay: float = 0.0
    seed: int = 0
    bf16: bool = False
    trainer: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # trl config fields (onmerge.trainer_config)


@dataclass(frozen=True)
class OptimizerInputs:
    """What a method's optimizer factory (`onmerge.methods.Method.factory`) builds its optimizer from."""

    params: list[tuple[str, nn.Parameter]]  # the policy's trainable parameters, by name
    spec: OptimizerSpec
    adam: dict[str, Any]  # lr, weight_decay, eps, betas: the trainer's, as the published fork passes them
    seed: int
    trainer: Mapping[str, Any]  # trl config fields (`optim` picks torch.optim.AdamW for adamw and lora)
    model: nn.Module  # the policy, FSDP-wrapped under FSDP
    reference_delta: Mapping[str, torch.Tensor] | None  # tau_r, for a method that needs the base model


def build_optimizer(
    spec: OptimizerSpec, model: nn.Module, training: PreferenceTraining, base: Path | None, sft: Path
) -> torch.optim.Optimizer:
    """The cell's optimizer over the policy's named parameters, built by its method's factory (`onmerge.methods`).

    eps and betas are the trainer's `adam_epsilon`, `adam_beta1`, `adam_beta2` (trl's defaults when unset), as the
    published fork passes them. `model` may be FSDP-wrapped (use_orig_params=True): the online optimizers then take
    each rank's slice of tau_r.
    """
    method = methods.training_optimizer(spec.name, spec.published_semantics)
    if method.needs_base and base is None:
        raise ValueError(f"optimizer {spec.name!r} merges with the SFT task vector and needs the base model")
    inputs = OptimizerInputs(
        params=[(name, param) for name, param in model.named_parameters() if param.requires_grad],
        spec=spec,
        adam={
            "lr": training.learning_rate,
            "weight_decay": training.weight_decay,
            **trainer_config.adam_settings(training.trainer, training.loss),
        },
        seed=training.seed,
        trainer=training.trainer,
        model=model,
        reference_delta=task_vector(base, sft) if method.needs_base else None,
    )
    return method.load_factory()(inputs)


def adamw_optimizer(inputs: OptimizerInputs) -> torch.optim.Optimizer:
    """AdamW (and LoRA's): HF-legacy AdamW, or torch.optim.AdamW (the published AdamW row's optimizer) where the
    trainer's `optim` is one of `trainer_config.TORCH_ADAMW`, fused where it asks and the device allows."""
    optim = inputs.trainer.get("optim")
    if optim is None:
        return LegacyAdamW(inputs.params, **inputs.adam)
    fused = trainer_config.TORCH_ADAMW[optim] and all(
        param.device.type in _get_fused_kernels_supported_devices() for _, param in inputs.params
    )
    return torch.optim.AdamW(inputs.params, **inputs.adam, **({"fused": True} if fused else {}))


def childtuning_optimizer(inputs: OptimizerInputs) -> torch.optim.Optimizer:
    return ChildTuningAdamW(inputs.params, reserve_p=inputs.spec["reserve_p"], seed=inputs.seed, **inputs.adam)


def ema_optimizer(inputs: OptimizerInputs) -> torch.optim.Optimizer:
    return EMAAdamW(inputs.params, ema_decay=inputs.spec["ema_decay"], **inputs.adam)


def ondare_optimizer(inputs: OptimizerInputs) -> torch.optim.Optimizer:
    return _online(OnDAREAdamW, inputs)


def onties_optimizer(inputs: OptimizerInputs) -> torch.optim.Optimizer:
    return _online(OnTIESAdamW, inputs)


def _online(optimizer_class: type[OnDAREAdamW | OnTIESAdamW], inputs: OptimizerInputs) -> torch.optim.Optimizer:
    spec = inputs.spec
    return optimizer_class(
        inputs.params,
        reference_delta=inputs.reference_delta,
        reserve_p=spec["reserve_p"],
        alpha=spec["alpha"],
        merge_every=spec["merge_every"],
        seed=inputs.seed,
        published_semantics=spec.published_semantics,
        windows=fsdp_windows(inputs.model),
        **inputs.adam,
    )


def train_preference(
    *,
    sft: Path,
    base: Path | None,
    rows: list[dict],
    out: Path,
    training_log: Path,
    training: PreferenceTraining,
    optimizer: OptimizerSpec,
    rows_from: str | None = None,
) -> Path:
    """Train one cell from `sft` on `rows` (trl's conversational preference format, or unpaired for KTO) into the
    model folder `out`, and its training log into `training_log`.

    The optimizer, the rows, the models and the trainer fields are checked before anything loads; `rows_from` names
    the rows in messages (their file).
    """
    method = methods.training_optimizer(optimizer.name, optimizer.published_semantics)
    view = "unpaired" if training.loss == "kto" else "paired"
    check_rows(rows, view, rows_from or f"{training.loss} preference data")
    trainer_config.check(training.trainer, [training.loss])
    quiet_library_bars()
    tokenizer = AutoTokenizer.from_pretrained(sft)
    check_model_folder(sft, tokenizer, "sft")
    torch.manual_seed(training.seed)
    # trl reads model_init_kwargs only for models it loads itself; the pipeline loads both, with them
    passed = dict(training.trainer)
    loading = dict(passed.pop("model_init_kwargs", None) or {})
    loading["dtype"] = torch.bfloat16 if training.bf16 else torch.float32
    lora_rank = optimizer["lora_rank"] if method.lora_adapters else None
    load_policy = functools.partial(_load_policy, sft, loading, lora_rank)
    policy = load_policy()
    # LoRA: trl scores the reference with the adapters switched off
    reference = None if method.lora_adapters else AutoModelForCausalLM.from_pretrained(sft, **loading)
    per_device, accumulation = batch_split(training)
    checkpoints = checkpoint_dir(out, sft=sft, base=base, rows=rows, training=training, optimizer=optimizer)
    if int(os.environ.get("RANK", "0")) == 0:
        remove_unresumable_checkpoints(checkpoints)
    reporters = passed.get("report_to", [])
    if {"tensorboard", "all"} & set([reporters] if isinstance(reporters, str) else reporters):
        # beside the cell's model: by default it would be under the checkpoints, removed after success
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(training_log.with_name("tensorboard"))
    owned = {  # from the preset's other keys, and what an exact resume needs (onmerge.trainer_config refuses them)
        "output_dir": str(checkpoints),
        "beta": training.beta,
        "learning_rate": training.learning_rate,
        "num_train_epochs": training.epochs,
        "per_device_train_batch_size": per_device,
        "gradient_accumulation_steps": accumulation,
        "warmup_steps": training.warmup_steps,
        "max_length": training.max_length,
        "seed": training.seed,
        "data_seed": training.seed,
        "bf16": training.bf16,
        "use_cpu": not torch.cuda.is_available(),
        "save_strategy": "steps",  # a killed run resumes from its last checkpoint (see checkpoint_dir)
        "save_steps": CHECKPOINT_FRACTION,
        "save_total_limit": 1,
        "save_only_model": False,  # the optimizer's and scheduler's state and the RNGs: an exact resume
    }
    common = TRAINER_DEFAULTS | passed | owned
    if training.loss == "kto":
        trainer: _CellDPOTrainer | _CellKTOTrainer = _CellKTOTrainer(
            model=policy,
            ref_model=reference,
            args=KTOConfig(**common),
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
        )
    else:
        trainer = _CellDPOTrainer(
            model=policy,
            ref_model=reference,
            args=DPOConfig(**common, loss_type=["sigmoid" if training.loss == "dpo" else "ipo"]),
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
        )
    trainer.make_optimizer = functools.partial(build_optimizer, optimizer, training=training, base=base, sft=sft)
    trainer.add_callback(LogAtCheckpoints())
    trainer.add_callback(ProgressLines())
    regime = RegimeRecorder(lambda: trainer.cell_optimizer)
    trainer.add_callback(regime)
    resume = last_complete_checkpoint(checkpoints)
    if resume is not None:
        print(f"resuming from {resume}", flush=True)
    trainer.train(resume_from_checkpoint=None if resume is None else str(resume))
    if isinstance(trainer.cell_optimizer, EMAAdamW):
        trainer.cell_optimizer.copy_average_to_params()  # the EMA baseline is evaluated on its averaged weights
    counts = regime.sum_over_processes()
    trained = _whole_policy(trainer, policy, load_policy)
    if trained is not None:
        if trainer.is_fsdp_enabled and reference is not None:  # FSDP sharded the reference too: read it whole again
            reference = AutoModelForCausalLM.from_pretrained(sft, **loading)
        record = regime.record(trained, reference, counts, learning_rate=training.learning_rate, sft=sft, base=base)
        write_training_log(trainer.state.log_history, trainer.state.max_steps, training_log, record)
        _save(trained, tokenizer, out)  # last: a cell with a model has its log
    if trainer.accelerator.is_main_process:
        shutil.rmtree(checkpoints, ignore_errors=True)  # kept after a failure: the rerun resumes from them
    return out


def write_training_log(
    history: list[dict[str, Any]], max_steps: int, path: Path, regime: Mapping[str, float | None]
) -> None:
    """The trainer's log at each logging step (loss, rewards, margins, accuracies, learning rate, grad norm, epoch,
    step: whatever trl logs for the loss), and the run's regime quantities (`onmerge.regime.RegimeRecorder.record`),
    atomically. The end-of-run summary and timings are left out, and keys are sorted as a checkpoint's restored
    entries are, so the same cell run again, or resumed after a kill, writes the same bytes."""
    steps = [
        {
            key: entry[key]
            for key in sorted(entry)
            if key not in UNRECORDED_KEYS and not key.endswith(UNRECORDED_SUFFIXES)
        }
        for entry in history
        if "train_runtime" not in entry  # the summary: means over this process's steps only, and its wall time
    ]
    write_json(path, {"max_steps": max_steps, "history": steps, "regime": dict(regime)})


class LogAtCheckpoints(TrainerCallback):
    """Log at every checkpoint as well. The trainer averages loss and rewards since the last log, and a resumed run
    starts averaging at its checkpoint: logging there makes every window the uninterrupted run's."""

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save:
            control.should_log = True
        return control


class ProgressLines(TrainerCallback):
    """The run's steps with an ETA in the job's log (onmerge.progress), from the main process."""

    progress: Progress | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.progress = Progress("training", state.max_steps, "steps", done=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.advance()

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.close()


# What transformers writes into a checkpoint for an exact resume; a folder lacking any was cut short by a kill. The
# optimizer's state is `optimizer.pt` in one process; under FSDP accelerate writes `optimizer.bin` or, sharded,
# `optimizer_0/`. Each process writes its `rng_state*.pth`.
CHECKPOINT_FILES = ("trainer_state.json", "scheduler.pt")
OPTIMIZER_STATES = ("optimizer.pt", "optimizer.bin", "optimizer_0")


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The latest `checkpoint-<step>` in `folder` with every file a resume reads; None if there is none."""
    candidates = sorted(folder.glob("checkpoint-*"), key=lambda path: int(path.name.rpartition("-")[2]), reverse=True)
    for candidate in candidates:
        if (
            all((candidate / name).is_file() for name in CHECKPOINT_FILES)
            and any((candidate / name).exists() for name in OPTIMIZER_STATES)
            and any(candidate.glob("rng_state*.pth"))
        ):
            return candidate
    return None


def checkpoint_dir(
    out: Path, *, sft: Path, base: Path | None, rows: list[dict], training: PreferenceTraining, optimizer: OptimizerSpec
) -> Path:
    """The trainer's checkpoint folder for this cell, beside its output and named by everything the run depends on.

    A cell killed mid-run leaves its checkpoints here and no output; rerun with the same inputs and settings, it
    resumes from the last one (weights, the optimizer's exact state, scheduler, RNGs, data position). Changed
    inputs or settings give another name, so a stale checkpoint is never resumed.
    """
    identity = {
        "sft": str(Path(sft).resolve()),
        "base": None if base is None else str(Path(base).resolve()),
        "rows": hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest(),
        "training": dataclasses.asdict(training),
        "optimizer": optimizer.identity(),
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return out.with_name(f".{out.name}.checkpoints-{digest}")


def remove_unresumable_checkpoints(checkpoints: Path) -> None:
    """Remove this cell's checkpoint folders other than `checkpoints`: made with other inputs or settings (a failed
    run's, before the preset changed), they can never be resumed, and at 7B scale each holds tens of GB."""
    for stale in checkpoints.parent.glob(f"{glob.escape(checkpoints.name.rpartition('-')[0])}-*"):
        if stale != checkpoints:
            shutil.rmtree(stale, ignore_errors=True)


class _CellOptimizer:
    """Trainer mixin: the cell's optimizer is built when the Trainer asks for it, over the model it trains.

    Under FSDP that is the wrapped model, which exists only once accelerate has prepared it (transformers refuses an
    optimizer passed in with FSDP on), and whose parameters are this rank's shards.
    """

    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]
    cell_optimizer: torch.optim.Optimizer | None = None

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            self.cell_optimizer = self.make_optimizer(self.model if model is None else model)
            self.optimizer = self.cell_optimizer
        return self.optimizer


class _CellDPOTrainer(_CellOptimizer, DPOTrainer):
    pass


class _CellKTOTrainer(_CellOptimizer, KTOTrainer):
    pass


def _load_policy(sft: Path, loading: Mapping[str, Any], lora_rank: int | None) -> nn.Module:
    """The policy to train: the SFT model, with LoRA adapters of `lora_rank` if given."""
    policy = AutoModelForCausalLM.from_pretrained(sft, **loading)
    return policy if lora_rank is None else get_peft_model(policy, _lora_config(lora_rank))


def _whole_policy(trainer: Trainer, policy: nn.Module, load_policy: Callable[[], nn.Module]) -> nn.Module | None:
    """The trained policy with all of its weights, on the main process (None on the others).

    Under FSDP every rank takes part in gathering the full state dict, which the main process loads into a fresh
    copy of the policy (the trained one holds only its shards).
    """
    if not trainer.is_fsdp_enabled:
        return policy if trainer.is_world_process_zero() else None
    state_dict = trainer.accelerator.get_state_dict(trainer.model)
    if not trainer.accelerator.is_main_process:
        return None
    whole = load_policy()
    whole.load_state_dict(state_dict)
    return whole


def _save(policy: nn.Module, tokenizer, out: Path) -> None:
    """The trained policy as a plain checkpoint, written atomically. LoRA adapters are merged in, so every cell is
    evaluated and merged the same way."""
    if isinstance(policy, PeftModel):
        policy = policy.merge_and_unload()
    with atomic_dir(out) as staging:
        policy.save_pretrained(staging)
        tokenizer.save_pretrained(staging)


def _lora_config(rank: int) -> LoraConfig:
    return LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def batch_split(training: PreferenceTraining) -> tuple[int, int]:
    """(per-device batch, gradient accumulation steps) giving the global batch over this run's processes."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    return hyperparameters.split_batch(training.batch_size, training.per_device_batch_size, processes)
