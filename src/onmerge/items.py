"""Per-item outcomes of an evaluation, and its per-sample records for audit.

Every model of a preset answers the same items, so a difference between two models is best estimated from paired
items (`onmerge.paired`). One file per evaluated model, `<model>/eval/items.json.gz`:

    {"<metric, as metrics.json names it>": {"ids": [...], "scores": [...], "weights": [...]}, ...}

A metric's value is the weighted mean of its items' scores. Weights are 1 except where lm-eval pools several
outcomes per item: IFEval's instruction-level accuracy counts each instruction, so a prompt's score is the fraction
of its instructions followed and its weight their number. A group (MMLU, the function-calling sets) pools its
tasks' items, each id prefixed by its task. When written, every metric's weighted mean is checked against the value
lm-eval reported, so an items file always agrees with its metrics file.

Beside it, from the same logged samples, `<model>/eval/samples.jsonl.gz` holds one record per scored sample: the
task, the doc id, the prompt as the model saw it, the response, the answer the scorer read from it (the number, the
program that ran, the calls) and its score on each metric, so that any score can be traced to the answers that made
it (`onmerge failures` prints a column's failed samples).

Both files are gzip without a timestamp, so the same evaluation gives the same bytes.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onmerge.atomic import atomic_file

ITEMS_FILE = "items.json.gz"
SAMPLES_FILE = "samples.jsonl.gz"
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


@dataclass(frozen=True)
class Source:
    """Where a metric's per-item scores lie in lm-eval's logged samples."""

    task: str  # a task, or a group whose tasks' samples are pooled
    metric: str  # the key of the score in each sample
    filter: str = "none"


def lm_eval_source(name: str) -> Source:
    """The source of a metric spelled as `lm_evaluation.task_metrics` spells it: `<task>/<metric>[,<filter>]`."""
    task, _, metric_filter = name.partition("/")
    metric, _, filter_name = metric_filter.partition(",")
    return Source(task, metric, filter_name or "none")


# (task, doc, response) -> what the task's scorer reads from the response (a number, a program, calls), or None
# where it reads the whole response.
Extractor = Callable[[str, Mapping[str, Any], str], str | None]


def outcomes(
    results: Mapping[str, Any], sources: Mapping[str, Source], extract: Extractor
) -> tuple[dict[str, dict[str, list]], list[dict[str, Any]]]:
    """Each metric's items, and one audit record per scored sample, both from lm-eval's logged samples.

    An item's id is its doc's own `id` where it has one (every onmerge task's doc), else lm-eval's doc index,
    prefixed by its task inside a group. A sample whose score is a list (IFEval's instruction level) counts as its
    mean, weighted by its length. A record holds the task, the doc id, the filter, the prompt as the model saw it
    (chat template applied), the response, the answer the scorer read from it, and its score for each metric.
    """
    if "samples" not in results:
        raise ValueError("lm-eval results without logged samples: run with log_samples=True to keep the items")
    items: dict[str, dict[str, list]] = {}
    records: dict[tuple[str, str, str], dict[str, Any]] = {}
    for name, source in sources.items():
        entry: dict[str, list] = {"ids": [], "scores": [], "weights": []}
        for task in _leaf_tasks(results, source.task):
            for sample in sorted(results["samples"][task], key=lambda sample: sample["doc_id"]):
                if sample.get("filter", "none") != source.filter or source.metric not in sample:
                    continue
                doc_id = str(sample["doc"].get("id", sample["doc_id"]))
                score = _plain(sample[source.metric])
                values = [float(value) for value in score] if isinstance(score, list) else [float(score)]
                entry["ids"].append(doc_id if task == source.task else f"{task}/{doc_id}")
                entry["scores"].append(sum(values) / len(values) if values else 0.0)
                entry["weights"].append(float(len(values)))
                key = (task, doc_id, source.filter)
                if key not in records:
                    records[key] = _record(task, doc_id, sample, extract)
                records[key]["scores"][name] = score
        if not entry["ids"]:
            raise ValueError(f"lm-eval logged no per-item {source.metric!r} for {source.task!r}: cannot keep its items")
        items[name] = entry
    return items, [records[key] for key in sorted(records)]


def _record(task: str, doc_id: str, sample: Mapping[str, Any], extract: Extractor) -> dict[str, Any]:
    """A sample as its audit record (its scores are filled in by the caller)."""
    arguments = sample["arguments"]
    if len(arguments) > 1:  # multiple choice: one request per choice; the answer is the likeliest choice
        likelihoods = [float(response[0][0]) for response in sample["resps"]]
        response = arguments[likelihoods.index(max(likelihoods))][1]
    else:
        response = sample["resps"][0][0]
    record = {"task": task, "doc_id": doc_id, "filter": sample.get("filter", "none"), "prompt": arguments[0][0]}
    return record | {"response": response, "extracted": extract(task, sample["doc"], response), "scores": {}}


def _leaf_tasks(results: Mapping[str, Any], task: str) -> list[str]:
    subtasks = results.get("group_subtasks", {}).get(task)
    if not subtasks:
        return [task]
    return [leaf for subtask in subtasks for leaf in _leaf_tasks(results, subtask)]


def _plain(score: Any) -> Any:
    """A logged score as JSON writes it (lm-eval may log numpy scalars)."""
    if isinstance(score, list | tuple):
        return [_plain(value) for value in score]
    return score.item() if hasattr(score, "item") else score


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
    _write_gzipped(path, json.dumps({name: dict(items[name]) for name in sorted(items)}, separators=(",", ":")))


def write_samples(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    """The audit records as gzip'd JSON lines, atomically (no timestamp: the same bytes each run)."""
    _write_gzipped(path, "".join(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n" for record in records))


def _write_gzipped(path: Path, text: str) -> None:
    """`text` gzip'd at `path`, atomically; no timestamp in the header, so the same text gives the same bytes."""
    with atomic_file(path) as partial:
        partial.write_bytes(gzip.compress(text.encode(), mtime=0))


def read_samples(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as stream:
        return [json.loads(line) for line in stream]


def failed(record: Mapping[str, Any], metric: str) -> bool:
    """Whether a sample lost points on `metric` (a list of outcomes: any of them)."""
    score = record["scores"][metric]
    return any(not value for value in score) if isinstance(score, list) else float(score) < 1.0


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
