"""Preference data for the training cells: trl's conversational format, the unpaired view KTO trains on, and the
UltraFeedback binarized loader of the paper presets.

Every cell reads `train.json` (prompt, chosen, rejected as message lists) or, for KTO, `train_unpaired.json`
(prompt, completion, label): the same files whether the toy world or UltraFeedback wrote them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from onmerge.atomic import write_json

# UltraFeedback binarized (HuggingFaceH4/ultrafeedback_binarized): `chosen` and `rejected` are whole conversations,
# the user's prompt first and the rated answer last.
ULTRAFEEDBACK_FIELDS = ("prompt", "chosen", "rejected")


# What each cell's trainer reads from a row: trl's conversational pairs (DPO, IPO), or KTO's unpaired completions.
TRAINING_FIELDS = {"paired": ("prompt", "chosen", "rejected"), "unpaired": ("prompt", "completion", "label")}


def check_rows(rows: list[dict[str, Any]], view: str, where: str) -> None:
    """ValueError naming the first row that lacks a field the trainer reads (`view`: "paired" or "unpaired")."""
    if not rows:
        raise ValueError(f"{where}: no preference rows")
    fields = TRAINING_FIELDS[view]
    for i, row in enumerate(rows):
        missing = [name for name in fields if name not in row]
        if missing:
            raise ValueError(f"{where}: row {i} lacks {missing} (a {view} preference row has {list(fields)})")


def unpaired(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """KTO's unpaired view: each pair becomes a desirable and an undesirable completion of its prompt."""
    return [
        {"prompt": row["prompt"], "completion": row[side], "label": side == "chosen"}
        for row in rows
        for side in ("chosen", "rejected")
    ]


def write_splits(folder: Path, splits: dict[str, list[dict[str, Any]]]) -> None:
    """Each split as `<split>.json` and `<split>_unpaired.json`; `train.json` last: its presence means done."""
    for split in sorted(splits, key=lambda name: name == "train"):
        write_json(Path(folder) / f"{split}_unpaired.json", unpaired(splits[split]))
        write_json(Path(folder) / f"{split}.json", splits[split])


def from_ultrafeedback(row: dict[str, Any], where: str) -> dict[str, Any]:
    """One UltraFeedback binarized row in trl's conversational format; ValueError names the row and field."""
    missing = [name for name in ULTRAFEEDBACK_FIELDS if name not in row]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing} (UltraFeedback binarized has {ULTRAFEEDBACK_FIELDS})")
    answers = {}
    for side in ("chosen", "rejected"):
        conversation = row[side]
        if not conversation or conversation[-1].get("role") != "assistant":
            raise ValueError(f"{where}: {side} does not end with an assistant message")
        answers[side] = [{"role": "assistant", "content": conversation[-1]["content"]}]
    return {"prompt": [{"role": "user", "content": row["prompt"]}], **answers}


def write_ultrafeedback(dataset: str, train_split: str, test_split: str, out_dir: Path) -> None:
    """Load UltraFeedback binarized (a hub id or a local folder in its schema) and write both splits.

    A local folder is read through a cache of its own, discarded after: datasets' shared cache keys local files
    by folder name and modification times, so an edited or replaced snapshot could come back as an earlier one.
    """
    from datasets import load_dataset

    with tempfile.TemporaryDirectory(prefix="onmerge-ultrafeedback-") as scratch:
        cache_dir = scratch if Path(dataset).is_dir() else None
        splits = {}
        for name, split in (("train", train_split), ("test", test_split)):
            rows = load_dataset(dataset, split=split, cache_dir=cache_dir)
            splits[name] = [from_ultrafeedback(row, f"{dataset} [{split}] row {i}") for i, row in enumerate(rows)]
    write_splits(out_dir, splits)
