"""The toy world's data steps as the workflow's rules run them (`onmerge toy preferences`, `onmerge toy suite`), and
the toy judge's win rates over that suite."""

import json

import pytest

from onmerge.cli import main
from onmerge.toyworld import evaluation, suite


@pytest.mark.parametrize(("pairs", "test_pairs"), [(32, 4), (7, 1)])  # test is an eighth of train, at least one
def test_preferences_hold_disjoint_train_and_test_prompts(tmp_path, pairs, test_pairs):
    main(["toy", "preferences", "--pairs", str(pairs), "--seed", "0", "--out-dir", str(tmp_path)])
    preferences = {path.name: json.loads(path.read_text()) for path in tmp_path.iterdir()}
    assert {name: len(rows) for name, rows in preferences.items()} == {
        "train.json": pairs,
        "test.json": test_pairs,
        "train_unpaired.json": 2 * pairs,  # one desirable and one undesirable row per pair, for KTO
        "test_unpaired.json": 2 * test_pairs,
    }
    train_prompts = {row["prompt"][0]["content"] for row in preferences["train.json"]}
    assert not train_prompts & {row["prompt"][0]["content"] for row in preferences["test.json"]}


def test_answers_judged_against_themselves_tie_on_every_judged_prompt(tmp_path):
    main(["toy", "suite", "--docs-per-task", "4", "--seed", "0", "--out", str(tmp_path / "suite")])
    manifest = evaluation.read_manifest(tmp_path / "suite")
    judged_ids = [doc["id"] for doc in suite.docs(suite.JUDGE_TASK.name, manifest["n_per_task"], manifest["seed"])]
    assert len(judged_ids) == 4
    answers = {doc_id: f"answer {doc_id}" for doc_id in judged_ids}
    judged = evaluation.win_rates(tmp_path / "suite", answers, answers)
    assert {name: entry["value"] for name, entry in judged["metrics"].items()} == {
        "alpacaeval_lc": 50.0,
        "alpacaeval_raw": 50.0,
    }
    assert [judgment["id"] for judgment in judged["judgments"]] == judged_ids
    assert {(judgment["outcome"], judgment["length_difference"]) for judgment in judged["judgments"]} == {(0.5, 0)}
    with pytest.raises(ValueError, match="judged answers are missing"):
        evaluation.win_rates(tmp_path / "suite", {}, answers)
