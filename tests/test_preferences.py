"""UltraFeedback binarized, read from a local copy laid out as the hub repository is, into the files cells train on."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from onmerge.cli import main
from onmerge.preferences import check_rows, from_ultrafeedback, read_rows, write_splits, write_ultrafeedback

# The dataset card's split configuration, as HuggingFaceH4/ultrafeedback_binarized declares it (abridged to the
# preference splits): a snapshot of the repository loads with `load_dataset(folder, split="train_prefs")`.
CARD = """\
---
configs:
- config_name: default
  data_files:
  - split: train_prefs
    path: data/train_prefs-*
  - split: test_prefs
    path: data/test_prefs-*
---
"""


def _row(i: int, *, chosen_last: str = "assistant") -> dict:
    prompt = f"question {i}?"
    return {
        "prompt": prompt,
        "prompt_id": f"{i:064x}",
        "chosen": [{"content": prompt, "role": "user"}, {"content": f"good answer {i}", "role": chosen_last}],
        "rejected": [{"content": prompt, "role": "user"}, {"content": f"bad answer {i}", "role": "assistant"}],
        "messages": [{"content": prompt, "role": "user"}, {"content": f"good answer {i}", "role": "assistant"}],
        "score_chosen": 8.0,
        "score_rejected": 3.5,
    }


def _snapshot(folder: Path, splits: dict[str, list[dict]]) -> Path:
    (folder / "data").mkdir(parents=True)
    (folder / "README.md").write_text(CARD)
    for split, rows in splits.items():
        pd.DataFrame(rows).to_parquet(folder / "data" / f"{split}-00000-of-00001.parquet")
    return folder


def test_a_local_snapshot_becomes_paired_and_unpaired_training_files(tmp_path):
    source = _snapshot(
        tmp_path / "ultrafeedback", {"train_prefs": [_row(0), _row(1), _row(2)], "test_prefs": [_row(9)]}
    )
    out = tmp_path / "preferences"
    command = ["ultrafeedback", "--dataset", str(source), "--train-split", "train_prefs", "--test-split", "test_prefs"]
    main([*command, "--out-dir", str(out)])  # what the workflow's `ultrafeedback` rule runs
    train = json.loads((out / "train.json").read_text())
    assert train[1] == {
        "prompt": [{"role": "user", "content": "question 1?"}],
        "chosen": [{"role": "assistant", "content": "good answer 1"}],
        "rejected": [{"role": "assistant", "content": "bad answer 1"}],
    }
    assert [row["prompt"][0]["content"] for row in json.loads((out / "test.json").read_text())] == ["question 9?"]
    unpaired = json.loads((out / "train_unpaired.json").read_text())
    assert len(unpaired) == 2 * len(train)
    assert unpaired[:2] == [
        {"prompt": train[0]["prompt"], "completion": train[0]["chosen"], "label": True},
        {"prompt": train[0]["prompt"], "completion": train[0]["rejected"], "label": False},
    ]


def test_a_row_that_does_not_end_with_the_answer_is_refused_by_position(tmp_path):
    rows = [_row(0), _row(1, chosen_last="user")]
    source = _snapshot(tmp_path / "ultrafeedback", {"train_prefs": rows, "test_prefs": [_row(9)]})
    with pytest.raises(ValueError, match=r"\[train_prefs\] row 1: chosen does not end with an assistant message"):
        write_ultrafeedback(str(source), "train_prefs", "test_prefs", tmp_path / "preferences")
    assert not (tmp_path / "preferences" / "train.json").exists()


def test_a_split_the_snapshot_lacks_is_named(tmp_path):
    source = _snapshot(tmp_path / "ultrafeedback", {"train_prefs": [_row(0)], "test_prefs": [_row(9)]})
    with pytest.raises(ValueError, match="train_gen"):
        write_ultrafeedback(str(source), "train_gen", "test_prefs", tmp_path / "preferences")


def test_the_written_files_read_back_as_the_rows_trained_on(tmp_path):
    rows = [from_ultrafeedback(_row(i), f"row {i}") for i in range(3)]
    write_splits(tmp_path, {"train": rows, "test": rows[:1]})
    assert read_rows(tmp_path / "train.json") == rows
    check_rows(read_rows(tmp_path / "train_unpaired.json"), "unpaired", "train_unpaired.json")


def test_a_pair_that_teaches_nothing_fails_the_step_that_writes_it(tmp_path):
    rows = [from_ultrafeedback(_row(i), f"row {i}") for i in range(3)]
    rows[2] = rows[2] | {"rejected": rows[2]["chosen"]}
    with pytest.raises(ValueError, match=r"test\.json: row 2: chosen and rejected are the same answer"):
        write_splits(tmp_path, {"train": rows[:2], "test": rows})
    assert not list(tmp_path.iterdir()), "no split was written"
