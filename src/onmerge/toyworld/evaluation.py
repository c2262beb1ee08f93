"""Toy benchmarks through lm-eval: a task suite on disk, one model load per evaluation, one metrics JSON per model.

Every toy benchmark runs as an lm-eval task (YAML + local JSONL, found through `include_path`), the way a real
benchmark would, so prompt formatting, chat templating, batching, stopping and aggregation are lm-eval's own.

Choices that are not lm-eval defaults, and why:

* Each JSONL row carries the original doc as a JSON string (`doc_json`). `datasets` converts rows to Arrow, which
  fills missing keys of nested dicts with None and coerces mixed types; `score` must see the doc exactly as
  `benchmark_docs` made it.
* `TaskManager(include_defaults=False)`: indexing lm-eval's thousands of built-in task YAMLs takes seconds and none
  of them is used.
* Generation stops at `<|im_end|>` (lm-eval adds the tokenizer's EOS itself; see `onmerge.lm_evaluation`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from onmerge import sandbox
from onmerge.atomic import atomic_dir, write_json
from onmerge.items import Source, outcomes
from onmerge.lm_evaluation import CHAT_END, EVAL_SEED, run_lm_eval
from onmerge.toyworld import judge, suite, world

MANIFEST = "suite.json"

# process_results for generate_until tasks; lm-eval imports it from beside the YAML files.
_UTILS_PY = '''"""Written by onmerge.toyworld.evaluation: scores each generation with the toy suite's scorer."""

import json

from onmerge.toyworld import suite


def process_results(doc, results):
    return suite.score(doc["task"], json.loads(doc["doc_json"]), results[0])
'''


def write_task_suite(out_dir: Path, n_per_task: int, seed: int, tasks: Iterable[str] | None = None) -> Path:
    """Write one lm-eval task (YAML + JSONL) per toy benchmark, plus `utils.py` and a manifest; return the folder.

    The folder is built beside `out_dir` and renamed into place, so a reader never sees half a suite. YAMLs name
    their JSONL by absolute path: lm-eval resolves `data_files` against the working directory, not the YAML.
    """
    names = _check_tasks(suite.TASKS if tasks is None else list(tasks), suite.TASKS, "the toy suite")
    out_dir = Path(out_dir).resolve()
    with atomic_dir(out_dir) as staging:
        for name in names:
            docs = suite.docs(name, n_per_task, seed)
            rows = [_row(name, doc) for doc in docs]
            (staging / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
            (staging / f"{name}.yaml").write_text(_task_yaml(suite.TASKS[name], out_dir / f"{name}.jsonl"))
        (staging / "utils.py").write_text(_UTILS_PY)
        manifest = {"tasks": names, "n_per_task": n_per_task, "seed": seed}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out_dir


def evaluate_model(
    model_dir: Path,
    include_path: Path,
    tasks: list[str] | None = None,
    batch_size: int = 64,
    limit: int | None = None,
    device: str = "cpu",
    answers_path: Path | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, list]], list[dict[str, Any]]]:
    """Evaluate one model on suite tasks (default: all of them) with a single model load and greedy decoding.

    Returns `{column: {"value", "stderr", "n"}}` (`stderr` is lm-eval's standard error of the mean, NaN for n = 1),
    each column's items and the per-sample records (`onmerge.items`). With `answers_path`, the judged task's answers
    are written there (JSON, doc id -> answer) for the win rate.
    """
    suite_tasks = read_manifest(include_path)["tasks"]
    names = _check_tasks(suite_tasks if tasks is None else tasks, suite.TASKS, "the toy suite")
    _check_tasks(names, suite_tasks, f"the suite at {include_path}")
    if answers_path is not None and suite.JUDGE_TASK.name not in names:
        raise ValueError(f"answers_path needs the judged task {suite.JUDGE_TASK.name!r} among the evaluated tasks")
    if world.CODE_TASKS.intersection(names):
        sandbox.check_available()  # before the model generates anything its code would then not be run on
    results = run_lm_eval(
        model_dir,
        names,
        include_path=include_path,
        include_defaults=False,
        batch_size=batch_size,
        device=device,
        log_samples=True,  # the items of every column, and the judged task's answers
        limit=limit,
    )
    if answers_path is not None:
        _write_answers(results, answers_path)
    metrics = {column: entry for name in names for column, entry in _task_columns(results, suite.TASKS[name]).items()}
    sources = {
        column: Source(name, metric) for name in names for column, metric in _metric_of(suite.TASKS[name]).items()
    }
    items, records = outcomes(results, sources, suite.extracted_answer)
    return metrics, items, records


def write_results(metrics: Mapping[str, Mapping[str, float]], path: Path, *, include_path: Path) -> None:
    """Write metrics with what defines them (suite tasks and seeds, lm-eval version) as JSON, atomically.

    Nothing that varies between two runs of the same model (paths, times) goes in: those are the step's record.
    """
    import lm_eval

    manifest = read_manifest(include_path)
    payload = {
        "metrics": metrics,
        "provenance": {
            "tasks": [name for name in manifest["tasks"] if suite.TASKS[name].columns[0] in metrics],
            "n": {column: entry["n"] for column, entry in metrics.items()},
            "suite_seed": manifest["seed"],
            "n_per_task": manifest["n_per_task"],
            "eval_seed": EVAL_SEED,
            "lm_eval_version": lm_eval.__version__,
        },
    }
    write_json(path, payload)


def win_rates(include_path: Path, answers: dict[str, str], reference_answers: dict[str, str]) -> dict[str, Any]:
    """Toy AlpacaEval 2.0 against the SFT reference's answers on the suite's judge prompts, in the paper judges'
    layout (`onmerge.judges`): `metrics` (LC and raw win rate, percent); `provenance`: what was judged (the suite's
    judge prompts, their seed) and the counts of wins, ties and losses; and one judgment per prompt: the outcome and
    length difference, which the paired bootstrap (onmerge.paired) resamples, and both answers' judge points by
    component (`points`, `reference_points`: content, language, manner), which say what each win or loss came
    from. The command adds the answers files it read (`onmerge judge toy`)."""
    manifest = read_manifest(include_path)
    docs = suite.docs(suite.JUDGE_TASK.name, manifest["n_per_task"], manifest["seed"])
    missing = [doc["id"] for doc in docs if doc["id"] not in answers or doc["id"] not in reference_answers]
    if missing:
        raise ValueError(f"judged answers are missing for prompts {missing[:5]} (of {len(missing)})")
    prompts = [suite.item_of(doc) for doc in docs]
    ours = [answers[doc["id"]] for doc in docs]
    theirs = [reference_answers[doc["id"]] for doc in docs]
    outcomes, length_differences = judge.pairwise_outcomes(prompts, ours, theirs)
    lc = float(judge.length_controlled_win_rates(np.asarray(outcomes), np.asarray(length_differences, dtype=float)))
    count = len(outcomes)
    raw = 100.0 * sum(outcomes) / count
    raw_stderr = 100.0 * float(np.std(outcomes, ddof=1)) / math.sqrt(count) if count > 1 else math.nan
    judgments = []
    for doc, item, answer, reference, outcome, difference in zip(
        docs, prompts, ours, theirs, outcomes, length_differences, strict=True
    ):
        points, reference_points = judge.judge_points(item, answer), judge.judge_points(item, reference)
        judgments.append(
            {
                "id": doc["id"],
                "outcome": outcome,
                "length_difference": difference,
                "points": asdict(points),
                "reference_points": asdict(reference_points),
            }
        )
    return {
        "metrics": {
            "alpacaeval_lc": {"value": lc, "stderr": math.nan, "n": count},  # a fitted model's prediction: no SE
            "alpacaeval_raw": {"value": raw, "stderr": raw_stderr, "n": count},
        },
        "provenance": {
            "judge": "onmerge.toyworld.judge",  # programmatic: content, language and manner points
            "prompts": suite.JUDGE_TASK.name,
            "suite_seed": manifest["seed"],
            "prompts_judged": count,
            "wins": outcomes.count(1.0),
            "ties": outcomes.count(0.5),
            "losses": outcomes.count(0.0),
        },
        "judgments": judgments,
    }


def read_manifest(include_path: Path) -> dict[str, Any]:
    """The suite's tasks, docs per task and doc seed, as `write_task_suite` recorded them."""
    return json.loads((Path(include_path) / MANIFEST).read_text())


def _check_tasks(names: Iterable[str], known: Iterable[str], where: str) -> list[str]:
    names, known = list(names), set(known)
    if not names:
        raise ValueError(f"no tasks given (known in {where}: {sorted(known)})")
    for name in names:
        if name not in known:
            raise ValueError(f"unknown task {name!r}: not in {where} (known: {sorted(known)})")
    return names


def _row(task: str, doc: Mapping[str, Any]) -> dict[str, Any]:
    """The fields lm-eval reads, the task name `utils.process_results` needs, and the doc itself, verbatim."""
    row = {"task": task, "id": doc["id"], "prompt": doc["prompt"], "doc_json": json.dumps(doc)}
    if "choices" in doc:
        row |= {"choices": doc["choices"], "answer": doc["answer"]}
    return row


def _task_yaml(spec: suite.TaskSpec, data_file: Path) -> str:
    config: dict[str, Any] = {
        "task": spec.name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "output_type": spec.output_type,
        "num_fewshot": 0,
        "doc_to_text": "prompt",  # the user message; lm-eval wraps it in the tokenizer's chat template
        "metadata": {"version": 1.0},
    }
    if spec.output_type == "multiple_choice":
        if len(spec.columns) != 1:
            raise ValueError(f"multiple-choice task {spec.name!r} must report one column, got {spec.columns}")
        # With a chat template lm-eval scores each choice as the assistant's reply, with no delimiter before it.
        config |= {"doc_to_choice": "choices", "doc_to_target": "answer"}
        config["metric_list"] = [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]
        return yaml.safe_dump(config, sort_keys=False)
    config["doc_to_target"] = ""  # unused (process_results scores), but lm-eval renders a target for every prompt
    config["generation_kwargs"] = {
        "until": [CHAT_END],
        "do_sample": False,
        "temperature": 0.0,
        "max_gen_toks": spec.max_gen_toks,
    }
    config["metric_list"] = [
        {"metric": column, "aggregation": "mean", "higher_is_better": True} for column in spec.columns
    ]
    return yaml.safe_dump(config, sort_keys=False) + "process_results: !function utils.process_results\n"


def _task_columns(results: Mapping[str, Any], spec: suite.TaskSpec) -> dict[str, dict[str, float]]:
    """Read one task's columns from lm-eval's `results` ("<metric>,none", "<metric>_stderr,none"; "N/A" if n = 1)."""
    row = results["results"][spec.name]
    n = results["n-samples"][spec.name]["effective"]
    columns = {}
    for column, metric in _metric_of(spec).items():
        if f"{metric},none" not in row:
            raise KeyError(f"lm-eval reported no {metric!r} for task {spec.name!r} (got {sorted(row)})")
        stderr = row[f"{metric}_stderr,none"]
        columns[column] = {
            "value": float(row[f"{metric},none"]),
            "stderr": math.nan if stderr == "N/A" else float(stderr),
            "n": int(n),
        }
    return columns


def _metric_of(spec: suite.TaskSpec) -> dict[str, str]:
    """Column -> the lm-eval metric that scores it: a multiple-choice task's one column is lm-eval's `acc`."""
    return {spec.columns[0]: "acc"} if spec.output_type == "multiple_choice" else {c: c for c in spec.columns}


def _write_answers(results: Mapping[str, Any], path: Path) -> None:
    """The judged task's generations, doc id -> answer, written atomically."""
    samples = results["samples"][suite.JUDGE_TASK.name]
    answers = {sample["doc"]["id"]: sample["filtered_resps"][0] for sample in samples}
    write_json(path, dict(sorted(answers.items())))
