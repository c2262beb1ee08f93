"""Regime quantities (onmerge.regime): each definition on a hand-computed case, the recorder on tiny training runs in
fp32 and pure bf16 against independent computations from the saved weights, its record across a resume, and the
regime table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from onmerge import training as training_module
from onmerge.config import load_preset
from onmerge.merge_ops import dare, magnitude_prune, seeded_generator
from onmerge.regime import (
    bf16_half_step,
    bf16_half_step_over_weight,
    changed_fraction,
    clamp_fraction,
    drift,
    median_abs,
    merge_share,
    sign_election_dominance,
    step_over_bf16_half_step,
    step_over_weight,
    survival,
)
from onmerge.tables.regime import QUANTITIES, kicks_per_entry, regime_markdown, regime_table
from onmerge.training import OptimizerSpec, PreferenceTraining, ProgressLines, train_preference

from tiny import save_base_and_sft, tiny_preference_dataset

# 16 pairs in batches of 4: 4 optimizer steps, the first at learning rate 0 (one warm-up step).
TINY = {"epochs": 1, "batch_size": 4, "warmup_steps": 1, "max_length": 64}
STEPS = 4


# ---------------------------------------------------------------------------------------------------------------------
# Definitions, by hand


def test_the_median_is_the_lower_middle_magnitude_over_all_tensors_together():
    assert median_abs([torch.tensor([-3.0, 1.0, 2.0]), torch.tensor([0.5, -4.0])]) == 2.0
    # six entries 0, 0.5, 1, 3, 4, 10: the lower of the middle two
    assert median_abs([torch.tensor([-3.0, 1.0]), torch.tensor([[0.5, -4.0], [10.0, 0.0]])]) == 1.0
    generator = torch.Generator().manual_seed(0)
    tensors = [torch.randn(1001, generator=generator), torch.randn(40, 6, generator=generator).bfloat16()]
    expected = torch.cat([tensor.float().abs().reshape(-1) for tensor in tensors]).median().item()
    assert median_abs(tensors) == expected


def test_half_a_bf16_step_at_known_weights():
    weights = torch.tensor([1.0, 0.75, -3.0, 1e-3, 0.0, 2.0**-130])
    # floor(log2|w|) = 0, -1, 1, -10; zero and subnormals take the subnormal spacing 2^-133
    expected = torch.tensor([2.0**-8, 2.0**-9, 2.0**-7, 2.0**-18, 2.0**-134, 2.0**-134])
    assert torch.equal(bf16_half_step(weights), expected)


def test_step_sizes_against_the_median_weight_and_its_half_bf16_step():
    weights = [torch.tensor([0.01, -0.02]), torch.tensor([0.04])]  # median |w| 0.02; 2^-6 <= 0.02 < 2^-5
    assert step_over_weight(1e-3, weights) == pytest.approx(0.05)
    assert step_over_bf16_half_step(1e-3, weights) == pytest.approx(1e-3 / 2.0**-14)  # 16.384
    assert bf16_half_step_over_weight(weights) == pytest.approx(2.0**-14 / 0.02)


def test_an_update_under_half_a_bf16_step_rounds_away():
    before = torch.tensor([1.0, 1.0, 0.0625, 0.0, 3.0], dtype=torch.bfloat16)
    update = torch.tensor([0.003, 0.005, 1e-4, 1e-30, 0.0])
    after = before.clone().add_(update)
    # half a step: 2^-8 = 0.0039 at 1.0, 2^-12 = 0.00024 at 0.0625; 1e-30 is a normal bf16 number
    assert after.tolist() == pytest.approx([1.0, 1.0078125, 0.0625, 1e-30, 3.0], rel=1e-2)
    assert survival([before], [after], [update != 0]) == 0.5  # the second and fourth of four
    assert survival([before], [after], [torch.zeros(5, dtype=torch.bool)]) is None


def test_kicks_per_entry_is_merges_times_the_reserve_rate():
    assert kicks_per_entry("ondare", 956, 0.01) == pytest.approx(9.56)
    assert kicks_per_entry("ondare", 956, 0.01, merge_every=10) == pytest.approx(0.95)  # 95 merges
    assert kicks_per_entry("onties", 64, 0.01) == pytest.approx(0.64)
    assert kicks_per_entry("adamw", 956, 0.01) is None
    assert kicks_per_entry("childtuning", 956, 0.01) is None


def test_drift_and_its_cosine_on_three_entries():
    sft, trained, tau = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.3, 2.0, 2.6]), torch.tensor([0.6, 0.8, 0.0])
    ratio, cosine = drift([trained], [sft], [tau])  # moved (0.3, 0, -0.4): norm 0.5; tau's norm 1
    assert ratio == pytest.approx(0.5)
    assert cosine == pytest.approx(0.18 / 0.5)
    assert math.isnan(drift([sft], [sft], [tau])[1])


def test_merge_share_and_the_fractions():
    applied, tau = [torch.tensor([0.03, -0.04])], [torch.tensor([0.3, 0.0]), torch.tensor([0.4])]
    assert merge_share(applied, tau) == pytest.approx(0.1)  # 0.05 / 0.5
    assert changed_fraction([torch.tensor([True, False, False, True]), torch.tensor([False])]) == 0.4
    assert clamp_fraction([torch.tensor([1.0, -1.0, 0.5, -0.25]), torch.tensor([0.99, 1.0])]) == 0.5
    assert clamp_fraction([torch.tensor([0.999]).bfloat16()]) == 1.0  # as stored: 0.999 is 1.0 in bf16
    assert clamp_fraction([torch.empty(0)]) is None


def test_sign_election_dominance_on_a_crafted_pair():
    reference = [torch.tensor([2.0, 0.0, -3.0, 1.0, 0.0]), torch.tensor([4.0])]
    update = [torch.tensor([0.1, 0.5, 0.0, -0.01, 0.2]), torch.tensor([0.1])]
    ratio, on_support = sign_election_dominance(reference, update)
    assert ratio == pytest.approx(40.0)  # ratios 20, 100, 40
    assert on_support == pytest.approx(3 / 5)  # update entries 0, 1, 3, 4 and the second tensor's; 0, 3 and it shared
    assert sign_election_dominance([torch.tensor([1.0, 0.0])], [torch.tensor([0.0, 2.0])]) == (None, 0.0)


# ---------------------------------------------------------------------------------------------------------------------
# The recorder, on tiny runs


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    return save_base_and_sft(tmp_path_factory.mktemp("models"))


RUNS = {  # name: (optimizer, learning rate, pure bf16, base given)
    "adamw-fp32": (OptimizerSpec("adamw"), 1e-3, False, True),
    "adamw-bf16": (OptimizerSpec("adamw"), 1e-5, True, False),
    "ondare-bf16": (OptimizerSpec("ondare", {"reserve_p": 0.1, "alpha": 1e-3}), 1e-5, True, True),
    "onties-fp32": (OptimizerSpec("onties", {"reserve_p": 0.1, "alpha": 1e-3}), 1e-3, False, True),
    "lora": (OptimizerSpec("lora", {"lora_rank": 4}), 1e-3, False, False),
    "ema": (OptimizerSpec("ema", {"ema_decay": 0.1}), 1e-3, False, False),
    "childtuning": (OptimizerSpec("childtuning", {"reserve_p": 0.5}), 1e-3, False, False),
    "ondare-published-k2": (
        OptimizerSpec("ondare", {"reserve_p": 0.1, "alpha": 1e-3, "merge_every": 2}, published_semantics=True),
        1e-3,
        False,
        True,
    ),
}


@pytest.fixture(scope="module")
def runs(checkpoints, tmp_path_factory):
    """Each run's folder (model/, training_log.json), trained on first use."""
    folder, done = tmp_path_factory.mktemp("runs"), {}

    def run(name: str) -> Path:
        if name not in done:
            spec, learning_rate, bf16, with_base = RUNS[name]
            base, sft = checkpoints
            train_preference(
                sft=sft,
                base=base if with_base else None,
                rows=tiny_preference_dataset(16).to_list(),
                out=folder / name / "model",
                training_log=folder / name / "training_log.json",
                training=PreferenceTraining(learning_rate=learning_rate, bf16=bf16, **TINY),
                optimizer=spec,
            )
            done[name] = folder / name
        return done[name]

    return run


def regime(folder: Path) -> dict[str, float | None]:
    return json.loads((folder / "training_log.json").read_text())["regime"]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def test_fp32_adamw_updates_all_survive_and_the_record_matches_the_saved_weights(checkpoints, runs):
    base, sft = checkpoints
    record = regime(runs("adamw-fp32"))
    assert set(record) == set(QUANTITIES)
    assert record["survival"] == pytest.approx(1.0, abs=1e-3)
    start, end, before = weights(sft), weights(runs("adamw-fp32") / "model"), weights(base)
    magnitudes = torch.cat([tensor.abs().reshape(-1) for tensor in start.values()])
    assert record["step_over_weight"] == pytest.approx(1e-3 / magnitudes.median().item(), rel=1e-6)
    moved = math.sqrt(sum(float((end[name] - start[name]).double().square().sum()) for name in start))
    task = math.sqrt(sum(float((start[name] - before[name]).double().square().sum()) for name in start))
    assert record["drift"] == pytest.approx(moved / task, rel=1e-5)
    differs = sum(int((end[name] != start[name]).sum()) for name in start) / magnitudes.numel()
    assert differs <= record["changed_fraction"] <= differs + 1e-3  # changed once: almost all still differ
    assert record["kicks_per_entry"] is None and record["merge_share"] is None and record["clamp_fraction"] is None


def test_pure_bf16_rounds_most_small_adamw_updates_away(checkpoints, runs):
    _, sft = checkpoints
    record = regime(runs("adamw-bf16"))
    assert 0.0 < record["survival"] < 0.5
    start, end = weights(sft), weights(runs("adamw-bf16") / "model")
    entries = sum(tensor.numel() for tensor in start.values())
    differs = sum(int((end[name] != start[name].bfloat16()).sum()) for name in start) / entries
    assert differs <= record["changed_fraction"] < 0.5
    assert record["step_over_bf16_half_step"] < 1.0
    assert record["drift"] is None, "AdamW cells get no base model: no tau_r"


def test_ondare_kicks_survive_bf16_and_its_merge_is_counted_as_applied(checkpoints, runs):
    base, sft = checkpoints
    record = regime(runs("ondare-bf16"))
    assert record["survival"] > 2 * regime(runs("adamw-bf16"))["survival"], "1/p-scaled kicks are 10x larger"
    assert record["kicks_per_entry"] == pytest.approx(STEPS * 0.1, rel=0.1)
    # F(tau_r) redrawn as the optimizer documents it: DARE with seeded_generator(seed, name, "reference"), clamped
    start, before = weights(sft), weights(base)
    kept = [
        dare(start[name] - before[name], 0.1, seeded_generator(0, name, "reference")).values.clamp(-1, 1).bfloat16()
        for name in start
    ]
    task = math.sqrt(sum(float((start[name] - before[name]).double().square().sum()) for name in start))
    applied = STEPS * 1e-3 * math.sqrt(sum(float(values.double().square().sum()) for values in kept))
    assert record["merge_share"] == pytest.approx(applied / task, rel=1e-6)
    clamped = sum(int((values.abs() == 1).sum()) for values in kept) / sum(values.numel() for values in kept)
    assert record["clamp_fraction"] == clamped
    assert 0.0 <= record["merge_survival"] <= 1.0


def test_onties_election_is_measured(checkpoints, runs):
    base, sft = checkpoints
    record = regime(runs("onties-fp32"))
    start, before = weights(sft), weights(base)
    entries = sum(tensor.numel() for tensor in start.values())
    kept = [magnitude_prune(start[name] - before[name], 0.1).values for name in start]
    assert record["kicks_per_entry"] == pytest.approx(STEPS * sum(v.numel() for v in kept) / entries)
    task = math.sqrt(sum(float((start[name] - before[name]).double().square().sum()) for name in start))
    every_merge = STEPS * 1e-3 * math.sqrt(sum(float(values.double().square().sum()) for values in kept))
    assert 0.0 < record["merge_share"] <= every_merge / task * (1 + 1e-6)  # the election only drops entries
    assert record["dominance_ratio"] > 0.0 and 0.0 < record["update_on_reference"] <= 1.0
    assert record["clamp_fraction"] is None, "OnTIES does not clamp"


@pytest.mark.parametrize(
    "name, measured",
    [
        ("lora", {"step_over_weight", "bf16_half_step_over_weight", "step_over_bf16_half_step", "survival"}),
        ("ema", {"step_over_weight", "bf16_half_step_over_weight", "step_over_bf16_half_step", "survival"}),
        ("childtuning", {"step_over_weight", "bf16_half_step_over_weight", "step_over_bf16_half_step", "survival"}),
    ],
)
def test_every_method_records_what_applies_to_it(runs, name, measured):
    record = regime(runs(name))
    measured = measured | {"changed_fraction"}
    assert {key for key, value in record.items() if value is not None} == measured
    assert record["survival"] == pytest.approx(1.0, abs=1e-3)


def test_published_step_k_counts_only_the_tensors_its_early_return_reaches(runs):
    """As published, step-K ends the step after the first tensor's plain AdamW step: the others keep their weights,
    and no update of theirs is attempted (fp32 at lr 1e-3: every attempted one lands)."""
    record = regime(runs("ondare-published-k2"))
    assert record["survival"] == pytest.approx(1.0, abs=1e-3)
    # 4 steps at K = 2: only the first three tensors ever move (the i-th at every K^i-th step), and only the first
    # two merge, the embedding (a third of the entries) twice
    assert record["changed_fraction"] < 0.5
    assert record["kicks_per_entry"] < STEPS // 2 * 0.1


class KilledAfterStep4(ProgressLines):
    def on_save(self, args, state, control, **kwargs):
        if state.global_step == 4:
            raise RuntimeError("killed")


@pytest.mark.parametrize(
    "spec, trainer",
    [
        (OptimizerSpec("onties", {"reserve_p": 0.1, "alpha": 1e-3}), {}),  # the most to keep: medians, per-entry counts
        (OptimizerSpec("adamw"), {"optim": "adamw_torch"}),  # torch.optim.AdamW restores its state as floats
    ],
)
def test_a_resumed_run_records_the_uninterrupted_runs_regime(checkpoints, tmp_path, monkeypatch, capsys, spec, trainer):
    """Pure bf16, killed after its fourth step's checkpoint, then rerun: the same training log, regime included."""
    base, sft = checkpoints

    def cell(folder: Path) -> Path:
        train_preference(
            sft=sft,
            base=base,
            rows=tiny_preference_dataset(32).to_list(),  # 8 steps, a checkpoint after each
            out=folder / "model",
            training_log=folder / "training_log.json",
            training=PreferenceTraining(learning_rate=1e-4, bf16=True, trainer=trainer, **TINY),
            optimizer=spec,
        )
        return folder / "training_log.json"

    uninterrupted = cell(tmp_path / "uninterrupted")
    with monkeypatch.context() as patch:
        patch.setattr(training_module, "ProgressLines", KilledAfterStep4)
        with pytest.raises(RuntimeError, match="killed"):
            cell(tmp_path / "resumed")
    assert not (tmp_path / "resumed" / "training_log.json").exists()
    capsys.readouterr()
    resumed = cell(tmp_path / "resumed")
    assert "checkpoint-4" in capsys.readouterr().out, "resumed from the checkpoint the kill left"
    record = json.loads(uninterrupted.read_text())["regime"]
    assert record["survival"] is not None and record["changed_fraction"] is not None
    assert resumed.read_bytes() == uninterrupted.read_bytes()


def test_a_run_resumed_from_a_checkpoint_without_the_recorders_state_leaves_the_steps_unmeasured(
    checkpoints, tmp_path, monkeypatch
):
    """A checkpoint written before the recorder existed: the run still resumes and saves, and says what it lacks."""
    base, sft = checkpoints

    def cell() -> None:
        train_preference(
            sft=sft,
            base=base,
            rows=tiny_preference_dataset(32).to_list(),
            out=tmp_path / "model",
            training_log=tmp_path / "training_log.json",
            training=PreferenceTraining(learning_rate=1e-3, **TINY),
            optimizer=OptimizerSpec("ondare", {"reserve_p": 0.1, "alpha": 1e-3}),
        )

    with monkeypatch.context() as patch:
        patch.setattr(training_module, "ProgressLines", KilledAfterStep4)
        with pytest.raises(RuntimeError, match="killed"):
            cell()
    (counts,) = tmp_path.glob(".model.checkpoints-*/checkpoint-4/regime-0-of-1.pt")
    counts.unlink()
    cell()
    record = regime(tmp_path)
    assert record["survival"] is None and record["changed_fraction"] is None and record["kicks_per_entry"] is None
    assert record["step_over_weight"] is not None and record["merge_share"] is not None  # from the weights


# ---------------------------------------------------------------------------------------------------------------------
# The table


def test_the_table_sets_the_published_settings_beside_the_medians_of_each_group(tmp_path):
    preset = load_preset("smoke")
    frame = regime_table(preset, tmp_path, ["precision"])
    paper = frame["paper: OnDARE (bf16, published settings)"]
    assert paper["steps"] == 956  # 2 epochs of ceil(61,135 / 128)
    assert paper["kicks_per_entry"] == pytest.approx(9.56)
    assert paper["merge_share"] == "<= 0.00096"  # 956 x 1e-7 / sqrt(0.01)
    assert paper["step_over_weight"] == "needs the weights"
    assert frame["paper: AdamW (bf16, published settings)"]["kicks_per_entry"] is None
    column = "precision: OnDARE (bf16)"
    cells = [f"qwen-s/regime~small-step-bf16/dpo/ondare/beta~0.1_p~0.1_alpha~0.001_k~1/seed~{seed}" for seed in (0, 1)]
    assert frame[column]["cells"] == 0 and cells[0] in frame.attrs["missing"]
    for seed, survived in zip((0, 1), (0.25, 0.75), strict=True):
        record = dict.fromkeys(QUANTITIES) | {"survival": survived, "drift": 0.1 * (seed + 1)}
        (tmp_path / cells[seed]).mkdir(parents=True)
        (tmp_path / cells[seed] / "training_log.json").write_text(
            json.dumps({"max_steps": 4, "history": [], "regime": record})
        )
    preset = preset | {"seeds": [0, 1]}
    frame = regime_table(preset, tmp_path, ["precision"])
    assert frame[column]["cells"] == 2
    assert frame[column]["survival"] == pytest.approx(0.5)  # the median of two
    assert frame[column]["drift"] == pytest.approx(0.15)
    assert frame[column]["learning_rate"] == pytest.approx(1e-4)  # the regime's
    assert frame[column]["kicks_per_entry"] is None
    assert cells[0] not in frame.attrs["missing"]
    text = regime_markdown(frame)
    assert "| `survival`: update entries that changed the stored weight |" in text
    assert "\\|w\\|" in text, "pipes in a definition are escaped"
    assert "956 steps" in text
