"""The paper's tables from the pipeline's results.csv, beside the published numbers (results/paper/*.csv).

Each table is first a tidy frame (one record per backbone x row x column), then Markdown, CSV, LaTeX and HTML. A
row's value is the mean over its seeds; its uncertainty is lm-eval's standard error carried through that mean
(`stderr`) and, with several seeds, their standard deviation (`seed_sd`). A searched row (the KL and EMA searches, the
offline merges' density x weight grid) reports the setting with the best `select_by` metric and names it. A cell the
preset plans but the results lack is `missing`; a row the preset does not plan is `not run`; neither is dropped or
filled.

The modules, each building on those before it:
- `rows`: a table's rows, the models each covers in a study, and which setting a searched row reports;
- `labels`: how tables, figures and verdicts name rows, columns, backbones and regimes;
- `results`: results.csv, looked up by model and metric;
- `frames`: the tidy layout every table shares; Table 1's differences from AdamW; the best and second best marks;
- `published`: the paper's tables in that layout, and ours beside them;
- `build`: every table a preset makes, from results.csv;
- `render`: the Markdown, LaTeX and HTML pages (the CSV is the tidy frame itself).

This module names the tables a preset makes. Snakemake imports it, and `rows` and `labels` through the figures,
while it parses the workflow: these three import no pandas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from onmerge import worlds

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
JUDGE_STUDIES = ("interpolation", "precision")  # either gives the toy judge's table its rows
# The file in results/paper that holds each published table (Table 1 is computed from Table 4: each row minus AdamW).
PAPER_FILES = {
    "table1": "table4_main.csv",
    "table4": "table4_main.csv",
    "tables5to7": "tables5to7_per_benchmark.csv",
    "table2": "table2_alpha_sweep.csv",
    "table3": "table3_rlhf_algorithms.csv",
}


def table_names(preset: Mapping[str, Any]) -> list[str]:
    """The tables a preset's studies make (the main tables need study `table1`, Table 2 `table2`, ...; the judge's
    components, where its world's judge gives them (the toy's), need the precision or the interpolation study)."""
    names = [name for name, study in STUDY_OF_TABLE.items() if study in preset["studies"]]
    if worlds.of(preset).judge_components and set(JUDGE_STUDIES) & set(preset["studies"]):
        names.append("judge")
    return names
