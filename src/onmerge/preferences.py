"""Preference data for the training cells: trl's conversational format, the unpaired view KTO trains on, and the
UltraFeedback binarized loader of the paper presets.

Every cell reads `train.json` (prompt, chosen, rejected as message lists) or, for KTO, `train_unpaired.json`
(prompt, completion, label): the same files whether the toy world or UltraFeedback wrote them.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

from onmerge.atomic import write_json

# UltraFeedback binarized (HuggingFaceH4/ultrafeedback_binarized): `chosen` and `rejected` are whole conversations,
# the user's prompt first and the rated answer last.
ULTRAFEEDBACK_FIELDS = ("prompt", "chosen", "rejected")


# What each cell's trainer reads from a row: trl's conversational pairs (DPO, IPO), or KTO's unpaired completions.
TRAINING_FIELDS = {"paired": ("prompt", "chosen", "rejected"), "unpaired": ("prompt", "completion", "label")}


def read_rows(path: Path) -> list[Any]:
    """A preference file's rows (a JSON list), refused with a ValueError naming the file when it is not UTF-8, is
    cut short or otherwise not JSON, or is not a list; `check_rows` then checks the rows themselves."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(f"{path}: not UTF-8 text (byte 0x{data[error.start]:02x} on line {line})") from None
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as error:
        at_end = error.pos >= len(text.rstrip()) or error.msg.startswith("Unterminated string")
        cut = " (the file ends mid-JSON: truncated?)" if at_end else ""
        raise ValueError(f"{path}: not JSON at line {error.lineno}, column {error.colno}: {error.msg}{cut}") from None
    if not isinstance(rows, list):
        raise ValueError(f"{path}: a JSON list of preference rows expected, got {_json_kind(rows)}")
    return rows


def check_rows(rows: list[Any], view: str, where: str) -> None:
    """ValueError naming the first row the trainer cannot learn from (see `check_row`). Rows repeated whole are
    reported as a warning and kept: real data repeats pairs (the toy world's 1024 training pairs hold 17 repeats),
    and training on a repeat is sound, only weighted twice. `view`: "paired" or "unpaired"."""
    if not rows:
        raise ValueError(f"{where}: no preference rows")
    for i, row in enumerate(rows):
        check_row(row, view, f"{where}: row {i}")
    _warn_of_repeats(rows, where)


def check_row(row: Any, view: str, where: str) -> None:
    """ValueError naming the field when a row is not an object, lacks a field the trainer reads, holds a text that is
    empty or not a string (or a list of chat messages), a label that is not true or false, or, paired, the same
    answer as both chosen and rejected (a pair that teaches nothing)."""
    fields = TRAINING_FIELDS[view]
    if not isinstance(row, dict):
        raise ValueError(f"{where} is {_json_kind(row)}, not an object with {list(fields)}")
    missing = [name for name in fields if name not in row]
    if missing:
        raise ValueError(f"{where} lacks {missing} (a {view} preference row has {list(fields)})")
    for name in fields:
        problem = _label_problem(row[name]) if name == "label" else _text_problem(row[name])
        if problem:
            raise ValueError(f"{where}: {name} {problem}")
    if view == "paired" and row["chosen"] == row["rejected"]:
        raise ValueError(f"{where}: chosen and rejected are the same answer")


def _text_problem(value: Any) -> str | None:
    """Why a prompt or answer cannot be trained on (trl takes a string or a list of chat messages), or None."""
    if isinstance(value, str):
        return None if value.strip() else "is empty"
    if not isinstance(value, list) or not value:
        return f"is {value!r:.40}, not a string or a list of messages"
    for j, message in enumerate(value):
        if not (isinstance(message, dict) and all(isinstance(message.get(key), str) for key in ("role", "content"))):
            return f"message {j} is not an object with a string role and content"
        if not message["content"].strip():
            return f"message {j} has empty content"
    return None


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "true or false", type(None): "null"}
    return kinds.get(type(value), "a number")


def _label_problem(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"is {value!r:.40}, not true or false"


def _warn_of_repeats(rows: list[dict[str, Any]], where: str) -> None:
    """Rows repeated whole, reported (the first five named) and kept."""
    first: dict[str, int] = {}
    repeats = []
    for i, row in enumerate(rows):
        key = json.dumps(row, sort_keys=True)
        if key in first:
            repeats.append(f"row {i} repeats row {first[key]}")
        first.setdefault(key, i)
    if repeats:
        warnings.warn(f"{where}: {len(repeats)} duplicate row(s), kept: {', '.join(repeats[:5])}", stacklevel=3)


def unpaired(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """KTO's unpaired view: each pair becomes a desirable and an undesirable completion of its prompt."""
    return [
        {"prompt": row["prompt"], "completion": row[side], "label": side == "chosen"}
        for row in rows
        for side in ("chosen", "rejected")
    ]


def write_splits(folder: Path, splits: dict[str, list[dict[str, Any]]]) -> None:
    """Each split as `<split>.json` and `<split>_unpaired.json`; `train.json` last: its presence means done.

    The rows are checked first, so a bad pair fails the step that made it rather than every training cell.
    """
    for split, rows in splits.items():
        check_rows(rows, "paired", f"{Path(folder) / split}.json")
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
        last = conversation[-1] if isinstance(conversation, list) and conversation else None
        if not isinstance(last, dict) or last.get("role") != "assistant":
            raise ValueError(f"{where}: {side} does not end with an assistant message")
        answers[side] = [{"role": "assistant", "content": last.get("content")}]
    converted = {"prompt": [{"role": "user", "content": row["prompt"]}], **answers}
    check_row(converted, "paired", where)
    return converted


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
