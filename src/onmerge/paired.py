"""Differences between models that answered the same items: paired bootstrap intervals, seeds as the outer level.

Every model of a preset is scored on the same items, so the noise of "which items happened to be asked" is shared
by every model and cancels in a difference; an interval that ignores the pairing (adding two standard errors in
quadrature) is far too wide for close models, and one that ignores seeds is too narrow when training is noisy.

The estimate: a contrast is a weighted sum of terms, each a row of the tables with its model for each seed (most
often `+1 * treatment - 1 * control`). Its value is the sum of each term's seed mean. Its interval comes from a
two-level bootstrap, in each resample:
- outer level, seeds: each term's seeds are drawn with replacement (independently per term: seed s of one method
  has nothing in common with seed s of another);
- inner level, items: each benchmark column's items, each judged benchmark's prompts, are drawn with replacement,
  the same draw for every model (the pairing), and separately per column (a stratified bootstrap), so that the
  paper's aggregation (columns -> categories -> Benchmark Avg., `onmerge.aggregate`) is respected: a category or the
  Benchmark Avg. is the same linear combination of column means in every resample.
- a judged benchmark is resampled as its world reads it (`World.judged`): the toy length-controlled win rate refits
  its logistic model in every resample (`toyworld.judge.WinRateMeasure`); the paper's AlpacaEval 2.0 LC resamples
  alpaca_eval's per-instruction predicted preferences (its own standard error's reading), since refitting its
  cross-validated GLM thousands of times per model would cost hours; MT-Bench is a mean over questions.
The interval is the percentile interval of the resampled contrast. Item draws depend only on the measure's name and
the resample, seed draws only on the contrast, all from fixed seeds: a rerun gives the same bytes.

With one seed per term the outer level is empty and the interval covers only the choice of items; with few seeds
the seed bootstrap is coarse (3 seeds give 10 distinct multisets) and somewhat narrow: verdicts say how many seeds.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from onmerge.aggregate import CATEGORIES, PAPER_COLUMNS
from onmerge.items import ITEMS_FILE, Items, read_items
from onmerge.seeding import stable_seed
from onmerge.worlds import World

RESAMPLES = 10_000
BOOTSTRAP_SEED = 20240528  # the paper's arXiv date: any fixed number would do
_CHUNK = 1_000  # resamples drawn at a time, so that a 14k-item column never holds a 10k x 14k index matrix


class Measure(Protocol):
    """One model's outcomes on one benchmark's items: its value, and its value on resampled items."""

    ids: tuple[str, ...]

    @property
    def value(self) -> float: ...

    def resampled(self, draws: np.ndarray) -> np.ndarray:
        """The value on each row of `draws` (item positions in `ids`' order, with repeats)."""
        ...

    def aligned(self, ids: tuple[str, ...]) -> Measure:
        """The same outcomes in the order of `ids` (the same items, else ValueError)."""
        ...


@dataclass(frozen=True)
class MeanMeasure:
    """A mean over items (a benchmark column, MT-Bench's prompts), times `scale` (percent for the columns)."""

    items: Items
    scale: float = 1.0

    @property
    def ids(self) -> tuple[str, ...]:
        return self.items.ids

    @property
    def value(self) -> float:
        return self.items.value * self.scale

    def resampled(self, draws: np.ndarray) -> np.ndarray:
        weights = self.items.weights[draws]
        return (self.items.scores[draws] * weights).sum(axis=1) / weights.sum(axis=1) * self.scale

    def aligned(self, ids: tuple[str, ...]) -> MeanMeasure:
        return MeanMeasure(self.items.aligned(ids), self.scale)


# Every metric a verdict or Table 1 compares, as a linear combination of measures (the paper's aggregation rule).
def metric_weights(metric: str) -> dict[str, float]:
    """The measures a metric averages and their weights: a column is itself, a category the mean of its columns,
    the Benchmark Avg. the mean of the 7 categories; the judged benchmarks are their own measure."""
    if metric in PAPER_COLUMNS or metric in ("mt_bench", "alpacaeval2_lc"):
        return {metric: 1.0}
    if metric in CATEGORIES:
        columns = [column for column, category in PAPER_COLUMNS.items() if category == metric]
        return {column: 1.0 / len(columns) for column in columns}
    if metric == "benchmark_avg":
        weights = {}
        for category in CATEGORIES:
            weights |= {column: w / len(CATEGORIES) for column, w in metric_weights(category).items()}
        return weights
    raise ValueError(f"no paired estimate for metric {metric!r}")


def read_measures(evaluation: Path, world: World) -> dict[str, Measure]:
    """A model's measures from its eval folder: the 14 columns (percent), and the toy MT-Bench, from
    `items.json.gz`; each judged benchmark from its judged file, as its world reads it (`World.judged`)."""
    paper_metrics = world.paper_metrics()
    measures: dict[str, Measure] = {}
    for name, items in read_items(Path(evaluation) / ITEMS_FILE).items():
        metric = paper_metrics.get(name, name)
        if metric in PAPER_COLUMNS or metric == "mt_bench":
            measures[metric] = MeanMeasure(items, 100.0 if metric in PAPER_COLUMNS else 1.0)
    for judged in world.judged:
        path = Path(evaluation) / f"{judged.name}.json"
        if path.exists():
            measures[judged.metric] = judged.measure(json.loads(path.read_text())["judgments"])
    return measures


@dataclass(frozen=True)
class Estimate:
    """A contrast's value, its bootstrap interval at `level`, and the seeds behind each term."""

    value: float
    low: float
    high: float
    level: float
    seeds: tuple[int, ...]


Term = tuple[float, tuple[str, ...]]  # (weight, the row's model for each seed, by path)


class PairedBootstrap:
    """Paired contrasts between the evaluated models of one preset (module docstring).

    `measures(path)` gives a model's measures (read once per model); each model's resampled values are computed
    once per measure and reused by every contrast it appears in.
    """

    def __init__(
        self,
        measures: Callable[[str], Mapping[str, Measure]],
        resamples: int = RESAMPLES,
        seed: int = BOOTSTRAP_SEED,
    ):
        self._read = functools.cache(measures)
        self._resamples = resamples
        self._seed = seed
        self._cache: dict[tuple[str, str], tuple[float, np.ndarray]] = {}
        self._ids: dict[str, tuple[str, ...]] = {}

    def contrast(self, terms: Sequence[Term], metric: str, level: float = 0.95) -> Estimate:
        """The contrast `sum(weight * seed mean of the row)` of `metric`, with its percentile interval."""
        if not 0 < level < 1:
            raise ValueError(f"interval level {level} is not in (0, 1)")
        weights = metric_weights(metric)
        rng = np.random.default_rng(stable_seed(self._seed, metric, *(f"{w}*{','.join(m)}" for w, m in terms)))
        value, resampled = 0.0, np.zeros(self._resamples)
        for weight, models in terms:
            if not models:
                raise ValueError("a contrast's term has no model")
            values = np.asarray([self._model_value(model, weights) for model in models])
            replicates = np.stack([self._model_resampled(model, weights) for model in models])
            draws = rng.integers(len(models), size=(self._resamples, len(models)))
            seed_means = replicates[draws, np.arange(self._resamples)[:, None]].mean(axis=1)
            value += weight * float(values.mean())
            resampled += weight * seed_means
        tail = (1 - level) / 2 * 100
        low, high = np.percentile(resampled, [tail, 100 - tail])
        return Estimate(value, float(low), float(high), level, tuple(len(models) for _, models in terms))

    def _model_value(self, model: str, weights: Mapping[str, float]) -> float:
        return sum(w * self._measure(model, name)[0] for name, w in weights.items())

    def _model_resampled(self, model: str, weights: Mapping[str, float]) -> np.ndarray:
        return sum(w * self._measure(model, name)[1] for name, w in weights.items())

    def _measure(self, model: str, name: str) -> tuple[float, np.ndarray]:
        if (model, name) not in self._cache:
            measures = self._read(model)
            if name not in measures:
                raise ValueError(f"{model}: no per-item outcomes for {name!r} (found {sorted(measures)})")
            measure = measures[name]
            ids = self._ids.setdefault(name, tuple(sorted(measure.ids)))
            measure = measure.aligned(ids)
            chunks = [measure.resampled(draws) for draws in self._draws(name, len(ids))]
            self._cache[(model, name)] = (measure.value, np.concatenate(chunks))
        return self._cache[(model, name)]

    def _draws(self, name: str, count: int):
        """The item draws of measure `name`: the same for every model (the pairing), chunk by chunk."""
        for start in range(0, self._resamples, _CHUNK):
            size = min(_CHUNK, self._resamples - start)
            rng = np.random.default_rng(stable_seed(self._seed, "items", name, start))
            yield rng.integers(count, size=(size, count))
