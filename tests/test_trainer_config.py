"""A preset's `training.trainer`: trl's DPOConfig/KTOConfig fields, checked before any job against trl's own
dataclasses, and passed to every training cell unchanged."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from transformers.training_args import OptimizerNames
from trl import DPOConfig, KTOConfig

from onmerge import grid, trainer_config
from onmerge.config import load_preset

ROOT = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((ROOT / "workflow" / "config" / "presets" / "smoke.yaml").read_text())


def _load_with(tmp_path: Path, trainer: dict, **studies) -> dict:
    """The smoke preset with `trainer` under training (and `studies` added), written and loaded as the workflow
    loads it."""
    preset = json.loads(json.dumps(SMOKE))  # a deep copy
    preset["training"]["trainer"] = trainer
    preset["studies"] |= studies
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(preset))
    return load_preset(str(path))


def test_trainer_fields_reach_every_training_cells_settings_unchanged(tmp_path):
    trainer = {"activation_checkpointing": True, "logging_steps": 5, "report_to": ["tensorboard"]}
    preset = _load_with(tmp_path, trainer)
    cells = [model for model in grid.all_models(preset) if isinstance(model, grid.TrainCell)]
    assert len(cells) >= 2  # every study's, however many the smoke preset trains
    assert all(grid.training_settings(preset, cell)["training"]["trainer"] == trainer for cell in cells)


@pytest.mark.parametrize(
    "trainer, named",
    [
        ({"loging_steps": 5}, r"loging_steps: trl's DPOConfig has no such field \(did you mean logging_steps"),
        (
            {"num_train_epochs": 3},
            r"num_train_epochs: the pipeline sets num_train_epochs from training\.epochs; set it",
        ),
        ({"per_device_train_batch_size": 2}, r"from training\.per_device_batch_size; set it there"),
        ({"beta": 0.2}, r"beta: the pipeline sets beta from training\.beta"),
        ({"loss_type": ["hinge"]}, r"loss_type from the cell's loss \(a study's losses\)"),
        ({"gradient_checkpointing": True}, r"calls it activation_checkpointing: write training\.trainer\.activation_"),
        ({"save_steps": 10}, r"save_steps itself: the pipeline checkpoints every tenth of a run"),
        (
            {"optim": "adafactor"},
            r"optim: 'adafactor' is not .* give adamw_torch or adamw_torch_fused \(.*adamw and lora",
        ),
        ({"optim_args": "amsgrad=True"}, r"optim_args itself: each cell's optimizer is its method's"),
        ({"logging_steps": "ten"}, r"logging_steps: 'ten' is not a valid logging_steps"),
        ({"activation_checkpointing": "yes"}, r"'yes' is not a valid activation_checkpointing"),
        ({"lr_scheduler_type": "cosine_annealing"}, r"'cosine_annealing' is not a valid lr_scheduler_type"),
        ({"report_to": ["tensorbord"]}, r"report_to: transformers knows no 'tensorbord' \(did you mean tensorboard"),
        ({"desirable_weight": 2.0}, r"desirable_weight: trl's DPOConfig has no such field"),  # KTO's
        ({"model_init_kwargs": {"dtype": "float16"}}, r"model_init_kwargs\.dtype: the pipeline sets the models' dtype"),
        ({"model_init_kwargs": "{}"}, r"model_init_kwargs: the pipeline loads the models with it: give a mapping"),
    ],
)
def test_a_bad_trainer_field_is_refused_naming_it(tmp_path, trainer, named):
    with pytest.raises(ValueError, match=rf"mine\.yaml: training\.trainer\..*{named}"):
        _load_with(tmp_path, trainer)


def test_the_optimizer_fields_pass_to_every_training_cell(tmp_path):
    """eps, betas and a torch AdamW `optim` are trl's own fields, read by the cells' optimizers
    (tests/test_published_semantics.py checks that they arrive)."""
    trainer = {"optim": "adamw_torch", "adam_epsilon": 1e-8, "adam_beta1": 0.9, "adam_beta2": 0.95}
    preset = _load_with(tmp_path, trainer)
    cells = [model for model in grid.all_models(preset) if isinstance(model, grid.TrainCell)]
    assert cells and all(grid.training_settings(preset, cell)["training"]["trainer"] == trainer for cell in cells)


def test_a_field_of_dpo_only_is_refused_when_the_preset_trains_kto(tmp_path):
    kto = {"kto": {"backbones": ["qwen-s"], "methods": ["adamw"], "losses": ["kto"]}}
    _load_with(tmp_path, {"label_smoothing": 0.1})  # DPO cells only: fine
    with pytest.raises(ValueError, match=r"training\.trainer\.label_smoothing: trl's KTOConfig has no such field"):
        _load_with(tmp_path, {"label_smoothing": 0.1}, **kto)
    _load_with(tmp_path, {"precompute_ref_log_probs": True}, **kto)  # a field of both


def test_every_field_the_pipeline_keeps_is_one_of_trls():
    """A trl or transformers upgrade that renames one of them (or the optimizer fields and names the cells read)
    shows here, not as a field silently let through."""
    fields = {field.name for config in (DPOConfig, KTOConfig) for field in dataclasses.fields(config)}
    refused = {*trainer_config.SET_FROM_PRESET, *trainer_config.KEPT, *trainer_config.RENAMED}
    assert (
        refused | set(trainer_config.RENAMED.values()) | {"optim", "adam_epsilon", "adam_beta1", "adam_beta2"} <= fields
    )
    assert set(trainer_config.TORCH_ADAMW) <= {name.value for name in OptimizerNames}


def test_the_paper_presets_pass_what_an_fsdp_run_needs():
    for name in ("qwen1.5-1.8b", "qwen1.5-7b", "llama-3-8b"):
        trainer = load_preset(name)["training"]["trainer"]
        assert trainer["activation_checkpointing"] is True and trainer["report_to"] == ["tensorboard"]
        assert trainer["logging_steps"] == 10


def test_trl_is_imported_only_for_a_preset_that_passes_trainer_fields():
    """Snakemake parses the workflow with the package: importing trl costs seconds, so a preset without the mapping
    must not pay it."""
    script = (
        "import sys; from onmerge.config import load_preset; load_preset(sys.argv[1]);"
        " print('trl.trainer.dpo_config' in sys.modules)"
    )
    imported = {
        preset: subprocess.run(
            [sys.executable, "-c", script, preset], capture_output=True, text=True, check=True
        ).stdout.strip()
        for preset in ("toy", "qwen1.5-7b")
    }
    assert imported == {"toy": "False", "qwen1.5-7b": "True"}
