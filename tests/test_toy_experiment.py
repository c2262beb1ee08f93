"""The toy experiment end to end on a world small enough for the test suite (smoke scale, one backbone)."""

import json

import pytest

from onmerge.toyworld import experiment
from onmerge.toyworld.models import SMOKE_SCALE
from onmerge.training import PreferenceTraining

pytestmark = pytest.mark.slow


def test_world_then_alignment_tax_table(tmp_path):
    small = {"seed": 0, "backbones": ["qwen-s"], "preference_pairs": 32, "docs_per_task": 4}
    world, timings = experiment.build_world(tmp_path / "world", SMOKE_SCALE, **small)
    assert {"tokenizer qwen2", "base qwen-s", "sft qwen-s", "preferences", "suite"} == set(timings)
    assert experiment.build_world(tmp_path / "world", SMOKE_SCALE, **small)[1] == {}, "a second build redoes nothing"
    preferences = {path.name: json.loads(path.read_text()) for path in world.preferences.parent.iterdir()}
    assert {name: len(rows) for name, rows in preferences.items()} == {
        "train.json": 32,
        "test.json": 4,
        "train_unpaired.json": 64,
        "test_unpaired.json": 8,
    }
    train_prompts = {row["prompt"][0]["content"] for row in preferences["train.json"]}
    assert not train_prompts & {row["prompt"][0]["content"] for row in preferences["test.json"]}
    training = PreferenceTraining(learning_rate=1e-3, epochs=1, batch_size=8, warmup_steps=1, max_length=96)
    table = experiment.alignment_tax(world, [0], tmp_path / "tax", training)
    base, reference, adamw = table
    assert (base["model"], reference["model"], adamw["model"], adamw["seed"]) == ("base", "reference", "adamw", 0)
    assert reference["alpacaeval_lc"] == 50.0  # the reference against itself
    for row in table:
        assert 0.0 <= row["benchmark_avg"]["value"] <= 1.0 and row["benchmark_avg"]["stderr"] >= 0.0
        assert 1.0 <= row["mt_bench"]["value"] <= 10.0
        assert set(row) >= {"math", "code", "agent", "code_switching", "alpacaeval_raw"}
    assert json.loads((tmp_path / "tax" / "alignment_tax.json").read_text()) == json.loads(json.dumps(table))
    assert "qwen-s" in experiment.format_table(table)
