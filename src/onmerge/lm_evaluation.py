"""lm-eval for every model of every preset: one model load, chat template, fixed seeds, every metric with stderr.

The toy suite (`onmerge.toyworld.evaluation`) and the paper presets' benchmarks both run through `run_lm_eval`.

`<|im_end|>` ends generation. lm-eval decodes with special tokens skipped, so its own cut at a stop string only
works while that string is in the text; `_stop_at_chat_end` makes `generate` itself finish a row at `<|im_end|>`,
so a row that ends early in a batch is padded, not continued.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CHAT_END = "<|im_end|>"
EVAL_SEED = 1234  # lm-eval's python/numpy/torch/few-shot seeds; greedy zero-shot runs should not depend on them
# lm-eval's metrics (as task_metrics names them) under the paper's column names (onmerge.aggregate.PAPER_COLUMNS),
# for the built-in tasks whose metric is the paper's. Columns not named here show as missing in the tables.
PAPER_METRICS: dict[str, str] = {
    "gsm8k/exact_match,strict-match": "gsm8k_acc",
    "mbpp/pass_at_1": "mbpp_pass1",
    "ifeval/prompt_level_strict_acc": "ifeval_strict_prompt_acc",
    "ifeval/inst_level_strict_acc": "ifeval_strict_instruction_acc",
    "mmlu/acc": "mmlu_acc",
}


def run_lm_eval(
    model_dir: Path,
    tasks: list[str],
    *,
    include_path: Path | None = None,
    include_defaults: bool = True,
    batch_size: int = 16,
    device: str = "cpu",
    log_samples: bool = False,
    limit: int | None = None,
) -> dict[str, Any]:
    """lm-eval's results dict for `tasks` (built-in names and those under `include_path`), chat template applied."""
    from lm_eval import simple_evaluate  # imported here: seconds, and most callers of this module do not need it
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    task_manager = TaskManager(
        include_path=None if include_path is None else str(include_path), include_defaults=include_defaults
    )
    lm = HFLM(pretrained=str(model_dir), batch_size=batch_size, device=device)
    _stop_at_chat_end(lm)
    return simple_evaluate(
        model=lm,
        tasks=tasks,
        task_manager=task_manager,
        apply_chat_template=True,
        limit=limit,
        log_samples=log_samples,
        random_seed=EVAL_SEED,
        numpy_random_seed=EVAL_SEED,
        torch_random_seed=EVAL_SEED,
        fewshot_random_seed=EVAL_SEED,
    )


def task_metrics(results: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Every metric lm-eval reported, as `{"<task>/<metric>": {"value", "stderr", "n"}}` (stderr NaN where N/A)."""
    metrics = {}
    for task, row in results["results"].items():
        n = results.get("n-samples", {}).get(task, {}).get("effective", math.nan)
        for key, value in row.items():
            metric, _, filter_name = key.partition(",")
            if metric.endswith("_stderr") or not filter_name or not isinstance(value, int | float):
                continue
            stderr = row.get(f"{metric}_stderr,{filter_name}", "N/A")
            name = f"{task}/{metric}" if filter_name == "none" else f"{task}/{metric},{filter_name}"
            metrics[name] = {
                "value": float(value),
                "stderr": math.nan if stderr == "N/A" else float(stderr),
                "n": n,
            }
    return metrics


def _stop_at_chat_end(lm: Any) -> None:
    """Add `<|im_end|>` to the model's EOS ids for `generate` (see the module docstring)."""
    tokenizer, config = lm.tokenizer, lm.model.generation_config
    chat_end = tokenizer.convert_tokens_to_ids(CHAT_END)
    if chat_end is None or chat_end == tokenizer.unk_token_id:
        return
    eos = config.eos_token_id
    eos_ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    if chat_end not in eos_ids:
        config.eos_token_id = [*eos_ids, chat_end]
