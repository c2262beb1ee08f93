"""How tables, figures and verdicts name what they show: columns, losses and rows (`LABELS`, else a method's
label), Table 1's groups, backbones (a toy one names the paper's backbone it mirrors) and training regimes.

Imports no pandas, as `rows`: the figures and curves that Snakemake imports while it parses the workflow name their
lines with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from onmerge import methods, worlds
from onmerge.grid import training_of
from onmerge.tables.rows import NON_METHOD_ROWS

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


def label_of(name: str) -> str:
    """How tables and figures print a column, loss or row: its `LABELS` entry, a method's label, else the name."""
    if name in LABELS:
        return LABELS[name]
    return methods.get(name).label if name in methods.names() else name


def row_label(preset: Mapping[str, Any], row: str) -> str:
    """A row's name in tables, figures and verdicts: the method row's `label`, else the paper's name for it."""
    return preset["methods"].get(row, {}).get("label") or label_of(row)


def backbone_title(preset: Mapping[str, Any], backbone: str) -> str:
    """A backbone as tables and figures name it (a toy one says which of the paper's it mirrors)."""
    return worlds.of(preset).backbone_title(preset, backbone)


def regime_title(preset: Mapping[str, Any], regime: str) -> str:
    """A regime (or `training`, the preset's own settings) as the tables name it: its name and what sets it apart,
    e.g. `small-step-bf16 (lr 3.6e-05, pure bf16)`."""
    settings = training_of(preset, regime if regime in preset.get("regimes", {}) else None)
    precision = "pure bf16" if settings.get("bf16") else "fp32"
    return f"{regime} (lr {settings['learning_rate']:g}, {precision})"
