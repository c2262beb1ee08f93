"""RLHF cells through trl with the project's optimizers: what gets written, that it trained, the training log beside
it, and the preset's trainer fields reaching trl."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from trl import DPOConfig

from onmerge import training as training_module
from onmerge.training import (
    OptimizerSpec,
    PreferenceTraining,
    batch_split,
    checkpoint_dir,
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
        ("dpo", OptimizerSpec("ondare", {"reserve_p": 0.5, "alpha": 0.01})),
        ("ipo", OptimizerSpec("onties", {"reserve_p": 0.5, "alpha": 0.01})),
        ("kto", OptimizerSpec("adamw")),
    ],
)
def test_cell_trains_and_writes_a_loadable_model(checkpoints, tmp_path, loss, spec):
    base, sft = checkpoints
    rows = (tiny_unpaired_dataset(8) if loss == "kto" else tiny_preference_dataset(8)).to_list()
    out, log = tmp_path / "cell", tmp_path / "training_log.json"
    training = PreferenceTraining(loss=loss, **TINY)
    train_preference(sft=sft, base=base, rows=rows, out=out, training_log=log, training=training, optimizer=spec)
    assert moved(out, sft) > 1e-5
    assert (out / "tokenizer_config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell", "training_log.json"], "no staging file left behind"
    history = json.loads(log.read_text())["history"]
    assert [entry["step"] for entry in history] == [1, 2], "8 rows in batches of 4: every step logged"
    assert all({"loss", "rewards/margins", "learning_rate", "grad_norm"} <= set(entry) for entry in history)


def test_ema_cell_saves_the_averaged_weights(checkpoints, tmp_path):
    base, sft = checkpoints
    rows = tiny_preference_dataset(8).to_list()
    training = PreferenceTraining(**TINY)
    adamw = train_preference(
        sft=sft,
        base=base,
        rows=rows,
        out=tmp_path / "adamw",
        training_log=tmp_path / "adamw.json",
        training=training,
        optimizer=OptimizerSpec("adamw"),
    )
    ema = train_preference(
        sft=sft,
        base=base,
        rows=rows,
        out=tmp_path / "ema",
        training_log=tmp_path / "ema.json",
        training=training,
        optimizer=OptimizerSpec("ema", {"ema_decay": 0.01}),
    )
    assert 0 < moved(ema, sft) < 0.1 * moved(adamw, sft)


def test_lora_cell_saves_a_plain_checkpoint_with_the_adapters_merged(checkpoints, tmp_path):
    _, sft = checkpoints
    out = train_preference(
        sft=sft,
        base=None,
        rows=tiny_preference_dataset(8).to_list(),
        out=tmp_path / "lora",
        training_log=tmp_path / "lora.json",
        training=PreferenceTraining(**TINY),
        optimizer=OptimizerSpec("lora", {"lora_rank": 4}),
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
            training_log=tmp_path / "cell.json",
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
            training_log=tmp_path / "cell.json",
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


def _dpo_cell(checkpoints: tuple[Path, Path], folder: Path, **trainer) -> Path:
    """An AdamW DPO cell on 32 pairs (8 steps, a checkpoint after each) with `trainer` fields; its training log."""
    base, sft = checkpoints
    log = folder / "training_log.json"
    train_preference(
        sft=sft,
        base=base,
        rows=tiny_preference_dataset(32).to_list(),
        out=folder / "model",
        training_log=log,
        training=PreferenceTraining(**TINY, trainer=trainer),
        optimizer=OptimizerSpec("adamw"),
    )
    return log


TRAINING_METRICS = {"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"}


def test_a_cell_logs_trls_metrics_at_each_step_with_the_same_bytes_when_run_again(checkpoints, tmp_path, capsys):
    first = _dpo_cell(checkpoints, tmp_path / "first")
    record = json.loads(first.read_text())
    assert record["max_steps"] == 8
    history = record["history"]
    assert [entry["step"] for entry in history] == list(range(1, 9))  # a 32nd of 8 steps, rounded up: each
    assert all(TRAINING_METRICS | {"learning_rate", "grad_norm", "epoch"} <= set(entry) for entry in history)
    timings = [key for entry in history for key in entry if key.endswith(("_runtime", "_per_second"))]
    assert timings == [] and not any("train_loss" in entry or "num_tokens" in entry for entry in history)
    assert "training: 8/8 steps (100%)" in capsys.readouterr().err  # the job's log: progress lines, no bar
    assert _dpo_cell(checkpoints, tmp_path / "second").read_bytes() == first.read_bytes()


CONFIGS_MADE: list[DPOConfig] = []


class RecordedDPOConfig(DPOConfig):
    """DPOConfig, keeping each instance made (at module level: the trainer pickles its config into checkpoints)."""

    def __post_init__(self):
        super().__post_init__()
        CONFIGS_MADE.append(self)


def test_the_presets_trainer_fields_reach_trl_and_the_models_loading(checkpoints, tmp_path, monkeypatch):
    configs, loads = CONFIGS_MADE, []
    configs.clear()
    load = training_module.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(training_module, "DPOConfig", RecordedDPOConfig)
    monkeypatch.setattr(
        training_module.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: loads.append(k) or load(*a, **k)
    )
    trainer = {
        "logging_steps": 3,
        "activation_checkpointing": True,
        "lr_scheduler_type": "linear",
        "model_init_kwargs": {"attn_implementation": "eager"},
    }
    _dpo_cell(checkpoints, tmp_path, **trainer)
    (args,) = configs
    assert (args.logging_steps, args.activation_checkpointing, args.lr_scheduler_type) == (3, True, "linear")
    assert [kwargs["attn_implementation"] for kwargs in loads] == ["eager", "eager"]  # the policy and the reference


def test_a_field_trl_lacks_is_refused_before_anything_loads(checkpoints, tmp_path):
    with pytest.raises(ValueError, match=r"trainer.logging_step: trl's DPOConfig has no such field .*logging_steps"):
        _dpo_cell(checkpoints, tmp_path, logging_step=3)
    assert list(tmp_path.iterdir()) == []


def test_tensorboard_events_go_beside_the_cells_model(checkpoints, tmp_path, monkeypatch):
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", "set for this test only")  # the cell sets it; restored after
    _dpo_cell(checkpoints, tmp_path, report_to=["tensorboard"])
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model", "tensorboard", "training_log.json"]


@pytest.mark.parametrize(
    ("optimizer", "base", "digest"),
    [
        (OptimizerSpec("ondare", {"reserve_p": 0.1, "alpha": 1e-3}), "/r/base", "ad7cef1e0a0420ef"),
        (OptimizerSpec("adamw"), None, "aa09ceb701e5e8f0"),
        (
            OptimizerSpec("onties", {"reserve_p": 0.1, "alpha": 1e-3, "merge_every": 2}, published_semantics=True),
            "/r/base",
            "2e4857a1088f0baa",
        ),
    ],
)
def test_a_cells_checkpoint_folder_keeps_its_name_across_versions(optimizer, base, digest):
    """A cell killed mid-run resumes from the folder its settings name. The digests are those of the version before
    the optimizer's settings took their defaults from `onmerge.hyperparameters`: a run interrupted then resumes."""
    folder = checkpoint_dir(
        Path("/r/cell/model"),
        sft=Path("/r/sft"),
        base=None if base is None else Path(base),
        rows=[{"a": 1}],
        training=PreferenceTraining(),
        optimizer=optimizer,
    )
    assert folder == Path(f"/r/cell/.model.checkpoints-{digest}")
