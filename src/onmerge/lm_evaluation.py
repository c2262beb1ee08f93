"""lm-eval for every model of every preset: one model load, chat template, fixed seeds, every metric with stderr.

The toy suite (`onmerge.toyworld.evaluation`) and the paper presets' benchmarks (`onmerge.lm_tasks`) both run
through `run_lm_eval`.

Sampled tasks: a task whose own config asks for `do_sample: true` (the paper samples Math401 and Math23K) takes the
how from the caller's `sampling` (a preset's `evaluation.sampling`: the backbone's published temperature, top-p,
top-k, repetition penalty). lm-eval applies `gen_kwargs` to every task of a `simple_evaluate` call, so those tasks
run in a second call on the same loaded model, and the two results are merged.

`<|im_end|>` ends generation. lm-eval decodes with special tokens skipped, so its own cut at a stop string only
works while that string is in the text; `_stop_at_chat_end` makes `generate` itself finish a row at `<|im_end|>`,
so a row that ends early in a batch is padded, not continued.

Backends: `hf` (lm-eval's HFLM, the default) or `vllm` (lm-eval's vLLM model, on a GPU in its own environment). vLLM
gets what HFLM decodes with spelled out in each call's `gen_kwargs` (`onmerge.vllm_sampling`): the model's own
generation config under the task's and the caller's settings (greedy tasks keep the model's repetition penalty, as
`generate` does), the same stop tokens, special tokens skipped, and the same seed; what it cannot do the same way is
refused before the model loads.

Code tasks (HumanEval, MBPP, DS-1000, CodeApex) declare `unsafe_code: true`, lm-eval's mark for a task that executes
model-written code; lm-eval refuses to run one unless the call confirms it. `run_lm_eval` confirms it for a call that
includes such a task, and only for that call; the code itself runs in `onmerge.sandbox`.

lm-eval's `simple_evaluate` adds torch's `collect_env` report to its results: about a dozen subprocesses (pip,
conda, nvidia-smi, ...), 7 s of each call on this project's CPUs, for a dict entry no caller keeps. The run's
provenance records the software once per run, so `run_lm_eval` skips the report (`_without_environment_report`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onmerge import sandbox

if TYPE_CHECKING:
    from lm_eval.tasks import TaskManager

BACKENDS = ("hf", "vllm")
CHAT_END = "<|im_end|>"
EVAL_SEED = 1234  # lm-eval's python/numpy/torch/few-shot seeds: set before each call, so sampled draws repeat
# lm-eval's metrics (as task_metrics names them) under the paper's column names (onmerge.aggregate.PAPER_COLUMNS):
# one metric of a task of onmerge.lm_tasks.PAPER_TASKS for each of the 14 columns.
PAPER_METRICS: dict[str, str] = {
    "onmerge_gsm8k/acc": "gsm8k_acc",
    "onmerge_math401/acc": "math401_acc",
    "onmerge_math23k/acc": "math23k_acc",
    "onmerge_ds1000/pass_at_1,sandbox": "ds1000_pass1",
    "onmerge_mbpp/pass_at_1,sandbox": "mbpp_pass1",
    "onmerge_codeapex/pass_at_1,sandbox": "codeapex_pass1",
    "onmerge_humaneval/pass_at_1,sandbox": "humaneval_pass1",
    "ifeval/prompt_level_strict_acc": "ifeval_strict_prompt_acc",
    "ifeval/inst_level_strict_acc": "ifeval_strict_instruction_acc",
    "onmerge_coqa/keyword_recall": "coqa_acc",
    "onmerge_drop/keyword_recall": "drop_acc",
    "mmlu/acc": "mmlu_acc",
    "onmerge_function_calling/acc": "agent_nous_function_call_acc",
    "onmerge_code_switch/no_mixing": "code_switch_acc",
}
# What `sampling` may set, and the range of each (transformers' generate arguments).
SAMPLING_KEYS: dict[str, tuple[type, float, float]] = {
    "temperature": (float, 0.0, math.inf),
    "top_p": (float, 0.0, 1.0),
    "top_k": (int, 0, math.inf),
    "repetition_penalty": (float, 0.0, math.inf),
}
# The dict-valued parts of lm-eval's results that hold one entry per task or group.
_PER_TASK_KEYS = (
    "results",
    "group_subtasks",
    "configs",
    "versions",
    "n-shot",
    "higher_is_better",
    "n-samples",
    "samples",
)


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
    sampling: Mapping[str, float] | None = None,
    backend: str = "hf",
) -> dict[str, Any]:
    """lm-eval's results dict for `tasks` (built-in names and those under `include_path`), chat template applied.

    Task names, `sampling` and the backend are checked before the model loads; sampled tasks need `sampling` (module
    docstring). `batch_size` and `device` are HFLM's: vLLM batches by itself on the GPU it is given.
    """
    from lm_eval import simple_evaluate  # imported here: seconds, and most callers of this module do not need it
    from lm_eval.tasks import TaskManager

    if backend not in BACKENDS:
        raise ValueError(f"unknown generation backend {backend!r} (known: {', '.join(BACKENDS)})")
    task_manager = TaskManager(
        include_path=None if include_path is None else str(include_path), include_defaults=include_defaults
    )
    greedy, sampled = split_sampled_tasks(task_manager, tasks)
    if sampled and not sampling:
        raise ValueError(f"tasks {sampled} sample their answers: give the sampling settings (evaluation.sampling)")
    passes = [(greedy, None), (sampled, {"do_sample": True, **check_sampling(sampling or {})})]
    unsafe = {name for name in tasks if runs_unsafe_code(task_manager, name)}
    if unsafe:
        sandbox.check_available()  # before the model generates anything its code would then not be run on
    if backend == "vllm":
        from onmerge.vllm_sampling import checkpoint_dtype

        passes = [(names, vllm_gen_kwargs(model_dir, gen_kwargs)) for names, gen_kwargs in passes if names]
        dtype = checkpoint_dtype(model_dir)
        from lm_eval.models.vllm_causallms import VLLM  # needs vllm: imported once the settings are known to carry

        lm = VLLM(pretrained=str(model_dir), dtype=dtype, seed=EVAL_SEED, batch_size="auto")
    else:
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=str(model_dir), batch_size=batch_size, device=device)
        _stop_at_chat_end(lm)
    with _without_environment_report():
        runs = [
            simple_evaluate(
                model=lm,
                tasks=names,
                task_manager=task_manager,
                apply_chat_template=True,
                gen_kwargs=gen_kwargs,
                limit=limit,
                log_samples=log_samples,
                random_seed=EVAL_SEED,
                numpy_random_seed=EVAL_SEED,
                torch_random_seed=EVAL_SEED,
                fewshot_random_seed=EVAL_SEED,
                confirm_run_unsafe_code=not unsafe.isdisjoint(names),
            )
            for names, gen_kwargs in passes
            if names
        ]
    return merge_results(runs)


@contextlib.contextmanager
def _without_environment_report() -> Iterator[None]:
    """lm-eval's `simple_evaluate` without its environment report (module docstring); restored on the way out."""
    from lm_eval import evaluator

    report = evaluator.add_env_info
    evaluator.add_env_info = lambda results: None
    try:
        yield
    finally:
        evaluator.add_env_info = report


def vllm_gen_kwargs(model_dir: Path, gen_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """A call's `gen_kwargs` for lm-eval's vLLM model: what HFLM decodes with (the model's generation config under
    the call's `gen_kwargs`, greedy unless they sample), every setting explicit (module docstring)."""
    from transformers import AutoTokenizer

    from onmerge.vllm_sampling import load_generation_config, sampling_arguments, stop_token_ids

    config = load_generation_config(model_dir)
    config.update(**{"do_sample": False, **(gen_kwargs or {})})
    config.eos_token_id = stop_token_ids(config, AutoTokenizer.from_pretrained(model_dir))
    return {"do_sample": config.do_sample, **sampling_arguments(config)}


def split_sampled_tasks(task_manager: TaskManager, tasks: list[str]) -> tuple[list[str], list[str]]:
    """(greedy, sampled) task names, in the given order; unknown names are an error that lists them."""
    if not tasks:
        raise ValueError("no lm-eval tasks given")
    unknown = [name for name in tasks if name not in task_manager.task_index]
    if unknown:
        raise ValueError(f"unknown lm-eval tasks {unknown} (is the include path right?)")
    sampled = [name for name in tasks if _samples(task_manager, name)]
    return [name for name in tasks if name not in sampled], sampled


def _leaf_configs(task_manager: TaskManager, name: str) -> list[Mapping[str, Any]]:
    """The configs of the tasks a name runs: itself, or every task of a group or tag, recursively."""
    from lm_eval.tasks._index import Kind

    entry = task_manager.task_index[name]
    config = entry.cfg or {}
    if entry.kind is Kind.GROUP:
        children = [child if isinstance(child, str) else child.get("task") for child in config.get("task", [])]
    elif entry.kind is Kind.TAG:
        children = sorted(entry.tags)
    else:
        return [config]
    return [
        leaf for child in children if child in task_manager.task_index for leaf in _leaf_configs(task_manager, child)
    ]


def _samples(task_manager: TaskManager, name: str) -> bool:
    """Whether a task's own config asks for sampling; for a group or tag, whether all its tasks do (mixed: error)."""
    flags = {
        bool((config.get("generation_kwargs") or {}).get("do_sample")) for config in _leaf_configs(task_manager, name)
    }
    if len(flags) > 1:
        raise ValueError(f"group {name!r} mixes sampled and greedy tasks: name its tasks separately")
    return flags == {True}


def runs_unsafe_code(task_manager: TaskManager, name: str) -> bool:
    """Whether a task declares lm-eval's `unsafe_code` (it executes model-written code); a group or tag, any task."""
    return any(config.get("unsafe_code") for config in _leaf_configs(task_manager, name))


def check_sampling(sampling: Mapping[str, float]) -> dict[str, float]:
    """The sampling settings, each key known and in range; a ValueError names the first one that is not."""
    checked = {}
    for key, value in sampling.items():
        if key not in SAMPLING_KEYS:
            raise ValueError(f"unknown sampling setting {key!r} (known: {sorted(SAMPLING_KEYS)})")
        kind, low, high = SAMPLING_KEYS[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
            raise ValueError(f"sampling setting {key}={value!r} is not {'an integer' if kind is int else 'a number'}")
        if not low < value <= high:
            raise ValueError(f"sampling setting {key}={value} is out of range ({low}, {high}]")
        checked[key] = kind(value)
    return checked


def merge_results(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One results dict from several `simple_evaluate` calls on disjoint tasks: the per-task parts joined."""
    if not runs:
        raise ValueError("no lm-eval results to merge")
    merged = dict(runs[0])
    for run in runs[1:]:
        for key in _PER_TASK_KEYS:
            if key in run:
                merged[key] = {**merged.get(key, {}), **run[key]}
    return merged


def task_metrics(results: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Every metric lm-eval reported, as `{"<task>/<metric>": {"value", "stderr", "n"}}` (stderr NaN where N/A).

    A group's `n` is the sum over its tasks.
    """
    metrics = {}
    for task, row in results["results"].items():
        n = _effective_n(results, task)
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


def _effective_n(results: Mapping[str, Any], task: str) -> float:
    if task in results.get("n-samples", {}):
        return results["n-samples"][task]["effective"]
    subtasks = results.get("group_subtasks", {}).get(task)
    if not subtasks:
        return math.nan
    return sum(_effective_n(results, subtask) for subtask in subtasks)


def evaluated_doc_ids(results: Mapping[str, Any]) -> dict[str, list[str | int]]:
    """Per task, the ids of the docs it scored (from lm-eval's logged samples), in lm-eval's doc order.

    A doc's `id` field where it has one (every onmerge.lm_tasks doc), else lm-eval's index of the doc in its split.
    """
    if "samples" not in results:
        raise ValueError("lm-eval results without logged samples: run with log_samples=True to record doc ids")
    doc_ids = {}
    for task, samples in results["samples"].items():
        by_index = {sample["doc_id"]: sample["doc"].get("id", sample["doc_id"]) for sample in samples}
        doc_ids[task] = [by_index[index] for index in sorted(by_index)]
    return doc_ids


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
