"""The regime table (`tables/regime.md`): the regime quantities of each group of a run's cells, from their training
logs, beside what the paper's published settings determine about its own cells.

The quantities are measured during training by `onmerge.regime`, which needs torch; reading them back and laying out
the table needs none, so the tables job does not pay torch's import for it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from onmerge import methods
from onmerge.curves import LOG, study_curves
from onmerge.grid import TrainCell, training_of, training_settings

# The training log's `regime` entry and the table's rows, in order, with what each one is.
QUANTITIES = {
    "step_over_weight": "peak lr / median |w|",
    "bf16_half_step_over_weight": "median half bf16 step / median |w|",
    "step_over_bf16_half_step": "peak lr / median half bf16 step",
    "kicks_per_entry": "sparse updates per entry over the run (OnDARE: T p)",
    "merge_share": "||sum of alpha F(tau_r) applied|| / ||tau_r||",
    "drift": "||theta_rlhf - theta_sft|| / ||tau_r||",
    "drift_cosine": "cos(theta_rlhf - theta_sft, tau_r)",
    "survival": "update entries that changed the stored weight",
    "merge_survival": "entries only the merge reached that changed",
    "changed_fraction": "entries that ever changed",
    "clamp_fraction": "kept entries of F(tau_r) at the clamp",
    "dominance_ratio": "median |F(tau_r)| / |F(delta)| where both kept",
    "update_on_reference": "kept update entries on F(tau_r)'s support",
}


def kicks_per_entry(method: str, steps: int, reserve_p: float, merge_every: int = 1) -> float | None:
    """How many sparse updates each entry receives over `steps` optimizer steps, in expectation: `(T // K) * p`.

    OnDARE keeps each entry of an update with probability p, scaled by 1/p: T p kicks of about lr / p each. With
    step-K (K > 1) it merges T // K times; each kick then carries the K steps accumulated since the last merge, and
    the plain AdamW steps between merges are taken back at the merge, so an entry keeps only its kicks. OnTIES keeps
    the top p of each tensor at a merge (at least one entry a tensor; a cell's record counts them): its kicks are
    unscaled and land on the entries with the largest updates. None for the dense methods (AdamW, EMA, ChildTuning,
    LoRA), which move every entry at every step.
    """
    if not methods.get(method).online:
        return None
    return (steps // merge_every) * reserve_p


@dataclasses.dataclass(frozen=True)
class PublishedSetting:
    """The paper's training settings (PAPER.md sections 2-3; the published launch script)."""

    learning_rate: float = 1e-6
    pairs: int = 61_135  # UltraFeedback binarized train_prefs (an earlier revision held 61,966: 970 steps)
    batch_size: int = 128
    epochs: int = 2
    reserve_p: float = 0.01
    alpha: float = 1e-7  # the launch script's, and Table 2's best MT-Bench
    merge_every: int = 1

    @property
    def steps(self) -> int:
        """Optimizer steps: the trainer keeps each epoch's last, partial batch."""
        return self.epochs * math.ceil(self.pairs / self.batch_size)


PUBLISHED = PublishedSetting()
NEEDS_WEIGHTS, NEEDS_RUN = "needs the weights", "needs a run"
# Context rows above the quantities.
CONTEXT = {"cells": "cells (median over them)", "learning_rate": "peak learning rate", "steps": "optimizer steps (T)"}
PAPER_METHODS = ("adamw", "ondare", "onties")  # the methods whose published settings the paper states


def published_column(method: str, setting: PublishedSetting = PUBLISHED) -> dict[str, Any]:
    """What the paper's published settings determine about its `method` cells (pure bf16 weights): numbers where
    they determine them, a bound where they bound them, and what it would take where they do not."""
    online = methods.get(method).online
    merges = setting.steps // setting.merge_every
    column: dict[str, Any] = dict.fromkeys([*CONTEXT, *QUANTITIES], NEEDS_RUN)
    column |= {
        "cells": None,
        "learning_rate": setting.learning_rate,
        "steps": setting.steps,
        "step_over_weight": NEEDS_WEIGHTS,
        "bf16_half_step_over_weight": "2^-9 .. 2^-8",
        "step_over_bf16_half_step": NEEDS_WEIGHTS,
        "kicks_per_entry": kicks_per_entry(method, setting.steps, setting.reserve_p, setting.merge_every),
        "merge_survival": NEEDS_RUN if online else None,
        "clamp_fraction": NEEDS_WEIGHTS if method == "ondare" else None,
        "merge_share": None,
        "dominance_ratio": NEEDS_RUN if method == "onties" else None,
        "update_on_reference": NEEDS_RUN if method == "onties" else None,
    }
    if method == "ondare":  # ||F_rand(tau)|| is about ||tau|| / sqrt(p) before the clamp, which only lowers it
        column["merge_share"] = f"<= {merges * setting.alpha / math.sqrt(setting.reserve_p):.2g}"
    if method == "onties":  # ||F_topk(tau)|| <= ||tau||, and the sign election only drops entries
        column["merge_share"] = f"<= {merges * setting.alpha:.2g}"
    return column


# The studies the tables' regime table shows, where a preset has them: the headline experiment, and the settings of
# the paper's main table (every other study shares them, or sweeps one hyper-parameter of them).
TABLE_STUDIES = ("precision", "table1")


def table_studies(preset: Mapping[str, Any]) -> list[str]:
    """The studies `regime.md` shows: TABLE_STUDIES that the preset has, else all of its studies."""
    return [study for study in TABLE_STUDIES if study in preset["studies"]] or list(preset["studies"])


def regime_table(
    preset: Mapping[str, Any], results_dir: Path | str, studies: Sequence[str] | None = None
) -> pd.DataFrame:
    """Rows: the regime quantities (after three context rows); columns: the paper's published settings for AdamW,
    OnDARE and OnTIES, then this run's cells, one column per (study, method row and setting, precision) group: the
    median over its cells (seeds, backbones, losses), from their training logs' `regime` entries.

    A row's settings are told apart as the training curves tell them (a swept value is its own column). Cells
    without a training log, or whose log has no `regime` entry, are left out and listed in `frame.attrs["missing"]`.
    """
    columns = {
        f"paper: {methods.get(method).label} (bf16, published settings)": published_column(method)
        for method in PAPER_METHODS
    }
    missing: list[str] = []
    for study in studies or list(preset["studies"]):
        groups: dict[str, list[TrainCell]] = {}
        for _, _, curves in study_curves(preset, study):
            for curve in curves:
                for cell in curve.cells:
                    precision = "bf16" if training_of(preset, cell.regime).get("bf16", False) else "fp32"
                    groups.setdefault(f"{study}: {curve.label} ({precision})", []).append(cell)
        for label, cells in groups.items():
            logs = {cell: _read_log(Path(results_dir) / cell.path / LOG) for cell in dict.fromkeys(cells)}
            missing += [cell.path for cell, log in logs.items() if log is None or "regime" not in log]
            found = {cell: log for cell, log in logs.items() if log is not None and "regime" in log}
            columns[label] = _measured_column(preset, found)
    rows = [*CONTEXT, *QUANTITIES]
    frame = pd.DataFrame(  # object columns: None stays None, beside numbers and the paper's notes
        {label: pd.Series([column[row] for row in rows], index=rows, dtype=object) for label, column in columns.items()}
    )
    frame.attrs["missing"] = list(dict.fromkeys(missing))
    return frame


def _read_log(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _measured_column(preset: Mapping[str, Any], logs: Mapping[TrainCell, Mapping[str, Any]]) -> dict[str, Any]:
    column: dict[str, Any] = {
        "cells": len(logs),
        "learning_rate": _median(training_settings(preset, cell)["training"]["learning_rate"] for cell in logs),
        "steps": _median(log["max_steps"] for log in logs.values()),
    }
    return column | {name: _median(log["regime"].get(name) for log in logs.values()) for name in QUANTITIES}


def _median(values: Iterable[float | None]) -> float | None:
    """The median of the values a group's cells have (a quantity is None where it does not apply)."""
    found = [value for value in values if value is not None and not math.isnan(value)]
    return statistics.median(found) if found else None


def regime_markdown(frame: pd.DataFrame) -> str:
    """The table as Markdown: each quantity's definition beside its name, numbers to 3 significant digits, '-' where
    a quantity does not apply or no cell has it, and the cells left out."""
    meanings = CONTEXT | QUANTITIES
    lines = [
        _markdown_row(["quantity", *frame.columns]),
        "|" + "|".join(["---"] + ["---:"] * len(frame.columns)) + "|",
    ]
    for name, values in frame.iterrows():
        lines.append(_markdown_row([f"`{name}`: {meanings[name]}", *(_format(value) for value in values)]))
    notes = [
        f"Paper columns: computed from the published settings (lr {PUBLISHED.learning_rate:g}, T = {PUBLISHED.epochs}"
        f" epochs x ceil({PUBLISHED.pairs:,} pairs / batch {PUBLISHED.batch_size}) = {PUBLISHED.steps} steps,"
        f" p = {PUBLISHED.reserve_p:g}, alpha = {PUBLISHED.alpha:g}, K = {PUBLISHED.merge_every}, pure bf16 weights);"
        f" '{NEEDS_WEIGHTS}' and '{NEEDS_RUN}' mark what they do not determine. Their merge shares are bounds:"
        " T alpha ||F(tau_r)|| / ||tau_r||, where OnDARE's ||F_rand(tau_r)|| is about ||tau_r|| / sqrt(p) before its"
        " clamp lowers it, and OnTIES' ||F_topk(tau_r)|| at most ||tau_r||, less what the sign election drops."
        " The other columns are measured by this run: the median over a group's cells.",
    ]
    missing = frame.attrs.get("missing", [])
    if missing:
        notes.append(f"Left out, without a training log with a regime record ({len(missing)}): {', '.join(missing)}.")
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes) + "\n"


def _markdown_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _format(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None or math.isnan(value):
        return "-"
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e6):
        return f"{int(value)}"
    return f"{value:.3g}"
