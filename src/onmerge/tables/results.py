"""results.csv, looked up by (model path, metric): a row's seed mean and its uncertainties."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from onmerge.aggregate import mean_with_stderr
from onmerge.grid import Model


@dataclass(frozen=True)
class Estimate:
    value: float
    stderr: float  # lm-eval's standard error of the seed mean (NaN where the metric has none)
    seed_sd: float  # standard deviation over seeds (NaN with one seed)
    seeds: int


class Results:
    """results.csv, looked up by (model path, metric)."""

    def __init__(self, table: pd.DataFrame):
        self._values = {
            (path, metric): (float(value), float(stderr))
            for path, metric, value, stderr in table[["path", "metric", "value", "stderr"]].itertuples(index=False)
        }

    @classmethod
    def read(cls, path: Path) -> Results:
        return cls(pd.read_csv(path))

    def estimate(self, models: Iterable[Model], metric: str) -> Estimate | None:
        """The seed mean of `metric` over `models` (one per seed), or None if any of them lacks it."""
        found = [self._values.get((model.path, metric)) for model in models]
        if not found or any(entry is None for entry in found):
            return None
        mean, stderr = mean_with_stderr(found)
        count = len(found)
        sd = math.sqrt(sum((value - mean) ** 2 for value, _ in found) / (count - 1)) if count > 1 else math.nan
        return Estimate(mean, stderr, sd, count)

    def lacking(self, models: Iterable[Model], metric: str) -> list[str]:
        return [model.path for model in models if (model.path, metric) not in self._values]
