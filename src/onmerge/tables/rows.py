"""The rows of the paper's tables and figures: Table 1's rows (the methods `onmerge.methods` places in a group, and
the rows that are not a method of their own), the models a row covers in a study, and which of a searched row's
settings is reported.

The tables, figures, training curves and verdicts all find a row's models here, so they never disagree on what a row
is. Snakemake imports this module (through `onmerge.figures` and `onmerge.curves`) while it parses the workflow:
it imports no pandas.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from onmerge import methods
from onmerge.grid import MERGES, Checkpoint, MergeCell, Model, method_cells, offline_merges, seed_replicates

if TYPE_CHECKING:
    from onmerge.tables.results import Results

SELECT_BY = "benchmark_avg"  # the paper keeps the "best" searched setting without naming the metric


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


Candidate = tuple[Model, ...]  # one setting of a row: its model for each seed


def select_by(preset: Mapping[str, Any]) -> str:
    """The metric that picks a searched row's setting (the preset's `select_by`)."""
    return preset.get("select_by", SELECT_BY)


def setting_of(candidate: Candidate) -> str:
    """The hyper-parameters that tell a row's settings apart, e.g. `density=0.3, weight=0.5` for a merge."""
    model = candidate[0]
    if isinstance(model, Checkpoint):
        return ""
    return ", ".join(f"{name}={value:g}" for name, value in model.params)


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


def choose(results: Results, candidates: list[Candidate], select_by: str) -> tuple[Candidate | None, list[str]]:
    """The best setting by `select_by`; with a setting unmeasured the search is incomplete: (None, what lacks it)."""
    if len(candidates) == 1:
        return candidates[0], []
    lacking = [path for candidate in candidates for path in results.lacking(candidate, select_by)]
    if lacking:
        return None, lacking
    return max(candidates, key=lambda candidate: results.estimate(candidate, select_by).value), []
