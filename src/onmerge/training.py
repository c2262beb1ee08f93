"""RLHF training cells: thin glue around trl's DPOTrainer (DPO, IPO) and KTOTrainer, with the paper's optimizers.

One cell = an SFT model, preference data, a loss, and an optimizer with its hyper-parameters. The policy and the
reference both start from the SFT model; the online merging optimizers merge with `tau_r = theta_sft - theta_base`.
The trained model is written atomically: a killed run leaves no folder that looks finished.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from datasets import Dataset
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer

from onmerge.atomic import atomic_dir
from onmerge.optim import ChildTuningAdamW, EMAAdamW, LegacyAdamW, OnDAREAdamW, OnTIESAdamW, task_vector

OptimizerName = Literal["adamw", "lora", "ondare", "onties", "childtuning", "ema"]
Loss = Literal["dpo", "ipo", "kto"]


@dataclass(frozen=True)
class OptimizerSpec:
    """Which method a cell trains with, and its own hyper-parameters (the others are ignored).

    `lora` is AdamW over LoRA adapters on every linear layer, with LLaMA-Factory's defaults (the paper's trainer):
    lora_alpha = 2 x rank, no dropout; the adapters are merged into the weights when the model is saved.
    """

    name: OptimizerName = "adamw"
    reserve_p: float = 0.01
    alpha: float = 1e-7
    merge_every: int = 1
    ema_decay: float = 1e-3
    lora_rank: int = 8


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


def build_optimizer(
    spec: OptimizerSpec, model: PreTrainedModel, training: PreferenceTraining, base: Path | None, sft: Path
) -> torch.optim.Optimizer:
    """The cell's optimizer over the policy's named parameters (HF-legacy AdamW core for every method)."""
    common = {"lr": training.learning_rate, "weight_decay": training.weight_decay}
    params = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
    if spec.name in ("adamw", "lora"):
        return LegacyAdamW(params, **common)
    if spec.name == "childtuning":
        return ChildTuningAdamW(params, reserve_p=spec.reserve_p, seed=training.seed, **common)
    if spec.name == "ema":
        return EMAAdamW(params, ema_decay=spec.ema_decay, **common)
    if base is None:
        raise ValueError(f"optimizer {spec.name!r} merges with the SFT task vector and needs the base model")
    online = OnDAREAdamW if spec.name == "ondare" else OnTIESAdamW
    return online(
        params,
        reference_delta=task_vector(base, sft),
        reserve_p=spec.reserve_p,
        alpha=spec.alpha,
        merge_every=spec.merge_every,
        seed=training.seed,
        **common,
    )


def train_preference(
    *,
    sft: Path,
    base: Path | None,
    rows: list[dict],
    out: Path,
    training: PreferenceTraining,
    optimizer: OptimizerSpec,
) -> Path:
    """Train one cell from `sft` on `rows` (trl's conversational preference format, or unpaired for KTO)."""
    torch.manual_seed(training.seed)
    dtype = torch.bfloat16 if training.bf16 else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(sft)
    policy = AutoModelForCausalLM.from_pretrained(sft, dtype=dtype)
    if optimizer.name == "lora":
        policy = get_peft_model(policy, _lora_config(optimizer.lora_rank))
        reference = None  # trl scores the reference with the adapters switched off
    else:
        reference = AutoModelForCausalLM.from_pretrained(sft, dtype=dtype)
    opt = build_optimizer(optimizer, policy, training, base, sft)
    per_device, accumulation = batch_split(training)
    checkpoints = out.with_name(f".{out.name}.trainer-{uuid.uuid4().hex}")  # trainer scratch, removed at the end
    common = {
        "output_dir": str(checkpoints),
        "beta": training.beta,
        "learning_rate": training.learning_rate,
        "num_train_epochs": training.epochs,
        "per_device_train_batch_size": per_device,
        "gradient_accumulation_steps": accumulation,
        "lr_scheduler_type": "cosine",
        "warmup_steps": training.warmup_steps,
        "max_length": training.max_length,
        "seed": training.seed,
        "data_seed": training.seed,
        "bf16": training.bf16,
        "use_cpu": not torch.cuda.is_available(),
        "report_to": [],
        "save_strategy": "no",
        "logging_steps": 10,
        "activation_checkpointing": False,
        "disable_tqdm": True,
    }
    if training.loss == "kto":
        trainer: DPOTrainer | KTOTrainer = KTOTrainer(
            model=policy,
            ref_model=reference,
            args=KTOConfig(**common),
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            optimizers=(opt, None),
        )
    else:
        trainer = DPOTrainer(
            model=policy,
            ref_model=reference,
            args=DPOConfig(**common, loss_type=["sigmoid" if training.loss == "dpo" else "ipo"]),
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            optimizers=(opt, None),
        )
    try:
        trainer.train()
        if isinstance(opt, EMAAdamW):
            opt.copy_average_to_params()  # the EMA baseline is evaluated on its averaged weights
        if isinstance(policy, PeftModel):
            policy = policy.merge_and_unload()  # evaluated and merged like every other cell: a plain checkpoint
        with atomic_dir(out) as staging:
            policy.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
    finally:
        shutil.rmtree(checkpoints, ignore_errors=True)
    return out


def _lora_config(rank: int) -> LoraConfig:
    return LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def batch_split(training: PreferenceTraining) -> tuple[int, int]:
    """(per-device batch, gradient accumulation steps) giving the global batch over this run's processes."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    per_device = training.per_device_batch_size or training.batch_size // processes
    if per_device < 1 or training.batch_size % (per_device * processes):
        raise ValueError(
            f"global batch {training.batch_size} is not a multiple of {per_device} per device x {processes} processes"
        )
    return per_device, training.batch_size // (per_device * processes)
