"""The paper's published tables (results/paper/*.csv) in the tidy layout of ours, and ours beside them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from onmerge import worlds
from onmerge.aggregate import PAPER_COLUMNS
from onmerge.tables import PAPER_FILES
from onmerge.tables.frames import MAIN_COLUMNS, OK, PUBLISHED, SWEEP_COLUMNS, differences, table_record
from onmerge.tables.labels import label_of
from onmerge.tables.rows import main_rows


def published_backbone(preset: Mapping[str, Any], backbone: str) -> str:
    """The paper's name of a backbone (results/paper/*.csv): itself, or for the toy world the one it mirrors."""
    return worlds.of(preset).published_backbone(preset, backbone)


def read_published(paper_dir: Path, table: str) -> pd.DataFrame:
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
                records.append(table_record(table, paper["backbone"], row.group, row.name, row.label, column, **fields))
        result = pd.DataFrame(records)
        return differences(result.assign(status=OK), None).assign(status=PUBLISHED) if table == "table1" else result
    if table == "table2":
        for paper in frame.to_dict("records"):
            label, method = f"alpha={float(paper['alpha']):g}", paper["optimizer"]
            for column in SWEEP_COLUMNS:
                fields = {"value": float(paper[column]), "status": PUBLISHED}
                records.append(table_record(table, paper["backbone"], method, method, label, column, **fields))
    else:
        for paper in frame.to_dict("records"):
            for column in SWEEP_COLUMNS:
                fields = {"value": float(paper[column]), "status": PUBLISHED}
                label = label_of(paper["optimizer"])
                records.append(
                    table_record(
                        table, paper["backbone"], paper["algorithm"], paper["optimizer"], label, column, **fields
                    )
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
