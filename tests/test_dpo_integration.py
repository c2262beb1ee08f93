"""The project's optimizers driven by trl's DPOTrainer on a tiny model: the wiring every alignment run relies on.

The unit tests check the optimizers' arithmetic on bare tensors; these check that inside the Trainer (accelerate's
optimizer wrapper, the LR scheduler rewriting `lr`, trl's loss) the optimizer given is the one that steps, that it
steps every parameter by name, and that it does something other than plain AdamW.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import torch
from torch import Tensor
from torch.optim import Optimizer
from transformers import AutoModelForCausalLM, PreTrainedModel, TrainerCallback
from trl import DPOConfig, DPOTrainer

from onmerge.optim import ChildTuningAdamW, EMAAdamW, LegacyAdamW, OnDAREAdamW, OnTIESAdamW, task_vector

from tiny import save_base_and_sft, tiny_preference_dataset, tiny_tokenizer

pytestmark = pytest.mark.slow

# Large enough that 3 steps move every weight well beyond float32 noise on a tiny model.
ADAM = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.0}
EMA_DECAY = 1e-2
STEPS = 3

MakeOptimizer = Callable[[PreTrainedModel, Mapping[str, Tensor]], Optimizer]
Weights = dict[str, Tensor]


class _RecordWeights(TrainerCallback):
    """Snapshots the policy after every optimizer step, to rebuild what an EMA of them must be."""

    def __init__(self, model: PreTrainedModel):
        self.model = model
        self.history: list[Weights] = []

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.history.append(_weights(self.model))


def _weights(model: PreTrainedModel) -> Weights:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _distance(a: Weights, b: Weights) -> float:
    return math.sqrt(sum((a[name] - b[name]).pow(2).sum().item() for name in a))


def _unchanged(a: Weights, b: Weights) -> list[str]:
    """Names of tensors that did not move beyond float noise between `a` and `b`."""
    return [name for name in a if (a[name] - b[name]).abs().max().item() <= 1e-6]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return save_base_and_sft(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="module")
def sft(checkpoints: tuple[Path, Path]) -> Weights:
    """The weights every run starts from."""
    return _weights(AutoModelForCausalLM.from_pretrained(checkpoints[1], dtype=torch.float32))


def _train(
    checkpoints: tuple[Path, Path], make_optimizer: MakeOptimizer, output_dir: Path, loss_type: str = "sigmoid"
) -> tuple[DPOTrainer, PreTrainedModel, Optimizer, _RecordWeights]:
    """DPO from the SFT model with the reference model passed in (trl would reload it from disk otherwise)."""
    base_dir, sft_dir = checkpoints
    policy = AutoModelForCausalLM.from_pretrained(sft_dir, dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(sft_dir, dtype=torch.float32)
    optimizer = make_optimizer(policy, task_vector(base_dir, sft_dir))
    recorder = _RecordWeights(policy)
    args = DPOConfig(
        output_dir=str(output_dir),
        max_steps=STEPS,
        per_device_train_batch_size=4,
        learning_rate=ADAM["lr"],
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
        seed=0,
        beta=0.1,
        loss_type=[loss_type],
        max_length=64,
        bf16=False,  # trl turns bf16 on unless told otherwise
        activation_checkpointing=False,  # trl's default is on; pointless for a tiny model
        disable_tqdm=True,
    )
    trainer = DPOTrainer(
        model=policy,
        ref_model=ref,
        args=args,
        train_dataset=tiny_preference_dataset(16),
        processing_class=tiny_tokenizer(),
        optimizers=(optimizer, None),
        callbacks=[recorder],
    )
    trainer.train()
    return trainer, policy, optimizer, recorder


def _logged_losses(trainer: DPOTrainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def _assert_trained(trainer: DPOTrainer, optimizer: Optimizer, first_loss: float) -> None:
    """The given optimizer took every step, and the first loss is the one of policy == reference."""
    assert trainer.optimizer.optimizer is optimizer  # accelerate wraps it; the Trainer must not build its own
    assert trainer.state.global_step == STEPS
    losses = _logged_losses(trainer)
    assert len(losses) == STEPS
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[0] == pytest.approx(first_loss, abs=1e-4)


@pytest.fixture(scope="module")
def adamw_weights(checkpoints: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Weights:
    """Plain HF-legacy AdamW under the same Trainer: the trajectory the merging optimizers must leave."""
    _, policy, _, _ = _train(
        checkpoints,
        lambda model, tau: LegacyAdamW(model.named_parameters(), **ADAM),
        tmp_path_factory.mktemp("adamw"),
    )
    return _weights(policy)


MERGING: dict[str, MakeOptimizer] = {
    "OnDARE": lambda model, tau: OnDAREAdamW(
        model.named_parameters(), reference_delta=tau, reserve_p=0.5, alpha=0.01, seed=0, **ADAM
    ),
    "OnTIES": lambda model, tau: OnTIESAdamW(
        model.named_parameters(), reference_delta=tau, reserve_p=0.5, alpha=0.01, seed=0, **ADAM
    ),
    "ChildTuning": lambda model, tau: ChildTuningAdamW(model.named_parameters(), reserve_p=0.5, seed=0, **ADAM),
}


@pytest.mark.parametrize("name", list(MERGING))
def test_merging_optimizer_trains_under_dpo(
    name: str, checkpoints: tuple[Path, Path], sft: Weights, adamw_weights: Weights, tmp_path: Path
) -> None:
    trainer, policy, optimizer, _ = _train(checkpoints, MERGING[name], tmp_path)

    _assert_trained(trainer, optimizer, first_loss=math.log(2))
    trained = _weights(policy)
    assert not _unchanged(trained, sft), "tensors the optimizer never moved"
    assert not _unchanged(trained, adamw_weights), "tensors updated as by plain AdamW"


def test_ema_evaluates_the_average_of_the_adamw_trajectory(
    checkpoints: tuple[Path, Path], sft: Weights, adamw_weights: Weights, tmp_path: Path
) -> None:
    trainer, policy, optimizer, recorder = _train(
        checkpoints, lambda model, tau: EMAAdamW(model.named_parameters(), ema_decay=EMA_DECAY, **ADAM), tmp_path
    )

    _assert_trained(trainer, optimizer, first_loss=math.log(2))
    raw = _weights(policy)
    # Keeping the average must not disturb the trajectory itself.
    for name in raw:
        torch.testing.assert_close(raw[name], adamw_weights[name], msg=name)

    optimizer.copy_average_to_params()
    averaged = _weights(policy)
    assert len(recorder.history) == STEPS
    for name in averaged:
        expected = sft[name]
        for snapshot in recorder.history:
            expected = expected.lerp(snapshot[name], EMA_DECAY)
        torch.testing.assert_close(averaged[name], expected, msg=name)
    # With decay c the average keeps about (1 - c)^3 of the SFT weights after 3 steps, so it barely moves.
    assert 0.0 < _distance(averaged, sft) < 0.1 * _distance(raw, sft)


def test_ipo_runs_with_ondare(checkpoints: tuple[Path, Path], tmp_path: Path) -> None:
    trainer, _, optimizer, _ = _train(checkpoints, MERGING["OnDARE"], tmp_path, loss_type="ipo")

    # IPO's loss at policy == reference is (0 - 1 / (2 beta))^2 = 25; sigmoid DPO's would be log 2.
    _assert_trained(trainer, optimizer, first_loss=(1 / (2 * 0.1)) ** 2)
    assert _logged_losses(trainer)[-1] < _logged_losses(trainer)[0]
