"""Our tables from results.csv: each row's reported setting and its seed means, for Tables 1-7, the precision
study and the toy judge; and `build`, every table a preset makes beside the published one."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from onmerge import worlds
from onmerge.aggregate import PAPER_COLUMNS
from onmerge.grid import MERGES, study_regimes
from onmerge.paired import PairedBootstrap
from onmerge.tables import PAPER_FILES, table_names
from onmerge.tables.frames import (
    JUDGE_COLUMNS,
    MAIN_COLUMNS,
    MISSING,
    NOT_RUN,
    SWEEP_COLUMNS,
    differences,
    mark_ranks,
    table_record,
)
from onmerge.tables.labels import label_of, row_label
from onmerge.tables.published import beside_published, read_published
from onmerge.tables.results import Results
from onmerge.tables.rows import (
    SELECT_BY,
    Candidate,
    choose,
    interpolation_curve,
    main_rows,
    row_candidates,
    select_by,
    setting_of,
)


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
        return [table_record(table, backbone, group, row, label, column, status=NOT_RUN) for column in columns]
    chosen, lacking = choose(results, candidates, select_by)
    if chosen is None:
        return [
            table_record(table, backbone, group, row, label, column, status=MISSING, missing_cells=";".join(lacking))
            for column in columns
        ]
    setting = setting_of(chosen) if searched or len(candidates) > 1 else ""
    records = []
    for column in columns:
        estimate = results.estimate(chosen, column)
        if estimate is None:
            lacks = ";".join(results.lacking(chosen, column))
            records.append(
                table_record(
                    table, backbone, group, row, label, column, setting=setting, status=MISSING, missing_cells=lacks
                )
            )
        else:
            fields = {"value": estimate.value, "stderr": estimate.stderr, "seed_sd": estimate.seed_sd}
            fields["models"] = ";".join(model.path for model in chosen)
            records.append(
                table_record(
                    table, backbone, group, row, label, column, setting=setting, seeds=estimate.seeds, **fields
                )
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


def build(
    results: Results, preset: Mapping[str, Any], paper_dir: Path, bootstrap: PairedBootstrap
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Every table the preset's studies make: (ours, the published table) by name; `bootstrap` (the preset's
    per-item outcomes) gives Table 1's paired intervals.

    Where the world's numbers are comparable with the paper's (`onmerge.worlds`: the paper presets) ours carries the
    published value and the difference; elsewhere (the toy world) the published table is kept apart, to be shown
    beside ours for shape only.
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
        paper = read_published(paper_dir, name)
        if worlds.of(preset).published_beside_ours:
            ours = beside_published(ours, paper, preset)
        built[name] = (ours, paper)
    return built
