"""The paper's aggregation rule: category = mean of its benchmark columns, Benchmark Avg. = mean of the 7 categories.

(Checked against every row of the paper's Table 4.) Standard errors propagate as for means of independent
estimates: se(mean of k) = sqrt(sum se_i^2) / k.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

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
