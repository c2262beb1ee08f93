"""The paper's 14 benchmark columns as lm-eval tasks: IFEval and MMLU built in, the rest defined here.

This folder is lm-eval's `include_path`: one YAML per task (the data source is named in each YAML's header),
`utils.py` with the hooks the YAMLs call (`process_docs`, `process_results`, the sandbox filters) and `scoring.py`
with the scorers themselves. Every task is zero-shot with the model's chat template.

| column(s) | task | data | docs |
|---|---|---|---|
| gsm8k_acc | onmerge_gsm8k | openai/gsm8k main, test | all 1,319, greedy |
| math401_acc | onmerge_math401 | GanjinZero/math401-llm math401.json | 101 sampled docs, sampled decoding |
| math23k_acc | onmerge_math23k | Gxg/Math23K test23k_processed.json | 250 sampled docs, sampled decoding |
| ds1000_pass1 | onmerge_ds1000 | xlangai/DS-1000, test | 600 of the 955 non-TensorFlow problems |
| mbpp_pass1 | onmerge_mbpp | google-research-datasets/mbpp full, test | all 500 |
| codeapex_pass1 | onmerge_codeapex | APEXLAB/CodeApex code generation (English) | all 476, C++ |
| humaneval_pass1 | onmerge_humaneval | openai/openai_humaneval, test | all 164 |
| ifeval_strict_* | ifeval (built in) | google/IFEval | all 541 |
| coqa_acc | onmerge_coqa | EleutherAI/coqa, validation | every turn of all 500 stories |
| drop_acc | onmerge_drop | EleutherAI/drop, validation | the last question of each passage |
| mmlu_acc | mmlu (built in) | cais/mmlu, test | all 14,042, zero-shot |
| agent_nous_function_call_acc | onmerge_function_calling | the four NousResearch eval sets | all |
| code_switch_acc | onmerge_code_switch | a public substitute, see below | 113 + 131 |

Sampled subsets are seeded with `SUBSET_SEED`, the same draw on every machine and run; every doc keeps its
source id (`id`), and `onmerge.lm_evaluation.evaluated_doc_ids` reads from lm-eval's logged samples which ids a run
scored.

Code-switching substitute. The paper's set (113 translation requests and 131 open queries, in-house) is not
public. In its place: 113 sentence pairs sampled from WMT19 zh-en newstest2018 (wmt/wmt19, validation), asked
alternately as English->Chinese and Chinese->English translation requests (the request in the source language),
and 131 first user turns of OpenAssistant conversations (OpenAssistant/oasst1, train), 66 written in Chinese and
65 in English. A response passes when it is written in the expected language only (`scoring.single_language`):
judged by script, ignoring code, URLs, math, numbers and punctuation. A Chinese answer may keep proper names
(capitalised words, `of`/`and`/`de` between: Royal Bank of Scotland) and parenthesised glosses of a term, as human
translations do; an English phrase of three words or more that is neither is a switch of language.
"""

from __future__ import annotations

from pathlib import Path

# The top-level tasks whose metrics make the 14 columns (onmerge.lm_evaluation.PAPER_METRICS names them).
PAPER_TASKS: tuple[str, ...] = (
    "onmerge_gsm8k",
    "onmerge_math401",
    "onmerge_math23k",
    "onmerge_ds1000",
    "onmerge_mbpp",
    "onmerge_codeapex",
    "onmerge_humaneval",
    "ifeval",
    "onmerge_coqa",
    "onmerge_drop",
    "mmlu",
    "onmerge_function_calling",
    "onmerge_code_switch",
)
# The paper samples Math401 and Math23K ("sampled"); their YAMLs ask for do_sample and the preset's
# evaluation.sampling supplies the backbone's published sampling settings.
SAMPLED_TASKS: tuple[str, ...] = ("onmerge_math401", "onmerge_math23k")

# Draws every sampled subset; fixed so that every model of every preset is scored on the same documents.
SUBSET_SEED = 2405_17931  # the paper's arXiv number
SUBSET_SIZES: dict[str, int] = {
    "onmerge_math401": 101,
    "onmerge_math23k": 250,
    "onmerge_ds1000": 600,
    "onmerge_cs_translation": 113,
    "onmerge_cs_open_zh": 66,
    "onmerge_cs_open_en": 65,
}


def include_path() -> Path:
    """The folder to pass as lm-eval's `include_path` for the tasks above."""
    return Path(__file__).resolve().parent
