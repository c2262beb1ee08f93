"""The paper's aggregation rule: category = mean of its benchmark columns, Benchmark Avg. = mean of the 7 categories.

(Checked against every row of the paper's Table 4.) Standard errors propagate as for means of independent
estimates: se(mean of k) = sqrt(sum se_i^2) / k.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

CATEGORIES = (
    "math",
    "code",
    "instruction_following",
    "reading_comprehension",
    "knowledge",
    "agent",
    "code_switching",
)


def mean_with_stderr(estimates: list[tuple[float, float]]) -> tuple[float, float]:
    """Mean of independent (value, stderr) estimates and its standard error."""
    count = len(estimates)
    value = sum(v for v, _ in estimates) / count
    return value, math.sqrt(sum(se * se for _, se in estimates)) / count


def benchmark_average(
    columns: Mapping[str, tuple[float, float]], column_category: Mapping[str, str]
) -> dict[str, tuple[float, float]]:
    """Category scores and `benchmark_avg` from per-column (value, stderr); every column must be present.

    A missing column is an error, never silently dropped: an average over fewer categories is another number.
    """
    missing = sorted(set(column_category) - set(columns))
    if missing:
        raise ValueError(f"cannot aggregate: missing benchmark columns {missing}")
    by_category: dict[str, list[tuple[float, float]]] = {category: [] for category in CATEGORIES}
    for column, category in column_category.items():
        by_category[category].append(columns[column])
    scores = {category: mean_with_stderr(estimates) for category, estimates in by_category.items()}
    scores["benchmark_avg"] = mean_with_stderr(list(scores.values()))
    return scores


def results_table(root: Path, models: list[str]) -> pd.DataFrame:
    """One tidy row per (model, metric): the model's identity (onmerge.grid), the value and its standard error.

    Metrics are each benchmark column, the categories and `benchmark_avg` (the paper's rule above, when the model was
    evaluated on every column of the toy suite), and the judged rewards. Reads `<model>/eval/metrics.json` and,
    where the judge ran, `<model>/eval/alpacaeval.json`; a model without its evaluation is an error, never a gap.
    """
    from onmerge.grid import describe, parse
    from onmerge.toyworld.world import COLUMN_CATEGORY

    rows = []
    for path in models:
        identity = {"path": path} | describe(parse(path))
        evaluation = Path(root) / path / "eval"
        metrics = json.loads((evaluation / "metrics.json").read_text())["metrics"]
        estimates = {name: (entry["value"], entry["stderr"]) for name, entry in metrics.items()}
        if set(COLUMN_CATEGORY) <= set(estimates):
            estimates |= benchmark_average(estimates, COLUMN_CATEGORY)
        judged = evaluation / "alpacaeval.json"
        if judged.exists():
            estimates |= {name: (value, math.nan) for name, value in json.loads(judged.read_text()).items()}
        for metric, (value, stderr) in estimates.items():
            rows.append(identity | {"metric": metric, "value": value, "stderr": stderr})
    return pd.DataFrame(rows)
