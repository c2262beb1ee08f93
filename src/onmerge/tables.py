"""The paper's tables from the pipeline's results.csv, beside the published numbers (results/paper/*.csv).

Each table is first a tidy frame (one record per backbone x row x column), then Markdown, CSV and LaTeX. A row's
value is the mean over its seeds; its uncertainty is lm-eval's standard error carried through that mean (`stderr`)
and, with several seeds, their standard deviation (`seed_sd`). A searched row (the KL and EMA searches, the offline
merges' density x weight grid) reports the setting with the best `select_by` metric and names it. A cell the preset
plans but the results lack is `missing`; a row the preset does not plan is `not run`; neither is dropped or filled.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from onmerge import methods
from onmerge.aggregate import CATEGORIES, JUDGE_COMPONENTS, JUDGED, PAPER_COLUMNS, mean_with_stderr
from onmerge.grid import (
    MERGES,
    Checkpoint,
    MergeCell,
    Model,
    method_cells,
    offline_merges,
    seed_replicates,
    study_regimes,
    training_of,
)
from onmerge.paired import PairedBootstrap

SELECT_BY = "benchmark_avg"  # the paper keeps the "best" searched setting without naming the metric
OK, MISSING, NOT_RUN, PUBLISHED = "ok", "missing", "not run", "published"


@dataclass(frozen=True)
class Row:
    group: str
    name: str
    label: str


# Table 1's rows that are not a training method of their own: the SFT reference, KL (AdamW at a searched DPO beta)
# and the offline merges. Each group lists these first, then the methods `onmerge.methods` places in it.
NON_METHOD_ROWS = (
    Row("baseline", "reference", "Reference"),
    Row("regularization", "kl", "KL"),
    Row("offline_merging", "linear", "Linear"),
    Row("offline_merging", "dare", "DARE"),
    Row("offline_merging", "ties", "TIES"),
)


def main_rows() -> tuple[Row, ...]:
    """Tables 1 and 4-7's rows, in the paper's groups and order, with every registered method that has a group."""
    rows = []
    for group in methods.TABLE_GROUPS:
        rows += [row for row in NON_METHOD_ROWS if row.group == group]
        rows += [Row(group, method.name, method.label) for method in methods.registered() if method.group == group]
    return tuple(rows)


LABELS = {
    "math": "Math",
    "code": "Code",
    "instruction_following": "I.F.",
    "reading_comprehension": "R.C.",
    "knowledge": "Know.",
    "agent": "Agent",
    "code_switch": "CodeSwitch",
    "benchmark_avg": "Benchmark Avg.",
    "mt_bench": "MT-Bench",
    "alpacaeval2_lc": "AlpacaEval LC",
    "gsm8k_acc": "GSM8K",
    "math401_acc": "Math401",
    "math23k_acc": "Math23K",
    "ds1000_pass1": "DS1000",
    "mbpp_pass1": "MBPP",
    "codeapex_pass1": "CodeApex",
    "humaneval_pass1": "HumanEval",
    "ifeval_strict_prompt_acc": "IFEval prompt",
    "ifeval_strict_instruction_acc": "IFEval inst.",
    "coqa_acc": "CoQA",
    "drop_acc": "DROP",
    "mmlu_acc": "MMLU",
    "agent_nous_function_call_acc": "Func. call",
    "code_switch_acc": "CodeSwitch",
    "dpo": "DPO",
    "ipo": "IPO",
    "kto": "KTO",
    **{row.name: row.label for row in NON_METHOD_ROWS},
    "mt_bench_content": "content (0-5)",
    "mt_bench_language": "language (0-1)",
    "mt_bench_manner": "manner (0-3)",
}
GROUP_LABELS = {
    "baseline": "Baseline",
    "regularization": "Regularization",
    "offline_merging": "Offline merging",
    "online_merging": "Online merging",
}
# Decimals as the paper prints them: per-benchmark scores and judged rewards to 2, categories and averages to 1.
DIGITS = {column: 2 for column in (*PAPER_COLUMNS, *JUDGED)} | {column: 1 for column in (*CATEGORIES, "benchmark_avg")}

MAIN_COLUMNS = (*CATEGORIES, "benchmark_avg", *JUDGED)
# The toy judge's table: its total, its parts (content 0-5, language 0-1, manner 0-3) and the tax's measure.
JUDGE_COLUMNS = ("mt_bench", *JUDGE_COMPONENTS, "benchmark_avg")
JUDGE_STUDIES = ("interpolation", "precision")
SWEEP_COLUMNS = ("benchmark_avg", "mt_bench")
TITLES = {
    "table1": "Table 1: differences against AdamW (DPO)",
    "table4": "Table 4: the main results (DPO)",
    "tables5to7": "Tables 5-7: the 14 benchmark columns (DPO)",
    "table2": "Table 2: OnDARE merging weight alpha",
    "table3": "Table 3: RLHF algorithms",
    "precision": "Precision study: the optimizers at a paper-like step size, fp32 and pure bf16 (DPO), against AdamW",
    "judge": "The toy judge's components: where the reward comes from, and what it costs",
}
STUDY_OF_TABLE = {
    "precision": "precision",
    "table1": "table1",
    "table4": "table1",
    "tables5to7": "table1",
    "table2": "table2",
    "table3": "table3",
}
PAPER_FILES = {
    "table1": "table4_main.csv",
    "table4": "table4_main.csv",
    "tables5to7": "tables5to7_per_benchmark.csv",
    "table2": "table2_alpha_sweep.csv",
    "table3": "table3_rlhf_algorithms.csv",
}


def select_by(preset: Mapping[str, Any]) -> str:
    """The metric that picks a searched row's setting (the preset's `select_by`)."""
    return preset.get("select_by", SELECT_BY)


def backbone_title(preset: Mapping[str, Any], backbone: str) -> str:
    """A backbone as tables and figures name it: a toy one says which of the paper's it mirrors."""
    mirrors = preset["backbones"][backbone].get("mirrors")
    return f"{backbone} (toy, mirrors {mirrors})" if mirrors else backbone


def table_names(preset: Mapping[str, Any]) -> list[str]:
    """The tables a preset's studies make (the main tables need study `table1`, Table 2 `table2`, ...; the toy
    judge's components need the precision or the interpolation study)."""
    names = [name for name, study in STUDY_OF_TABLE.items() if study in preset["studies"]]
    if "world" in preset and set(JUDGE_STUDIES) & set(preset["studies"]):
        names.append("judge")
    return names


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


Candidate = tuple[Model, ...]  # one setting of a row: its model for each seed


def setting_of(candidate: Candidate) -> str:
    """The hyper-parameters that tell a row's settings apart, e.g. `density=0.3, weight=0.5` for a merge."""
    model = candidate[0]
    if isinstance(model, Checkpoint):
        return ""
    return ", ".join(f"{name}={value:g}" for name, value in model.params)


def label_of(name: str) -> str:
    """How tables and figures print a column, loss or row: its `LABELS` entry, a method's label, else the name."""
    if name in LABELS:
        return LABELS[name]
    return methods.get(name).label if name in methods.names() else name


def row_label(preset: Mapping[str, Any], row: str) -> str:
    """A row's name in tables, figures and verdicts: the method row's `label`, else the paper's name for it."""
    return preset["methods"].get(row, {}).get("label") or label_of(row)


def row_candidates(
    preset: Mapping[str, Any],
    study: Mapping[str, Any],
    backbone: str,
    loss: str,
    row: str,
    regime: str | None = None,
):
    """The settings a row of a study covers (each a model per seed), or None if the study does not run the row;
    trained with the preset's trainer settings, or with `regime`'s.

    A trained row has every seed the preset plans for its setting (a study with more seeds adds them to the same
    cell's row elsewhere); an offline merge has its study's seeds."""
    seeds = study.get("seeds", preset["seeds"])
    if row == "reference":
        return [(Checkpoint(backbone, "sft"),)]
    if row in MERGES:
        if not study.get("offline"):
            return None
        per_seed = [
            [
                merge
                for cell in method_cells(preset, preset["offline"]["source"], backbone, loss, seed)
                for merge in offline_merges(preset["offline"], cell)
                if merge.merge == row
            ]
            for seed in seeds
        ]
        return list(zip(*per_seed, strict=True))
    if row not in study["methods"]:
        return None
    cells = method_cells(preset, row, backbone, loss, seeds[0], study.get("vary"), regime)
    return [seed_replicates(preset, cell) for cell in cells]


def choose(results: Results, candidates: list[Candidate], select_by: str) -> tuple[Candidate | None, list[str]]:
    """The best setting by `select_by`; with a setting unmeasured the search is incomplete: (None, what lacks it)."""
    if len(candidates) == 1:
        return candidates[0], []
    lacking = [path for candidate in candidates for path in results.lacking(candidate, select_by)]
    if lacking:
        return None, lacking
    return max(candidates, key=lambda candidate: results.estimate(candidate, select_by).value), []


def _record(table: str, backbone: str, group: str, row: str, label: str, column: str, **fields) -> dict[str, Any]:
    base = dict.fromkeys(("value", "stderr", "seed_sd", "low", "high", "published", "difference"), math.nan)
    return {
        "table": table,
        "backbone": backbone,
        "group": group,
        "row": row,
        "label": label,
        "setting": "",
        "column": column,
        **base,
        "seeds": 0,
        "status": OK,
        "rank": 0,
        "significant": False,
        "models": "",
        "missing_cells": "",
    } | fields


def _row_records(
    results: Results,
    table: str,
    backbone: str,
    group: str,
    row: str,
    label: str,
    candidates: list[Candidate] | None,
    columns: Iterable[str],
    select_by: str,
    searched: bool = False,
) -> list[dict[str, Any]]:
    """One record per column for a row: the chosen setting's estimates, or `missing` / `not run`.

    A `searched` row (the preset searches it, or it is an offline merge) names its setting even if it has only one.
    """
    if candidates is None:
        return [_record(table, backbone, group, row, label, column, status=NOT_RUN) for column in columns]
    chosen, lacking = choose(results, candidates, select_by)
    if chosen is None:
        return [
            _record(table, backbone, group, row, label, column, status=MISSING, missing_cells=";".join(lacking))
            for column in columns
        ]
    setting = setting_of(chosen) if searched or len(candidates) > 1 else ""
    records = []
    for column in columns:
        estimate = results.estimate(chosen, column)
        if estimate is None:
            lacks = ";".join(results.lacking(chosen, column))
            records.append(
                _record(
                    table, backbone, group, row, label, column, setting=setting, status=MISSING, missing_cells=lacks
                )
            )
        else:
            fields = {"value": estimate.value, "stderr": estimate.stderr, "seed_sd": estimate.seed_sd}
            fields["models"] = ";".join(model.path for model in chosen)
            records.append(
                _record(table, backbone, group, row, label, column, setting=setting, seeds=estimate.seeds, **fields)
            )
    return records


def main_table(results: Results, preset: Mapping[str, Any], table: str, columns: tuple[str, ...]) -> pd.DataFrame:
    """Table 4 (or 5-7): every backbone of study `table1`, the paper's rows, DPO."""
    study = preset["studies"]["table1"]
    records = []
    for backbone, row in itertools.product(study["backbones"], main_rows()):
        candidates = row_candidates(preset, study, backbone, "dpo", row.name)
        searched = row.name in MERGES or "search" in preset["methods"].get(row.name, {})
        records += _row_records(
            results, table, backbone, row.group, row.name, row.label, candidates, columns, select_by(preset), searched
        )
    return pd.DataFrame(records)


def differences(
    table4: pd.DataFrame, bootstrap: PairedBootstrap | None, table: str = "table1", within: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Table 1: every row of Table 4 as its difference from AdamW; AdamW itself stays absolute, as the paper prints.
    (The precision table: each row against the AdamW of its regime, `within=("group",)`.)

    Each difference comes with its 95% paired bootstrap interval (`onmerge.paired`: the same items for both rows,
    each row's seeds resampled) and is `significant` where the interval excludes zero; the published table
    (`bootstrap` None) has values only.
    """
    frame = table4.copy()
    frame["table"] = table
    frame.loc[frame["row"] != "adamw", "stderr"] = math.nan  # a difference has its paired interval instead
    key = ["backbone", *within, "column"]
    adamw = frame[frame["row"] == "adamw"].set_index(key)
    for index, record in frame.iterrows():
        if record["row"] == "adamw" or record["status"] == NOT_RUN:
            continue
        base = adamw.loc[tuple(record[k] for k in key)]
        if base["status"] != OK or record["status"] != OK:
            frame.loc[index, ["value", "seed_sd"]] = math.nan
            frame.loc[index, "status"] = MISSING
            lacking = base["missing_cells"] if base["status"] == MISSING else "AdamW (not run)"
            if base["status"] != OK:
                frame.loc[index, "missing_cells"] = ";".join(filter(None, [record["missing_cells"], lacking]))
            continue
        frame.loc[index, "value"] = record["value"] - base["value"]
        if bootstrap is not None:
            terms = [(1.0, tuple(record["models"].split(";"))), (-1.0, tuple(base["models"].split(";")))]
            estimate = bootstrap.contrast(terms, record["column"])
            frame.loc[index, ["low", "high"]] = estimate.low, estimate.high
            frame.loc[index, "significant"] = estimate.low > 0 or estimate.high < 0
    return frame


def precision_table(results: Results, preset: Mapping[str, Any], bootstrap: PairedBootstrap) -> pd.DataFrame:
    """The precision study: per backbone (world) and regime (fp32, pure bf16), its AdamW row absolute and every other
    row as its paired difference from that AdamW."""
    study = preset["studies"]["precision"]
    records = []
    for backbone, regime, row in itertools.product(study["backbones"], study_regimes(study), study["methods"]):
        candidates = row_candidates(preset, study, backbone, "dpo", row, regime)
        label = row_label(preset, row)
        group = regime or "training"
        records += _row_records(
            results, "precision", backbone, group, row, label, candidates, MAIN_COLUMNS, select_by(preset)
        )
    return differences(pd.DataFrame(records), bootstrap, "precision", within=("group",))


def interpolation_curve(
    preset: Mapping[str, Any], study: Mapping[str, Any], backbone: str, method: str
) -> list[tuple[float, Candidate]]:
    """An interpolation study's curve for one method: (weight, its models, one per seed the study merges) from the
    SFT model (0) through the linear merges at each `interpolate` weight, in order, to the RLHF row itself (1)."""
    seeds = study.get("seeds", preset["seeds"])
    rlhf = tuple(cell for cell in row_candidates(preset, study, backbone, "dpo", method)[0] if cell.seed in seeds)
    weights = sorted(float(weight) for weight in study["interpolate"])
    curve: list[tuple[float, Candidate]] = [(0.0, (Checkpoint(backbone, "sft"),))]
    curve += [(w, tuple(MergeCell(cell, "linear", (("weight", w),)) for cell in rlhf)) for w in weights]
    return [*curve, (1.0, rlhf)]


def judge_table(results: Results, preset: Mapping[str, Any]) -> pd.DataFrame:
    """The toy judge's total beside its components and the Benchmark Avg.: along the interpolation curve (SFT ->
    AdamW), and for the precision study's rows. The world's manner channel costs no content by construction, so a
    fall in content or Benchmark Avg. here is a tax that training pays, not one the judge imposes."""
    records = []
    studies = preset["studies"]
    if "interpolation" in studies:
        study = studies["interpolation"]
        for backbone, method in itertools.product(study["backbones"], study["methods"]):
            curve = interpolation_curve(preset, study, backbone, method)
            for position, (weight, models) in enumerate(curve):
                if position == 0:
                    row, text = "reference", "SFT (w = 0)"
                elif position == len(curve) - 1:
                    row, text = method, f"{row_label(preset, method)} (w = 1)"
                else:
                    row, text = f"w{weight:g}", f"linear merge, w = {weight:g}"
                records += _row_records(
                    results, "judge", backbone, "interpolation", row, text, [models], JUDGE_COLUMNS, SELECT_BY
                )
    if "precision" in studies:
        study = studies["precision"]
        for backbone, regime, row in itertools.product(study["backbones"], study_regimes(study), study["methods"]):
            candidates = row_candidates(preset, study, backbone, "dpo", row, regime)
            records += _row_records(
                results,
                "judge",
                backbone,
                regime or "training",
                row,
                row_label(preset, row),
                candidates,
                JUDGE_COLUMNS,
                SELECT_BY,
            )
    return pd.DataFrame(records)


JUDGE_NOTE = (
    "MT-Bench here is the toy judge's mean score, 1 + content + language + manner. Manner is a closing offer of help "
    "after the answer (the bare answer on IFEval and tool calls), so it never displaces content: reward can rise "
    "without tax. A content or Benchmark Avg. that falls as reward rises is a tax that training pays."
)


def regime_title(preset: Mapping[str, Any], regime: str) -> str:
    """A regime (or `training`, the preset's own settings) as the tables name it: its name and what sets it apart,
    e.g. `small-step-bf16 (lr 3.6e-05, pure bf16)`."""
    settings = training_of(preset, regime if regime in preset.get("regimes", {}) else None)
    precision = "pure bf16" if settings.get("bf16") else "fp32"
    return f"{regime} (lr {settings['learning_rate']:g}, {precision})"


def sweep_table(results: Results, preset: Mapping[str, Any]) -> pd.DataFrame:
    """Table 2: one row per swept setting of each method of study `table2` (no selection: the sweep is the table)."""
    study = preset["studies"]["table2"]
    records = []
    for backbone, method in itertools.product(study["backbones"], study["methods"]):
        for candidate in row_candidates(preset, study, backbone, "dpo", method):
            label = _varied(candidate, study)
            records += _row_records(
                results, "table2", backbone, method, method, label, [candidate], SWEEP_COLUMNS, SELECT_BY
            )
    return pd.DataFrame(records)


def _varied(candidate: Candidate, study: Mapping[str, Any]) -> str:
    params = dict(candidate[0].params)
    return ", ".join(f"{name}={params[name]:g}" for name in study.get("vary", {}))


def algorithms_table(results: Results, preset: Mapping[str, Any]) -> pd.DataFrame:
    """Table 3: each RLHF loss of study `table3` x each of its methods."""
    study = preset["studies"]["table3"]
    records = []
    for backbone, loss, method in itertools.product(study["backbones"], study["losses"], study["methods"]):
        candidates = row_candidates(preset, study, backbone, loss, method)
        label = label_of(method)
        records += _row_records(
            results, "table3", backbone, loss, method, label, candidates, SWEEP_COLUMNS, select_by(preset)
        )
    return pd.DataFrame(records)


def mark_ranks(frame: pd.DataFrame) -> pd.DataFrame:
    """Best (1) and second best (2) per backbone, group of comparable rows and column; the Reference is not ranked.

    Higher is better in every column of the paper. Table 3 ranks within each RLHF loss, as the paper compares there.
    """
    frame = frame.copy()
    frame["rank"] = 0
    scope = ["backbone", "group", "column"] if (frame["table"] == "table3").all() else ["backbone", "column"]
    ranked = frame[(frame["status"] == OK) & (frame["row"] != "reference")]
    for _, records in ranked.groupby(scope):
        levels = sorted(set(records["value"]), reverse=True)[:2]
        for rank, level in enumerate(levels, start=1):
            frame.loc[records.index[records["value"] == level], "rank"] = rank
    return frame


# ---- the published numbers --------------------------------------------------------------------------------------


def published_backbone(preset: Mapping[str, Any], backbone: str) -> str:
    """The paper's name of a backbone (results/paper/*.csv): itself, or for the toy world the one it mirrors."""
    mirrors = preset["backbones"][backbone].get("mirrors")
    return mirrors.lower().removeprefix("meta-") if mirrors else backbone


def published(paper_dir: Path, table: str) -> pd.DataFrame:
    """A published table in the same tidy layout as ours (status `published`, no uncertainty)."""
    frame = pd.read_csv(Path(paper_dir) / PAPER_FILES[table])
    records = []
    if table in ("table1", "table4", "tables5to7"):
        columns = MAIN_COLUMNS if table != "tables5to7" else tuple(PAPER_COLUMNS)
        groups = {row.name: row for row in main_rows()}
        for paper in frame.to_dict("records"):
            row = groups[paper["method"]]
            for column in columns:
                fields = {"value": float(paper[column]), "status": PUBLISHED}
                records.append(_record(table, paper["backbone"], row.group, row.name, row.label, column, **fields))
        result = pd.DataFrame(records)
        return differences(result.assign(status=OK), None).assign(status=PUBLISHED) if table == "table1" else result
    if table == "table2":
        for paper in frame.to_dict("records"):
            label, method = f"alpha={float(paper['alpha']):g}", paper["optimizer"]
            for column in SWEEP_COLUMNS:
                fields = {"value": float(paper[column]), "status": PUBLISHED}
                records.append(_record(table, paper["backbone"], method, method, label, column, **fields))
    else:
        for paper in frame.to_dict("records"):
            for column in SWEEP_COLUMNS:
                fields = {"value": float(paper[column]), "status": PUBLISHED}
                label = label_of(paper["optimizer"])
                records.append(
                    _record(table, paper["backbone"], paper["algorithm"], paper["optimizer"], label, column, **fields)
                )
    return pd.DataFrame(records)


def beside_published(ours: pd.DataFrame, paper: pd.DataFrame, preset: Mapping[str, Any]) -> pd.DataFrame:
    """Ours with the published value of the same backbone, row (Table 2: alpha) and column, and ours minus it."""
    key = ["backbone", "group", "row", "column"] + (["label"] if (ours["table"] == "table2").all() else [])
    lookup = paper.set_index(key)["value"]
    frame = ours.copy()
    for index, record in frame.iterrows():
        probe = (published_backbone(preset, record["backbone"]), *(record[k] for k in key[1:]))
        if probe in lookup.index:
            frame.loc[index, "published"] = lookup[probe]
            frame.loc[index, "difference"] = record["value"] - lookup[probe]
    return frame


def build(
    results: Results, preset: Mapping[str, Any], paper_dir: Path, bootstrap: PairedBootstrap
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Every table the preset's studies make: (ours, the published table) by name; `bootstrap` (the preset's
    per-item outcomes) gives Table 1's paired intervals.

    For the paper presets ours carries the published value and the difference; for the toy world the published table
    is kept apart, to be shown beside ours for shape only.
    """
    tables = {}
    names = table_names(preset)
    if "precision" in names:
        tables["precision"] = precision_table(results, preset, bootstrap)
    if "judge" in names:
        tables["judge"] = judge_table(results, preset)
    if "table4" in names:
        table4 = mark_ranks(main_table(results, preset, "table4", MAIN_COLUMNS))
        tables["table1"] = differences(table4, bootstrap)  # ranked as Table 4: the differences share AdamW's offset
        tables["table4"] = table4
        tables["tables5to7"] = mark_ranks(main_table(results, preset, "tables5to7", tuple(PAPER_COLUMNS)))
    if "table2" in names:
        tables["table2"] = mark_ranks(sweep_table(results, preset))
    if "table3" in names:
        tables["table3"] = mark_ranks(algorithms_table(results, preset))
    built = {}
    for name, ours in tables.items():
        if name not in PAPER_FILES:  # the paper has no such table
            built[name] = (ours, ours.iloc[0:0])
            continue
        paper = published(paper_dir, name)
        if "world" not in preset:
            ours = beside_published(ours, paper, preset)
        built[name] = (ours, paper)
    return built


# ---- rendering ----------------------------------------------------------------------------------------------------

LEGEND = (
    "Each value: the mean over seeds ± lm-eval's standard error, propagated to the categories and the Benchmark Avg.; "
    "with several seeds, (sd over seeds, n) follows. The judged AlpacaEval LC win rate has no standard error.",
    "Best and second best per column marked (bold, underlined); the Reference is not ranked.",
)
DIFFERENCES_NOTE = (
    "Table 1: each row minus AdamW, with its 95% paired bootstrap interval in brackets (both rows scored on the same "
    "items, resampled together per column; each row's seeds resampled; onmerge.paired); † where the interval "
    "excludes zero. No correction for the many cells: see the verdicts for claims."
)
_MINUS_ADAMW = {"table1": "Table 1: each row minus AdamW", "precision": "Each row minus the AdamW of its regime"}
PRECISION_NOTE = (
    "The paper's claims are about its own regime, pure bf16 (the published fork trains bf16 weights without an fp32 "
    "copy). OnDARE with alpha = 0 is OnDARE without the merge: OnDARE minus it is the merge's share of OnDARE's "
    "effect, and the fp32 block shows what is left when no update rounds away. Each backbone block is one world."
)
EXPLORATORY_NOTE = (
    "Exploratory: one seed per cell, so the uncertainties hold the items' noise only, not the training seed's; read "
    "this table for its shape."
)
SEARCH_NOTE = "A searched row (KL, EMA, offline merges) reports its setting with the highest {select_by}: see Setting."


@dataclass(frozen=True)
class Layout:
    """What one rendered block shows: its rows (each a list of records, one per column) and the column labels."""

    title: str
    columns: list[str]
    rows: list[pd.DataFrame]


def _blocks(frame: pd.DataFrame) -> list[Layout]:
    blocks = []
    for backbone, records in frame.groupby("backbone", sort=False):
        columns = list(dict.fromkeys(records["column"]))
        keys = ["group", "row", "label", "setting"]
        rows = [row for _, row in records.groupby(keys, sort=False)]
        blocks.append(Layout(backbone, columns, rows))
    return blocks


def _number(value: float, digits: int, signed: bool) -> str:
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def cell_text(record: Mapping[str, Any], signed: bool, plus_minus: str = "±") -> str:
    """A cell as printed: `value ± stderr (sd s, n=k)`, a difference as `value [low, high]†` (its paired interval,
    † where it excludes zero), or `missing` / `not run`."""
    if record["status"] in (MISSING, NOT_RUN):
        return record["status"]
    digits = DIGITS.get(record["column"], 2)
    text = _number(record["value"], digits, signed)
    if not math.isnan(record["stderr"]):
        text += f" {plus_minus} {record['stderr']:.{digits}f}"
    if not math.isnan(record["low"]):
        low, high = (_number(record[bound], digits, signed) for bound in ("low", "high"))
        text += f" [{low}, {high}]" + ("†" if record["significant"] else "")
    if record["seeds"] > 1:
        text += f" (sd {record['seed_sd']:.{digits}f}, n={record['seeds']})"
    return text


def _signed(table: str, row: str) -> bool:
    return table in ("table1", "precision") and row != "adamw"


def _grid(
    block: Layout, table: str, with_published: bool, preset: Mapping[str, Any]
) -> tuple[list[str], list[list[tuple[str, int]]]]:
    """Header and cells (text, rank) of one block, with `paper` and `Δ` lines under each row when asked."""
    has_setting = any(row["setting"].iloc[0] for row in block.rows)
    lead_header = {
        "table2": ["Optimizer", "Setting"],
        "table3": ["Algorithm", "Optimizer"],
        "precision": ["Regime", "Method"],
        "judge": ["Study", "Model"],
    }.get(table, ["Group", "Method"])
    header = [*lead_header, *(["Setting"] if has_setting else []), *(LABELS.get(c, c) for c in block.columns)]
    lines, previous_group = [], None
    for row in block.rows:
        first = row.iloc[0]
        group = GROUP_LABELS.get(first["group"], label_of(first["group"]))
        if table in ("precision", "judge") and first["group"] != "interpolation":
            group = regime_title(preset, first["group"])
        lead = [group if first["group"] != previous_group else "", first["label"]]
        previous_group = first["group"]
        setting = [first["setting"]] if has_setting else []
        by_column = {record["column"]: record for record in row.to_dict("records")}
        signed = _signed(table, first["row"])
        lines.append(
            [(text, 0) for text in lead + setting]
            + [(cell_text(by_column[c], signed), by_column[c]["rank"]) for c in block.columns]
        )
        if with_published:
            for name, field in (("paper", "published"), ("Δ", "difference")):
                cells = []
                for column in block.columns:
                    value = by_column[column][field]
                    digits = DIGITS.get(column, 2)
                    cells.append(("n/a" if math.isnan(value) else _number(value, digits, signed or name == "Δ"), 0))
                lines.append([("", 0), (f"↳ {name}", 0), *([("", 0)] if has_setting else []), *cells])
    return header, lines


def _notes(frame: pd.DataFrame) -> list[str]:
    """One line per row with a missing or not-run cell, naming the columns and the cells without results."""
    notes = []
    for (backbone, group, _, label, _), records in frame.groupby(
        ["backbone", "group", "row", "label", "setting"], sort=False
    ):
        what = f"{backbone} / {label}" + ("" if group in GROUP_LABELS else f" / {label_of(group)}")
        missing = records[records["status"] == MISSING]
        if len(missing):
            columns = ", ".join(LABELS.get(column, column) for column in missing["column"])
            cells = sorted({cell for cells in missing["missing_cells"] for cell in cells.split(";") if cell})
            notes.append(f"Missing: {what}: {columns}; no result for {', '.join(cells)}")
        if (records["status"] == NOT_RUN).any():
            notes.append(f"Not run: {what} (the preset does not plan this row)")
    return notes


def _shape_title(preset: Mapping[str, Any], backbone: str) -> str:
    for ours in preset["backbones"]:
        if published_backbone(preset, ours) == backbone:
            return f"{backbone} (published; mirrored here by {ours})"
    return f"{backbone} (published)"


def _published_for_shape(paper: pd.DataFrame, ours: pd.DataFrame, preset: Mapping[str, Any]) -> pd.DataFrame:
    mirrored = [published_backbone(preset, backbone) for backbone in dict.fromkeys(ours["backbone"])]
    return paper[paper["backbone"].isin(mirrored)]


@dataclass(frozen=True)
class Grid:
    title: str
    header: list[str]
    lines: list[list[tuple[str, int]]]  # (text, rank) per cell
    numeric: int  # how many trailing columns hold numbers


Part = tuple[str, str] | Grid  # ("heading" | "bullet", text) or a table


def document(name: str, ours: pd.DataFrame, paper: pd.DataFrame, preset: Mapping[str, Any]) -> list[Part]:
    """A table as headings, bullets and grids: ours, its notes, and for the toy world the published one apart."""
    toy = "world" in preset
    selected_by = LABELS[select_by(preset)]
    parts: list[Part] = [("heading", f"{TITLES[name]} — preset `{preset['name']}`")]
    parts += [("bullet", line) for line in LEGEND if name not in ("precision", "judge") or line != LEGEND[1]]
    if name in ("table1", "precision"):
        parts.append(("bullet", DIFFERENCES_NOTE.replace("Table 1: each row minus AdamW", _MINUS_ADAMW[name])))
    if name == "precision":
        parts.append(("bullet", PRECISION_NOTE))
    if name == "judge":
        parts.append(("bullet", JUDGE_NOTE))
    if name not in ("table2", "precision", "judge"):
        parts.append(("bullet", SEARCH_NOTE.format(select_by=selected_by)))
    seeds = preset["studies"][STUDY_OF_TABLE[name]].get("seeds", preset["seeds"]) if name in STUDY_OF_TABLE else []
    if len(seeds) == 1:
        parts.append(("bullet", EXPLORATORY_NOTE))
    if not toy:
        parts.append(("bullet", "Under each row: the published value (↳ paper) and ours minus it (↳ Δ)."))

    def grids(frame: pd.DataFrame, with_published: bool, title_of) -> list[Grid]:
        return [
            Grid(title_of(block.title), *_grid(block, name, with_published, preset), len(block.columns))
            for block in _blocks(frame)
        ]

    parts += grids(ours, not toy, lambda backbone: backbone_title(preset, backbone))
    parts += [("bullet", note) for note in _notes(ours)]
    if toy and len(paper):
        parts.append(("heading", "The published table, for shape only (the paper's numbers, not this run's)"))
        parts += grids(_published_for_shape(paper, ours, preset), False, lambda b: _shape_title(preset, b))
    return parts


def markdown(parts: list[Part]) -> str:
    lines = []
    for part in parts:
        if isinstance(part, Grid):
            lines += [f"## {part.title}", "", "| " + " | ".join(part.header) + " |"]
            lines.append("|" + "|".join(["---"] * (len(part.header) - part.numeric) + ["---:"] * part.numeric) + "|")
            lines += ["| " + " | ".join(_md_mark(text, rank) for text, rank in cells) + " |" for cells in part.lines]
            lines.append("")
        elif part[0] == "heading":
            lines += ["" if lines and lines[-1] else None, f"# {part[1]}", ""]
        else:
            lines.append(f"- {part[1]}")
    return "\n".join(line for line in lines if line is not None).strip() + "\n"


def _md_mark(text: str, rank: int) -> str:
    return f"**{text}**" if rank == 1 else f"<u>{text}</u>" if rank == 2 else text


def html(parts: list[Part]) -> str:
    """One HTML page, for Snakemake's report (which shows HTML, not Markdown)."""
    from html import escape

    body = []
    for part in parts:
        if isinstance(part, Grid):
            rows = ["".join(f"<th>{escape(cell)}</th>" for cell in part.header)]
            rows += [
                "".join(f"<td>{_html_mark(escape(text), rank)}</td>" for text, rank in cells) for cells in part.lines
            ]
            table = "".join(f"<tr>{row}</tr>" for row in rows)
            body.append(f"<h3>{escape(part.title)}</h3><table>{table}</table>")
        elif part[0] == "heading":
            body.append(f"<h2>{escape(part[1])}</h2>")
        else:
            body.append(f"<p>{escape(part[1])}</p>")
    style = "table{border-collapse:collapse;font:13px sans-serif}td,th{border:1px solid #ccc;padding:2px 6px}"
    head = f"<meta charset='utf-8'><style>{style}</style>"
    return f"<!DOCTYPE html><html><head>{head}</head><body>{''.join(body)}</body></html>\n"


def _html_mark(text: str, rank: int) -> str:
    return f"<b>{text}</b>" if rank == 1 else f"<u>{text}</u>" if rank == 2 else text


_LATEX_ESCAPES = {
    "_": r"\_",
    "%": r"\%",
    "&": r"\&",
    "#": r"\#",
    "~": r"\textasciitilde{}",
    "Δ": r"$\Delta$",
    "†": r"$^\dagger$",
}


def _tex(text: str) -> str:
    text = "".join(_LATEX_ESCAPES.get(char, char) for char in text)
    return text.replace("±", r"$\pm$").replace("↳", r"$\hookrightarrow$")


def latex(name: str, parts: list[Part]) -> str:
    """booktabs tabulars, one per heading: ours (with the published lines for the paper presets), then the paper's."""
    lines = [f"% {TITLES[name]}; generated by onmerge.tables from results.csv"]
    open_tabular = False
    for part in parts:
        if isinstance(part, Grid):
            width = len(part.header)
            if not open_tabular:
                lines += [rf"\begin{{tabular}}{{{'l' * (width - part.numeric)}{'r' * part.numeric}}}", r"\toprule"]
                lines.append(" & ".join(_tex(cell) for cell in part.header) + r" \\")
                open_tabular = True
            lines.append(rf"\midrule \multicolumn{{{width}}}{{l}}{{\textit{{{_tex(part.title)}}}}} \\")
            lines += [" & ".join(_tex_mark(_tex(text), rank) for text, rank in cells) + r" \\" for cells in part.lines]
        else:
            if open_tabular:
                lines += [r"\bottomrule", r"\end{tabular}"]
                open_tabular = False
            lines.append(f"% {_tex(part[1])}")
    if open_tabular:
        lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _tex_mark(text: str, rank: int) -> str:
    return rf"\textbf{{{text}}}" if rank == 1 else rf"\underline{{{text}}}" if rank == 2 else text


def write(built: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]], preset: Mapping[str, Any], out_dir: Path) -> None:
    """`<name>.md`, `<name>.csv` (ours, tidy), `<name>.tex` and `<name>.html` for each table, written atomically."""
    from onmerge.atomic import write_text

    for name, (ours, paper) in built.items():
        parts = document(name, ours, paper, preset)
        write_text(Path(out_dir) / f"{name}.md", markdown(parts))
        write_text(Path(out_dir) / f"{name}.csv", ours.to_csv(index=False))
        write_text(Path(out_dir) / f"{name}.tex", latex(name, parts))
        write_text(Path(out_dir) / f"{name}.html", html(parts))
