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

from onmerge.worlds import World

# The paper's 14 benchmark columns (named and ordered as in results/paper/tables5to7_per_benchmark.csv) and the
# category each belongs to; results.csv and the tables use these names and the paper's units (percent).
PAPER_COLUMNS: dict[str, str] = {
    "gsm8k_acc": "math",
    "math401_acc": "math",
    "math23k_acc": "math",
    "ds1000_pass1": "code",
    "mbpp_pass1": "code",
    "codeapex_pass1": "code",
    "humaneval_pass1": "code",
    "ifeval_strict_prompt_acc": "instruction_following",
    "ifeval_strict_instruction_acc": "instruction_following",
    "coqa_acc": "reading_comprehension",
    "drop_acc": "reading_comprehension",
    "mmlu_acc": "knowledge",
    "agent_nous_function_call_acc": "agent",
    "code_switch_acc": "code_switch",
}
CATEGORIES = tuple(dict.fromkeys(PAPER_COLUMNS.values()))
JUDGED = ("mt_bench", "alpacaeval2_lc")  # MT-Bench on its 1-10 scale, AlpacaEval 2.0 LC win rate in percent
# The toy judge's components (onmerge.toyworld.judge), each the mean over the judge prompts of one answer's points on
# the judge's scale, so that mt_bench = 1 + content + language + manner: content 0-5 (the answer is right, read
# leniently), language 0-1 (in the language asked for), manner 0-3 (the helpful manner). Toy AlpacaEval judges the
# same answers (its per-prompt points are in alpacaeval.json), so these are the components of both judged
# benchmarks. Paper presets' judges give one score: their models have no rows for these metrics.
JUDGE_COMPONENTS = ("mt_bench_content", "mt_bench_language", "mt_bench_manner")


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


def _estimates(document: Mapping) -> dict[str, tuple[float, float]]:
    """(value, stderr) per metric of an evaluation file, `{"metrics": {name: {"value", "stderr", ...}}}` as every
    evaluation and judge writes it."""
    return {name: (entry["value"], entry["stderr"]) for name, entry in document["metrics"].items()}


def results_table(root: Path, models: list[str], world: World) -> pd.DataFrame:
    """One tidy row per (model, metric): the model's identity (onmerge.grid), the value and its standard error.

    The world's metric names (`World.paper_metrics`) become the paper's columns (PAPER_COLUMNS, JUDGED, and the toy
    judge's JUDGE_COMPONENTS); benchmark columns become percent, as the paper prints them; metrics it does not name
    keep their own name and unit. The categories and `benchmark_avg` follow the paper's rule above when a model has
    all 14 columns. Reads `<model>/eval/metrics.json` and, where the judges ran, the world's judged files beside it;
    a model without its evaluation is an error, never a gap.
    """
    from onmerge.grid import describe, parse

    paper_metrics = world.paper_metrics()
    rows = []
    for path in models:
        identity = {"path": path} | describe(parse(path))
        evaluation = Path(root) / path / "eval"
        measured = _estimates(json.loads((evaluation / "metrics.json").read_text()))
        for judged in world.judged:  # those the preset judges (a paper preset may configure fewer)
            judged_file = evaluation / f"{judged.name}.json"
            if judged_file.exists():
                measured |= _estimates(json.loads(judged_file.read_text()))
        estimates = {}
        for name, (value, stderr) in measured.items():
            metric = paper_metrics.get(name, name)
            scale = 100.0 if metric in PAPER_COLUMNS else 1.0
            estimates[metric] = (value * scale, stderr * scale)
        if set(PAPER_COLUMNS) <= set(estimates):
            estimates |= benchmark_average(estimates, PAPER_COLUMNS)
        for metric, (value, stderr) in estimates.items():
            rows.append(identity | {"metric": metric, "value": value, "stderr": stderr})
    return pd.DataFrame(rows)
