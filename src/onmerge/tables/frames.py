"""The tidy layout every table shares, ours and the published: one record per backbone x row x column, with its
value, uncertainties, status and rank. And what is computed on a whole table: Table 1's differences from AdamW, with
their paired intervals, and the best and second best marks."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from onmerge.aggregate import CATEGORIES, JUDGE_COMPONENTS, JUDGED
from onmerge.paired import PairedBootstrap

OK, MISSING, NOT_RUN, PUBLISHED = "ok", "missing", "not run", "published"
MAIN_COLUMNS = (*CATEGORIES, "benchmark_avg", *JUDGED)
# The toy judge's table: its total, its parts (content 0-5, language 0-1, manner 0-3) and the tax's measure.
JUDGE_COLUMNS = ("mt_bench", *JUDGE_COMPONENTS, "benchmark_avg")
SWEEP_COLUMNS = ("benchmark_avg", "mt_bench")


def table_record(
    table: str, backbone: str, group: str, row: str, label: str, column: str, **fields: Any
) -> dict[str, Any]:
    """A record of the tidy layout: no value, no uncertainty, status `ok`, except what `fields` sets."""
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
