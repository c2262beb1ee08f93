"""The paper world's `onmerge` commands (`fetch-model`, `ultrafeedback`, `evaluate lm-eval`, `answers ...`,
`judge mt-bench`, `judge alpacaeval`): the paper adapter's entry points (`onmerge.worlds`), registered with
`onmerge.cli`'s commands when it builds its parser. `--backend`'s choices are lm-eval's backends
(`onmerge.lm_evaluation`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from onmerge.commands import MODEL, OUT, OUT_DIR, Argument, argument, command, recorded
from onmerge.lm_evaluation import BACKENDS

_BACKEND = argument(
    "--backend",
    choices=BACKENDS,
    default="hf",
    help="what generates: hf (transformers, CUDA if any) or vllm (a GPU, .venv-vllm); default hf",
)
_BATCH_SIZE = argument("--batch-size", type=int, default=16, help="transformers' batch (vLLM batches by itself)")
_SUBSET = "only the first N (tests, smoke runs); without it the full set is required"
_JUDGED_SOURCES = {
    "questions": "MT-Bench questions in FastChat's question.jsonl schema: a file, hf://datasets/... or a URL",
    "instructions": "AlpacaEval 2.0 instructions with the reference outputs (alpaca_eval_gpt4_baseline.json)",
}


def _sampling_setting(text: str) -> tuple[str, float]:
    """`KEY=VALUE` of `--sampling`, the value a number (checked against its range by run_lm_eval)."""
    key, _, value = text.partition("=")
    try:
        return key, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=NUMBER (e.g. top_p=0.8)") from None


@command(
    "fetch-model",
    "a paper backbone's checkpoint: local folder or hub id",
    argument("--source", required=True),
    OUT,
)
def _fetch_model(args: argparse.Namespace) -> None:
    from onmerge.checkpoints import fetch_model

    fetch_model(args.source, args.out)


@command(
    "ultrafeedback",
    "UltraFeedback binarized as trl preference rows",
    argument("--dataset", required=True, help="hub id or local folder in the dataset's own schema"),
    argument("--train-split", required=True),
    argument("--test-split", required=True),
    OUT_DIR,
)
def _ultrafeedback(args: argparse.Namespace) -> None:
    from onmerge.preferences import write_ultrafeedback

    write_ultrafeedback(args.dataset, args.train_split, args.test_split, args.out_dir)


@command(
    "evaluate lm-eval",
    "lm-eval tasks (built-in or under --include-path)",
    MODEL,
    argument("--tasks", nargs="+", required=True),
    argument("--include-path", type=Path, help="folder of custom task YAMLs (default: onmerge.lm_tasks)"),
    _BACKEND,
    _BATCH_SIZE,
    argument(
        "--sampling",
        nargs="+",
        type=_sampling_setting,
        default=[],
        metavar="KEY=VALUE",
        help="generation settings of the sampled tasks (temperature, top_p, top_k, repetition_penalty)",
    ),
    argument("--metrics", type=Path, required=True),
    argument("--items", type=Path, required=True, help="the 14 columns' per-item scores (onmerge.items)"),
    argument("--samples", type=Path, required=True, help="every sample's record, for audit (onmerge.items)"),
)
def _evaluate_lm_eval(args: argparse.Namespace) -> None:
    import lm_eval
    import torch

    from onmerge import lm_tasks
    from onmerge.atomic import write_json
    from onmerge.items import lm_eval_source, outcomes, write_items, write_samples
    from onmerge.lm_evaluation import (
        EVAL_SEED,
        PAPER_METRICS,
        check_sampling,
        evaluated_doc_ids,
        run_lm_eval,
        task_metrics,
    )
    from onmerge.lm_tasks.utils import extracted_answer

    include_path = args.include_path or lm_tasks.include_path()
    sampling = check_sampling(dict(args.sampling))
    settings = {
        "tasks": args.tasks,
        "sampling": sampling,
        "backend": args.backend,
        "batch_size": args.batch_size,
        "eval_seed": EVAL_SEED,
        "subset_seed": lm_tasks.SUBSET_SEED,
    }
    # the package's own tasks are code (the git commit names them); a user's include path is data, hashed
    with recorded("evaluate", args.metrics, settings, {"model": args.model, "include_path": args.include_path}):
        results = run_lm_eval(
            args.model,
            args.tasks,
            include_path=include_path,
            batch_size=args.batch_size,
            device="cuda" if torch.cuda.is_available() else "cpu",
            log_samples=True,  # for the items of every column and the ids of the docs each task scored
            sampling=sampling,
            backend=args.backend,
        )
        metrics = task_metrics(results)
        sources = {name: lm_eval_source(name) for name in PAPER_METRICS if name in metrics}  # the 14 columns
        items, records = outcomes(results, sources, extracted_answer)
        write_items(args.items, items, metrics)
        write_samples(args.samples, records)
        provenance = {
            "tasks": args.tasks,
            "sampling": sampling,
            "eval_seed": EVAL_SEED,
            "subset_seed": lm_tasks.SUBSET_SEED,
            "lm_eval": lm_eval.__version__,
            "doc_ids": evaluated_doc_ids(results),
        }
        write_json(args.metrics, {"metrics": metrics, "provenance": provenance})


def _answers_arguments(source: str) -> tuple[Argument, ...]:
    """`onmerge answers <benchmark>`'s arguments; `source` names the option of its prompts."""
    return (
        MODEL,
        argument(f"--{source}", required=True, help=_JUDGED_SOURCES[source]),
        argument("--generation", required=True, help='JSON sampling settings, e.g. {"do_sample": true, ...}'),
        OUT,
        argument("--limit", type=int, metavar="N", help=_SUBSET),
        argument("--seed", type=int, default=1234, help="generation seed (default 1234)"),
        _BACKEND,
        _BATCH_SIZE,
    )


def _answer(args: argparse.Namespace, write_answers, prompts: str) -> None:
    """Generate one model's answers to a judged benchmark's prompts with `write_answers`, recording the step."""
    from onmerge.judges.transport import public_url

    settings = {
        "prompts": public_url(prompts),
        "generation": json.loads(args.generation),
        "seed": args.seed,
        "limit": args.limit,
        "backend": args.backend,
        "batch_size": args.batch_size,
    }
    options = {"limit": args.limit, "seed": args.seed, "batch_size": args.batch_size, "backend": args.backend}
    with recorded("answers", args.out, settings, {"model": args.model}):
        write_answers(args.model, prompts, args.generation, args.out, **options)


@command(
    "answers mt-bench",
    "generate the model's mt-bench answers (transformers or vLLM)",
    *_answers_arguments("questions"),
)
def _answers_mt_bench(args: argparse.Namespace) -> None:
    from onmerge.judges.answers import write_mt_bench_answers

    _answer(args, write_mt_bench_answers, args.questions)


@command(
    "answers alpacaeval",
    "generate the model's alpacaeval answers (transformers or vLLM)",
    *_answers_arguments("instructions"),
)
def _answers_alpacaeval(args: argparse.Namespace) -> None:
    from onmerge.judges.answers import write_alpacaeval_outputs

    _answer(args, write_alpacaeval_outputs, args.instructions)


def _judge_arguments(benchmark: str) -> tuple[Argument, ...]:
    """What `onmerge judge <benchmark>` takes besides its prompts and its own options."""
    return (
        argument("--answers", type=Path, required=True, help=f"from `onmerge answers {benchmark}`"),
        argument("--cache", type=Path, required=True, help="folder of cached judgments (shared across runs)"),
        OUT,
        argument("--limit", type=int, metavar="N", help=_SUBSET),
        argument("--judge-model", help="override the judge model (default: $ONMERGE_JUDGE_MODEL, else the paper's)"),
        argument("--workers", type=int, default=8, help="concurrent judge requests (default 8)"),
        argument(
            "--attempts",
            type=int,
            metavar="N",
            help="requests per judgment before an unscorable one is recorded as failed (default 3)",
        ),
    )


def _judge_through_api(args: argparse.Namespace, benchmark: str, judge_file, prompts: str, **options: Any) -> None:
    """Score one answers file with a judged benchmark's `judge_file`, recording the step (sources named without the
    credentials a URL may hold)."""
    from onmerge.judges.transport import public_url

    given = {"prompts": prompts, "limit": args.limit, "judge_model": args.judge_model, "attempts": args.attempts}
    settings = {
        name: public_url(value) if isinstance(value, str) else value for name, value in (given | options).items()
    }
    attempts = {} if args.attempts is None else {"scoring_attempts": args.attempts}
    with recorded("judge", args.out, settings, {"answers": args.answers}):
        client = judge_file(
            prompts,
            args.answers,
            args.cache,
            args.out,
            limit=args.limit,
            judge_model_choice=args.judge_model,
            workers=args.workers,
            **options,
            **attempts,
        )
    print(
        f"{benchmark}: {client.cache_hits} judgments cached, {client.cache_misses} requested, {client.failed} failed "
        f"-> {args.out}"
    )


@command(
    "judge mt-bench",
    "MT-Bench 1-10 grading through an OpenAI-compatible judge",
    argument("--questions", required=True, help=_JUDGED_SOURCES["questions"]),
    argument("--references", help="FastChat's reference_answer/gpt-4.jsonl (else the questions' reference)"),
    *_judge_arguments("mt-bench"),
)
def _judge_mt_bench(args: argparse.Namespace) -> None:
    from onmerge.judges import mt_bench

    _judge_through_api(args, "MT-Bench", mt_bench.judge_file, args.questions, references=args.references)


@command(
    "judge alpacaeval",
    "AlpacaEval 2.0 LC win rate through an OpenAI-compatible judge",
    argument("--instructions", required=True, help=_JUDGED_SOURCES["instructions"]),
    argument("--gamed-annotations", help="alpaca_eval's df_gamed.csv (needed by the default GLM)"),
    argument("--glm", default="length_controlled_v1", help="alpaca_eval's GLM (default length_controlled_v1)"),
    *_judge_arguments("alpacaeval"),
)
def _judge_alpacaeval(args: argparse.Namespace) -> None:
    from onmerge.judges import alpacaeval

    options = {"gamed_source": args.gamed_annotations, "glm_name": args.glm}
    _judge_through_api(args, "AlpacaEval", alpacaeval.judge_file, args.instructions, **options)
