"""Per-item outcomes of an evaluation: each item's score for every metric of `metrics.json`.

Every model of a preset answers the same items, so a difference between two models is best estimated from paired
items (`onmerge.paired`); these files are what that estimate, and any audit of a score, reads. One file per
evaluated model, `<model>/eval/items.json.gz`:

    {"<metric, as metrics.json names it>": {"ids": [...], "scores": [...], "weights": [...]}, ...}

A metric's value is the weighted mean of its items' scores. Weights are 1 except where lm-eval pools several
outcomes per item: IFEval's instruction-level accuracy counts each instruction, so a prompt's score is the fraction
of its instructions followed and its weight their number. A group (MMLU, the function-calling sets) pools its
tasks' items, each id prefixed by its task. When written, every metric's weighted mean is checked against the value
lm-eval reported, so an items file always agrees with its metrics file.

The file is gzip without a timestamp, so the same evaluation gives the same bytes.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onmerge.atomic import atomic_file

ITEMS_FILE = "items.json.gz"
_TOLERANCE = 1e-9  # a weighted mean of the items against lm-eval's own aggregate: same numbers, other summing order


@dataclass(frozen=True)
class Items:
    """One metric's outcomes, one entry per item, in a fixed order of `ids`."""

    ids: tuple[str, ...]
    scores: np.ndarray
    weights: np.ndarray

    @property
    def value(self) -> float:
        return float(np.average(self.scores, weights=self.weights))

    def aligned(self, ids: tuple[str, ...]) -> Items:
        """The same outcomes in the order of `ids`, which must name exactly these items (paired comparisons)."""
        order = positions(self.ids, ids)
        return Items(ids, self.scores[order], self.weights[order])


def positions(own: tuple[str, ...], ids: tuple[str, ...]) -> np.ndarray:
    """Where each of `ids` stands in `own`; the two must name the same items, else they cannot be paired."""
    index = {item: position for position, item in enumerate(own)}
    if len(ids) != len(index) or len(own) != len(index) or any(item not in index for item in ids):
        differing = sorted(set(ids) ^ set(index))[:5]
        raise ValueError(f"two evaluations scored different items (e.g. {differing}): they cannot be paired")
    return np.fromiter((index[item] for item in ids), dtype=np.int64, count=len(ids))


def sample_items(samples: Iterable[Mapping[str, Any]], metric: str, filter_name: str = "none", prefix: str = ""):
    """(ids, scores, weights) of one metric from lm-eval's logged samples of one task, under one filter.

    An item's id is its doc's own `id` where it has one (every onmerge task's doc), else lm-eval's doc index. A
    sample whose score is a list (IFEval's instruction level) counts as its mean, weighted by its length.
    """
    ids, scores, weights = [], [], []
    for sample in sorted(samples, key=lambda sample: sample["doc_id"]):
        if sample.get("filter", "none") != filter_name or metric not in sample:
            continue
        score = sample[metric]
        outcomes = [float(value) for value in score] if isinstance(score, list | tuple) else [float(score)]
        ids.append(f"{prefix}{sample['doc'].get('id', sample['doc_id'])}")
        scores.append(sum(outcomes) / len(outcomes) if outcomes else 0.0)
        weights.append(float(len(outcomes)))
    return ids, scores, weights


def lm_eval_items(results: Mapping[str, Any], names: Iterable[str]) -> dict[str, dict[str, list]]:
    """Items of each metric `names` lists, spelled as `lm_evaluation.task_metrics` spells it
    (`<task>/<metric>[,<filter>]`); a group's metric pools its tasks' items, recursively."""
    if "samples" not in results:
        raise ValueError("lm-eval results without logged samples: run with log_samples=True to keep the items")
    items = {}
    for name in names:
        task, _, metric_filter = name.partition("/")
        metric, _, filter_name = metric_filter.partition(",")
        ids, scores, weights = [], [], []
        leaves = _leaf_tasks(results, task)
        for leaf in leaves:
            prefix = f"{leaf}/" if leaf != task else ""
            leaf_ids, leaf_scores, leaf_weights = sample_items(
                results["samples"][leaf], metric, filter_name or "none", prefix
            )
            ids += leaf_ids
            scores += leaf_scores
            weights += leaf_weights
        if not ids:
            raise ValueError(f"lm-eval logged no per-item {metric!r} for {task!r}: cannot keep its items")
        items[name] = {"ids": ids, "scores": scores, "weights": weights}
    return items


def _leaf_tasks(results: Mapping[str, Any], task: str) -> list[str]:
    subtasks = results.get("group_subtasks", {}).get(task)
    if not subtasks:
        return [task]
    return [leaf for subtask in subtasks for leaf in _leaf_tasks(results, subtask)]


def check_against(items: Mapping[str, Mapping[str, list]], metrics: Mapping[str, Mapping[str, float]]) -> None:
    """Every metric's weighted item mean equals the value the evaluation reported (ValueError naming it if not)."""
    for name, entry in items.items():
        reported = metrics[name]["value"]
        mean = float(np.average(entry["scores"], weights=entry["weights"]))
        if not math.isclose(mean, reported, rel_tol=_TOLERANCE, abs_tol=_TOLERANCE):
            raise ValueError(
                f"{name}: the mean over its {len(entry['ids'])} items is {mean!r}, the evaluation reported"
                f" {reported!r}: its aggregation is not a mean over items, so it cannot be compared item by item"
            )


def write_items(path: Path, items: Mapping[str, Mapping[str, list]], metrics: Mapping[str, Mapping[str, float]]):
    """Check the items against the metrics, then write them atomically (gzip, no timestamp: same bytes each run)."""
    check_against(items, metrics)
    payload = json.dumps({name: dict(items[name]) for name in sorted(items)}, separators=(",", ":"))
    with atomic_file(path) as partial:
        partial.write_bytes(gzip.compress(payload.encode(), mtime=0))


def read_items(path: Path) -> dict[str, Items]:
    """Every metric's items from an items file."""
    with gzip.open(path, "rt") as stream:
        document = json.load(stream)
    return {
        name: Items(
            tuple(str(item) for item in entry["ids"]),
            np.asarray(entry["scores"], dtype=float),
            np.asarray(entry["weights"], dtype=float),
        )
        for name, entry in document.items()
    }
