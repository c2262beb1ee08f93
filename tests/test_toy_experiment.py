"""The toy world built in one call (as `onmerge bench toy` does) at smoke scale, and the judge's win rates."""

import json

import pytest

from onmerge.toyworld import evaluation, experiment, suite
from onmerge.toyworld.backbones import SMOKE_SCALE

pytestmark = pytest.mark.slow


def test_world_builds_once_and_judges_against_the_reference(tmp_path):
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
    answers = {doc_id: f"answer {doc_id}" for doc_id in _judged_ids(world.suite)}
    judged = evaluation.win_rates(world.suite, answers, answers)
    assert {name: entry["value"] for name, entry in judged["metrics"].items()} == {
        "alpacaeval_lc": 50.0,
        "alpacaeval_raw": 50.0,
    }
    assert [judgment["id"] for judgment in judged["judgments"]] == _judged_ids(world.suite)
    assert {(j["outcome"], j["length_difference"]) for j in judged["judgments"]} == {(0.5, 0)}
    with pytest.raises(ValueError, match="judged answers are missing"):
        evaluation.win_rates(world.suite, {}, answers)


def _judged_ids(include_path):
    manifest = evaluation.read_manifest(include_path)
    return [doc["id"] for doc in suite.docs(suite.JUDGE_TASK.name, manifest["n_per_task"], manifest["seed"])]
