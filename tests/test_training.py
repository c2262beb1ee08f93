"""RLHF cells through trl with the project's optimizers: what gets written, and that it trained."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from onmerge.training import (
    OptimizerSpec,
    PreferenceTraining,
    batch_split,
    last_complete_checkpoint,
    remove_unresumable_checkpoints,
    train_preference,
)

from tiny import save_base_and_sft, tiny_preference_dataset, tiny_unpaired_dataset

pytestmark = pytest.mark.slow

TINY = {"learning_rate": 1e-3, "epochs": 1, "batch_size": 4, "warmup_steps": 1, "max_length": 64}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    return save_base_and_sft(tmp_path_factory.mktemp("models"))


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def moved(trained: Path, sft: Path) -> float:
    before, after = weights(sft), weights(trained)
    return max((after[name] - before[name]).abs().max().item() for name in before)


@pytest.mark.parametrize(
    "loss, spec",
    [
        ("dpo", OptimizerSpec("ondare", reserve_p=0.5, alpha=0.01)),
        ("ipo", OptimizerSpec("onties", reserve_p=0.5, alpha=0.01)),
        ("kto", OptimizerSpec("adamw")),
    ],
)
def test_cell_trains_and_writes_a_loadable_model(checkpoints, tmp_path, loss, spec):
    base, sft = checkpoints
    rows = (tiny_unpaired_dataset(8) if loss == "kto" else tiny_preference_dataset(8)).to_list()
    out = tmp_path / "cell"
    train_preference(
        sft=sft, base=base, rows=rows, out=out, training=PreferenceTraining(loss=loss, **TINY), optimizer=spec
    )
    assert moved(out, sft) > 1e-5
    assert (out / "tokenizer_config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell"], "no staging folder left behind"


def test_ema_cell_saves_the_averaged_weights(checkpoints, tmp_path):
    base, sft = checkpoints
    rows = tiny_preference_dataset(8).to_list()
    training = PreferenceTraining(**TINY)
    adamw = train_preference(
        sft=sft, base=base, rows=rows, out=tmp_path / "adamw", training=training, optimizer=OptimizerSpec("adamw")
    )
    ema = train_preference(
        sft=sft,
        base=base,
        rows=rows,
        out=tmp_path / "ema",
        training=training,
        optimizer=OptimizerSpec("ema", ema_decay=0.01),
    )
    assert 0 < moved(ema, sft) < 0.1 * moved(adamw, sft)


def test_lora_cell_saves_a_plain_checkpoint_with_the_adapters_merged(checkpoints, tmp_path):
    _, sft = checkpoints
    out = train_preference(
        sft=sft,
        base=None,
        rows=tiny_preference_dataset(8).to_list(),
        out=tmp_path / "lora",
        training=PreferenceTraining(**TINY),
        optimizer=OptimizerSpec("lora", lora_rank=4),
    )
    trained, before = weights(out), weights(sft)
    assert trained.keys() == before.keys(), "same parameter names as the SFT model: no adapter left"
    changed = {name for name in before if not torch.equal(trained[name], before[name])}
    assert changed and all(name.endswith("proj.weight") for name in changed), "only the adapted linear layers move"
    assert not (out / "adapter_config.json").exists()


@pytest.mark.parametrize("per_device, processes, expected", [(None, 1, (8, 1)), (2, 1, (2, 4)), (2, 2, (2, 2))])
def test_global_batch_splits_over_devices_and_accumulation(monkeypatch, per_device, processes, expected):
    monkeypatch.setenv("WORLD_SIZE", str(processes))
    training = PreferenceTraining(batch_size=8, per_device_batch_size=per_device)
    assert batch_split(training) == expected


def test_a_global_batch_that_does_not_divide_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match="global batch 8 is not a multiple of 2 per device x 3 processes"):
        batch_split(PreferenceTraining(batch_size=8, per_device_batch_size=2))


def test_online_optimizer_needs_the_base_model(checkpoints, tmp_path):
    _, sft = checkpoints
    with pytest.raises(ValueError, match="needs the base model"):
        train_preference(
            sft=sft,
            base=None,
            rows=tiny_preference_dataset(4).to_list(),
            out=tmp_path / "cell",
            training=PreferenceTraining(**TINY),
            optimizer=OptimizerSpec("ondare"),
        )
    assert not (tmp_path / "cell").exists()


def test_failed_training_leaves_no_output(checkpoints, tmp_path, monkeypatch):
    base, sft = checkpoints
    from trl import DPOTrainer

    def explode(self, *args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(DPOTrainer, "train", explode)
    with pytest.raises(RuntimeError, match="killed"):
        train_preference(
            sft=sft,
            base=base,
            rows=tiny_preference_dataset(4).to_list(),
            out=tmp_path / "cell",
            training=PreferenceTraining(**TINY),
            optimizer=OptimizerSpec("adamw"),
        )
    assert not (tmp_path / "cell").exists()
    # Only the trainer's hidden checkpoint folder may stay, for a rerun to resume from.
    assert all(path.name.startswith(".cell.checkpoints-") for path in tmp_path.iterdir())


def test_resume_takes_the_latest_checkpoint_that_was_written_whole(tmp_path):
    def checkpoint(step: int, files: list[str]) -> None:
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        for name in files:
            (folder / name).write_text("")

    whole = ["trainer_state.json", "scheduler.pt", "optimizer.pt", "rng_state.pth"]
    assert last_complete_checkpoint(tmp_path) is None
    checkpoint(2, whole)
    checkpoint(10, ["trainer_state.json", "scheduler.pt", "optimizer.bin", "rng_state_0.pth", "rng_state_1.pth"])
    checkpoint(12, whole[:-1])  # killed before its RNG state was written
    checkpoint(14, ["model.safetensors"])
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-10"


def test_checkpoints_made_with_other_settings_are_removed_and_the_resumable_ones_kept(tmp_path):
    """A failed run's checkpoints are reused by a rerun with the same settings, and removed once they cannot be."""
    current = tmp_path / ".model.checkpoints-aaaa"
    folders = [current, tmp_path / ".model.checkpoints-bbbb", tmp_path / ".model.checkpoints-cccc"]
    for folder in folders:
        (folder / "checkpoint-3").mkdir(parents=True)
    (tmp_path / ".other.checkpoints-bbbb").mkdir()  # another cell's
    remove_unresumable_checkpoints(current)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.checkpoints-aaaa", ".other.checkpoints-bbbb"]
    assert (current / "checkpoint-3").is_dir()
