"""`onmerge` command line: one command per pipeline step (what the workflow's rules run), and the benchmarks.

Heavy libraries are imported inside each command, so `onmerge --help` and a bad argument answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _threads(count: int) -> None:
    import torch

    torch.set_num_threads(count)  # tiny models: one thread per process is fastest (two cores run two jobs)


@contextmanager
def _recorded(step: str, out: Path, settings: Mapping[str, Any], inputs: Mapping[str, Path | None]) -> Iterator[None]:
    """Time the step's body, then write its provenance record beside `out` (under accelerate, from rank 0 only)."""
    from onmerge.provenance import write_step_record

    started = time.perf_counter()
    yield
    if os.environ.get("RANK", "0") == "0":
        write_step_record(out, step, settings, inputs, time.perf_counter() - started)


def _toy_tokenizer(args: argparse.Namespace) -> None:
    from onmerge.toyworld.models import train_tokenizer
    from onmerge.toyworld.world import tokenizer_corpus

    train_tokenizer(tokenizer_corpus(args.seed), args.out, args.arch)


def _toy_base(args: argparse.Namespace) -> None:
    from onmerge.toyworld.backbones import SCALES
    from onmerge.toyworld.models import build_base

    _threads(args.threads)
    settings = {"backbone": args.backbone, "scale": args.scale, "seed": args.seed}
    with _recorded("build", args.out, settings, {"tokenizer": args.tokenizer}):
        build_base(args.backbone, args.out, SCALES[args.scale], args.seed, tokenizer_dir=args.tokenizer)


def _toy_sft(args: argparse.Namespace) -> None:
    from onmerge.toyworld.backbones import SCALES
    from onmerge.toyworld.models import build_sft

    _threads(args.threads)
    with _recorded("build", args.out, {"scale": args.scale, "seed": args.seed}, {"base": args.base}):
        build_sft(args.base, args.out, SCALES[args.scale], args.seed)


def _toy_preferences(args: argparse.Namespace) -> None:
    from onmerge.toyworld.experiment import write_preferences

    write_preferences(args.out_dir, args.pairs, args.seed)


def _toy_suite(args: argparse.Namespace) -> None:
    from onmerge.toyworld.evaluation import write_task_suite

    write_task_suite(args.out, args.docs_per_task, args.seed)


def _fetch_model(args: argparse.Namespace) -> None:
    from onmerge.checkpoints import fetch_model

    fetch_model(args.source, args.out)


def _ultrafeedback(args: argparse.Namespace) -> None:
    from onmerge.preferences import write_ultrafeedback

    write_ultrafeedback(args.dataset, args.train_split, args.test_split, args.out_dir)


def _train(args: argparse.Namespace) -> None:
    from onmerge.preferences import read_rows
    from onmerge.training import OptimizerSpec, PreferenceTraining, train_preference

    settings = json.loads(args.settings)
    _threads(args.threads)
    inputs = {"sft": args.sft, "base": args.base, "preferences": args.preferences}
    with _recorded("train", args.out, settings, inputs):
        train_preference(
            sft=args.sft,
            base=args.base,
            rows=read_rows(args.preferences),
            out=args.out,
            training_log=args.training_log,
            training=PreferenceTraining(**settings["training"]),
            optimizer=OptimizerSpec(**settings["optimizer"]),
            rows_from=str(args.preferences),
        )


def _merge(args: argparse.Namespace) -> None:
    from onmerge.merging import merge_with_reference

    _threads(args.threads)
    settings = {"method": args.method, "weight": args.weight, "density": args.density, "seed": args.seed}
    with _recorded("merge", args.out, settings, {"rlhf": args.rlhf, "sft": args.sft, "base": args.base}):
        merge_with_reference(
            args.method,
            rlhf=args.rlhf,
            sft=args.sft,
            base=args.base,
            weight=args.weight,
            density=args.density,
            out=args.out,
            seed=args.seed,
        )


def _evaluate_toy(args: argparse.Namespace) -> None:
    from onmerge.items import write_items, write_samples
    from onmerge.toyworld.evaluation import EVAL_SEED, evaluate_model, write_results

    _threads(args.threads)
    with _recorded("evaluate", args.metrics, {"eval_seed": EVAL_SEED}, {"model": args.model, "suite": args.suite}):
        metrics, items, records = evaluate_model(args.model, args.suite, answers_path=args.answers)
        write_items(args.items, items, metrics)
        write_samples(args.samples, records)
        write_results(metrics, args.metrics, include_path=args.suite)


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
    with _recorded("evaluate", args.metrics, settings, {"model": args.model, "include_path": args.include_path}):
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


def _sampling_setting(text: str) -> tuple[str, float]:
    """`KEY=VALUE` of `--sampling`, the value a number (checked against its range by run_lm_eval)."""
    key, _, value = text.partition("=")
    try:
        return key, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=NUMBER (e.g. top_p=0.8)") from None


def _judge_toy(args: argparse.Namespace) -> None:
    from onmerge.atomic import write_json
    from onmerge.toyworld.evaluation import win_rates

    inputs = {"answers": args.answers, "reference_answers": args.reference_answers, "suite": args.suite}
    with _recorded("judge", args.out, {}, inputs):
        answers, reference = (json.loads(path.read_text()) for path in (args.answers, args.reference_answers))
        write_json(args.out, win_rates(args.suite, answers, reference))


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
    with _recorded("answers", args.out, settings, {"model": args.model}):
        write_answers(args.model, prompts, args.generation, args.out, **options)


def _answers_mt_bench(args: argparse.Namespace) -> None:
    from onmerge.judges.answers import write_mt_bench_answers

    _answer(args, write_mt_bench_answers, args.questions)


def _answers_alpacaeval(args: argparse.Namespace) -> None:
    from onmerge.judges.answers import write_alpacaeval_outputs

    _answer(args, write_alpacaeval_outputs, args.instructions)


def _judge_through_api(args: argparse.Namespace, benchmark: str, judge_file, prompts: str, **options: Any) -> None:
    """Score one answers file with a judged benchmark's `judge_file`, recording the step (sources named without the
    credentials a URL may hold)."""
    from onmerge.judges.transport import public_url

    given = {"prompts": prompts, "limit": args.limit, "judge_model": args.judge_model, "attempts": args.attempts}
    settings = {
        name: public_url(value) if isinstance(value, str) else value for name, value in (given | options).items()
    }
    attempts = {} if args.attempts is None else {"scoring_attempts": args.attempts}
    with _recorded("judge", args.out, settings, {"answers": args.answers}):
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


def _judge_mt_bench(args: argparse.Namespace) -> None:
    from onmerge.judges import mt_bench

    _judge_through_api(args, "MT-Bench", mt_bench.judge_file, args.questions, references=args.references)


def _judge_alpacaeval(args: argparse.Namespace) -> None:
    from onmerge.judges import alpacaeval

    options = {"gamed_source": args.gamed_annotations, "glm_name": args.glm}
    _judge_through_api(args, "AlpacaEval", alpacaeval.judge_file, args.instructions, **options)


def _paper_metrics(world: str) -> dict[str, str]:
    """The evaluations' metric names -> the paper's columns, for the toy world's or lm-eval's metric names."""
    if world == "toy":
        from onmerge.toyworld.world import PAPER_METRICS
    else:
        from onmerge.lm_evaluation import PAPER_METRICS
    return PAPER_METRICS


def _bootstrap(root: Path, world: str):
    """Paired contrasts between the models under `root` (results/<preset>), from their per-item outcomes."""
    from onmerge.paired import PairedBootstrap, read_measures

    metrics = _paper_metrics(world)
    return PairedBootstrap(lambda path: read_measures(root / path / "eval", metrics))


def _aggregate(args: argparse.Namespace) -> None:
    from onmerge.aggregate import results_table
    from onmerge.atomic import write_text

    table = results_table(args.root, args.models, _paper_metrics(args.world))
    write_text(args.out, table.to_csv(index=False))
    print(f"{len(args.models)} models, {len(table)} rows -> {args.out}")


def _failures(args: argparse.Namespace) -> None:
    from onmerge.items import SAMPLES_FILE, failed, read_samples

    columns = _paper_metrics(args.world)
    names = [name for name, column in columns.items() if column == args.column]
    if not names:
        raise SystemExit(f"unknown column {args.column!r} (one of {', '.join(sorted(set(columns.values())))})")
    records = read_samples(args.eval / SAMPLES_FILE)
    scored = [record for record in records if names[0] in record["scores"]]
    failures = [record for record in scored if failed(record, names[0])]
    print(f"{args.eval}: {args.column} ({names[0]}): {len(failures)} of {len(scored)} samples lost points")
    for record in failures[: args.limit]:
        print(f"\n--- {record['task']} / {record['doc_id']}: score {record['scores'][names[0]]}")
        print(f"prompt:\n{record['prompt']}\nresponse:\n{record['response']}")
        if record["extracted"] is not None:
            print(f"read as:\n{record['extracted']}")


def _tables(args: argparse.Namespace) -> None:
    from onmerge import regime, tables
    from onmerge.atomic import write_text
    from onmerge.config import load_preset

    preset = load_preset(args.preset)
    built = tables.build(tables.Results.read(args.results), preset, args.paper, _bootstrap(args.root, args.world))
    tables.write(built, preset, args.out_dir)
    frame = regime.regime_table(preset, args.root, regime.table_studies(preset))
    write_text(args.out_dir / "regime.md", regime.regime_markdown(frame))
    write_text(args.out_dir / "regime.csv", frame.to_csv())
    print(f"{', '.join(built)}, regime -> {args.out_dir}")


def _verdicts(args: argparse.Namespace) -> None:
    from onmerge import verdicts
    from onmerge.config import load_preset
    from onmerge.tables import Results

    preset = load_preset(args.preset)
    context = verdicts.Context(preset, Results.read(args.results), args.paper)
    bootstrap = _bootstrap(args.root, args.world)
    frame = verdicts.verdicts(context, bootstrap)
    verdicts.write(frame, preset, args.out_dir, verdicts.between_worlds(context, bootstrap))
    for claim, records in frame.groupby("claim", sort=False):
        print(f"{claim}: {records['verdict'].iloc[0]}")


def _figures(args: argparse.Namespace) -> None:
    from onmerge import curves, figures
    from onmerge.config import load_preset
    from onmerge.tables import Results

    preset, results = load_preset(args.preset), Results.read(args.results)
    for name in figures.figure_names(preset):
        missing = figures.draw(results, preset, name, args.out_dir / f"{name}.png")
        print(f"{name}: " + (f"missing {', '.join(missing)}" if missing else "complete"))
    for name in curves.curve_names(preset):
        missing = curves.draw(args.root, preset, name, args.out_dir / f"{name}.png")
        print(f"{name}: " + (f"no training log for {', '.join(missing)}" if missing else "complete"))


def _provenance(args: argparse.Namespace) -> None:
    from onmerge import provenance
    from onmerge.config import WORKFLOW, load_preset
    from onmerge.grid import all_models

    preset = load_preset(args.preset)
    provenance.write(preset, all_models(preset), args.benchmarks, WORKFLOW.parent, args.out_dir)


def _bench_optim(args: argparse.Namespace) -> None:
    import torch

    from onmerge.atomic import write_text
    from onmerge.bench import cuda_unavailable, format_rows, rows_to_tsv, run_optimizer_benchmark

    if args.device == "cuda" and (reason := cuda_unavailable()):
        raise SystemExit(f"onmerge bench optim: {reason}")
    rows = run_optimizer_benchmark(args.params, args.tensors, args.reserve_p, args.repeats, args.device)
    parameters = (
        f"{args.params:,} float32 parameters in {args.tensors} tensors, threads={torch.get_num_threads()}"
        if args.device == "cpu"
        else f"Qwen1.5-1.8B's tensors in bf16 on {torch.cuda.get_device_name()}"
    )
    print(
        f"one optimizer step, {parameters}, reserve_p={args.reserve_p}; ratios against the fastest torch AdamW"
        " (x AdamW) and the faster unfused one (x unfused)"
    )
    print(format_rows(rows))
    if args.out:
        write_text(args.out, rows_to_tsv(rows))


def _bench_toy(args: argparse.Namespace) -> None:
    import torch

    from onmerge.bench import run_toy_benchmark

    _threads(args.threads)
    steps, totals = run_toy_benchmark(args.preset)
    print(f"toy world from scratch, {torch.get_num_threads()} torch thread(s) per process; budgets from the issue")
    print("build steps (two run at once, so they overlap):")
    for step, seconds in steps.items():
        print(f"  {step:<30}{seconds:>8.1f} s")
    for what, (seconds, budget) in totals.items():
        print(f"{what:<36}{seconds:>8.1f} s   budget {budget:.0f} s   {'met' if seconds <= budget else 'MISSED'}")


def _bench_gpu(args: argparse.Namespace) -> None:
    from onmerge.bench import format_generation_runs, generation_bench_unavailable, run_generation_benchmark

    reason = generation_bench_unavailable()
    if reason:
        raise SystemExit(f"onmerge bench gpu: {reason}")
    runs = run_generation_benchmark(args.model, args.prompts, args.max_new_tokens, args.batch_size)
    print(
        f"generation throughput of {args.model}: {args.prompts} prompts, greedy, at most {args.max_new_tokens} new"
        f" tokens each; transformers in batches of {args.batch_size}, vLLM batching itself; one process, one GPU"
    )
    print(format_generation_runs(*runs))


def _count(text: str) -> int:
    """An integer of at least 1 (a command-line count)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onmerge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(group, name: str, run, help: str, *, threads: bool = False) -> argparse.ArgumentParser:
        sub = group.add_parser(name, help=help)
        sub.set_defaults(run=run)
        if threads:
            sub.add_argument("--threads", type=int, default=1, help="torch threads (tiny models: 1 is fastest)")
        return sub

    toy = commands.add_parser("toy", help="build the toy world, one step at a time").add_subparsers(required=True)
    step = command(toy, "tokenizer", _toy_tokenizer, "a byte-level BPE tokenizer of one architecture")
    step.add_argument("--arch", choices=["qwen2", "llama"], required=True)
    step.add_argument("--seed", type=int, required=True)
    step.add_argument("--out", type=Path, required=True)
    step = command(toy, "base", _toy_base, "pre-train one toy base model", threads=True)
    step.add_argument("--backbone", required=True)
    step.add_argument("--tokenizer", type=Path, required=True)
    step.add_argument("--scale", choices=["toy", "smoke"], required=True)
    step.add_argument("--seed", type=int, required=True)
    step.add_argument("--out", type=Path, required=True)
    step = command(toy, "sft", _toy_sft, "supervised fine-tuning of a toy base model", threads=True)
    step.add_argument("--base", type=Path, required=True)
    step.add_argument("--scale", choices=["toy", "smoke"], required=True)
    step.add_argument("--seed", type=int, required=True)
    step.add_argument("--out", type=Path, required=True)
    step = command(toy, "preferences", _toy_preferences, "preference pairs (train/test) and their unpaired view")
    step.add_argument("--pairs", type=int, required=True)
    step.add_argument("--seed", type=int, required=True)
    step.add_argument("--out-dir", type=Path, required=True)
    step = command(toy, "suite", _toy_suite, "the held-out benchmark suite as lm-eval tasks")
    step.add_argument("--docs-per-task", type=int, required=True)
    step.add_argument("--seed", type=int, required=True)
    step.add_argument("--out", type=Path, required=True)

    step = command(commands, "fetch-model", _fetch_model, "a paper backbone's checkpoint: local folder or hub id")
    step.add_argument("--source", required=True)
    step.add_argument("--out", type=Path, required=True)
    step = command(commands, "ultrafeedback", _ultrafeedback, "UltraFeedback binarized as trl preference rows")
    step.add_argument("--dataset", required=True, help="hub id or local folder in the dataset's own schema")
    step.add_argument("--train-split", required=True)
    step.add_argument("--test-split", required=True)
    step.add_argument("--out-dir", type=Path, required=True)

    step = command(commands, "train", _train, "one RLHF training cell (DPO, IPO or KTO) through trl", threads=True)
    step.add_argument("--sft", type=Path, required=True)
    step.add_argument("--base", type=Path, help="the pre-trained model (online merging optimizers need it)")
    step.add_argument("--preferences", type=Path, required=True, help="JSON rows in trl's conversational format")
    step.add_argument("--settings", required=True, help="JSON: {training: {...}, optimizer: {...}} (onmerge.grid)")
    step.add_argument("--out", type=Path, required=True, help="the model folder")
    step.add_argument("--training-log", type=Path, required=True, help="JSON: trl's metrics at each logging step")

    step = command(commands, "merge", _merge, "an offline merge of an RLHF model with its SFT model", threads=True)
    step.add_argument("--method", choices=["linear", "dare", "ties"], required=True)
    step.add_argument("--rlhf", type=Path, required=True)
    step.add_argument("--sft", type=Path, required=True)
    step.add_argument("--base", type=Path, required=True)
    step.add_argument("--weight", type=float, required=True, help="the RLHF model's weight")
    step.add_argument("--density", type=float, help="dare and ties only")
    step.add_argument("--seed", type=int, default=0, help="seed of DARE's drop masks")
    step.add_argument("--out", type=Path, required=True)

    from onmerge.lm_evaluation import BACKENDS

    backend_help = "what generates: hf (transformers, CUDA if any) or vllm (a GPU, .venv-vllm); default hf"
    evaluate = commands.add_parser("evaluate", help="evaluate one model").add_subparsers(required=True)
    step = command(evaluate, "toy", _evaluate_toy, "every toy benchmark column and the judged task", threads=True)
    step.add_argument("--model", type=Path, required=True)
    step.add_argument("--suite", type=Path, required=True)
    step.add_argument("--metrics", type=Path, required=True)
    step.add_argument("--answers", type=Path, required=True, help="the judged task's answers, for the win rate")
    step.add_argument("--items", type=Path, required=True, help="every column's per-item scores (onmerge.items)")
    step.add_argument("--samples", type=Path, required=True, help="every sample's record, for audit (onmerge.items)")

    step = command(evaluate, "lm-eval", _evaluate_lm_eval, "lm-eval tasks (built-in or under --include-path)")
    step.add_argument("--model", type=Path, required=True)
    step.add_argument("--tasks", nargs="+", required=True)
    step.add_argument("--include-path", type=Path, help="folder of custom task YAMLs (default: onmerge.lm_tasks)")
    step.add_argument("--backend", choices=BACKENDS, default="hf", help=backend_help)
    step.add_argument("--batch-size", type=int, default=16, help="transformers' batch (vLLM batches by itself)")
    step.add_argument(
        "--sampling",
        nargs="+",
        type=_sampling_setting,
        default=[],
        metavar="KEY=VALUE",
        help="generation settings of the sampled tasks (temperature, top_p, top_k, repetition_penalty)",
    )
    step.add_argument("--metrics", type=Path, required=True)
    step.add_argument("--items", type=Path, required=True, help="the 14 columns' per-item scores (onmerge.items)")
    step.add_argument("--samples", type=Path, required=True, help="every sample's record, for audit (onmerge.items)")

    judge = commands.add_parser("judge", help="judged reward benchmarks").add_subparsers(required=True)
    step = command(judge, "toy", _judge_toy, "toy AlpacaEval 2.0: LC win rate against the SFT reference")
    step.add_argument("--suite", type=Path, required=True)
    step.add_argument("--answers", type=Path, required=True)
    step.add_argument("--reference-answers", type=Path, required=True)
    step.add_argument("--out", type=Path, required=True)
    judged_sources = {
        "questions": "MT-Bench questions in FastChat's question.jsonl schema: a file, hf://datasets/... or a URL",
        "instructions": "AlpacaEval 2.0 instructions with the reference outputs (alpaca_eval_gpt4_baseline.json)",
    }
    subset = "only the first N (tests, smoke runs); without it the full set is required"
    judge_help = "override the judge model (default: $ONMERGE_JUDGE_MODEL, else the paper's)"
    attempts_help = "requests per judgment before an unscorable one is recorded as failed (default 3)"
    step = command(judge, "mt-bench", _judge_mt_bench, "MT-Bench 1-10 grading through an OpenAI-compatible judge")
    step.add_argument("--questions", required=True, help=judged_sources["questions"])
    step.add_argument("--references", help="FastChat's reference_answer/gpt-4.jsonl (else the questions' reference)")
    step.add_argument("--answers", type=Path, required=True, help="from `onmerge answers mt-bench`")
    step.add_argument("--cache", type=Path, required=True, help="folder of cached judgments (shared across runs)")
    step.add_argument("--out", type=Path, required=True)
    step.add_argument("--limit", type=int, metavar="N", help=subset)
    step.add_argument("--judge-model", help=judge_help)
    step.add_argument("--workers", type=int, default=8, help="concurrent judge requests (default 8)")
    step.add_argument("--attempts", type=int, metavar="N", help=attempts_help)
    step = command(
        judge, "alpacaeval", _judge_alpacaeval, "AlpacaEval 2.0 LC win rate through an OpenAI-compatible judge"
    )
    step.add_argument("--instructions", required=True, help=judged_sources["instructions"])
    step.add_argument("--answers", type=Path, required=True, help="from `onmerge answers alpacaeval`")
    step.add_argument("--cache", type=Path, required=True, help="folder of cached judgments (shared across runs)")
    step.add_argument("--out", type=Path, required=True)
    step.add_argument("--gamed-annotations", help="alpaca_eval's df_gamed.csv (needed by the default GLM)")
    step.add_argument("--glm", default="length_controlled_v1", help="alpaca_eval's GLM (default length_controlled_v1)")
    step.add_argument("--limit", type=int, metavar="N", help=subset)
    step.add_argument("--judge-model", help=judge_help)
    step.add_argument("--workers", type=int, default=8, help="concurrent judge requests (default 8)")
    step.add_argument("--attempts", type=int, metavar="N", help=attempts_help)

    answers = commands.add_parser("answers", help="a model's answers for the judged benchmarks").add_subparsers(
        required=True
    )
    for name, run, source in (
        ("mt-bench", _answers_mt_bench, "questions"),
        ("alpacaeval", _answers_alpacaeval, "instructions"),
    ):
        step = command(answers, name, run, f"generate the model's {name} answers (transformers or vLLM)")
        step.add_argument("--model", type=Path, required=True)
        step.add_argument(f"--{source}", required=True, help=judged_sources[source])
        step.add_argument("--generation", required=True, help='JSON sampling settings, e.g. {"do_sample": true, ...}')
        step.add_argument("--out", type=Path, required=True)
        step.add_argument("--limit", type=int, metavar="N", help=subset)
        step.add_argument("--seed", type=int, default=1234, help="generation seed (default 1234)")
        step.add_argument("--backend", choices=BACKENDS, default="hf", help=backend_help)
        step.add_argument("--batch-size", type=int, default=16, help="transformers' batch (vLLM batches by itself)")

    step = command(commands, "aggregate", _aggregate, "every evaluated model into one tidy CSV")
    step.add_argument("--root", type=Path, required=True, help="results/<preset>")
    step.add_argument("--world", choices=("toy", "lm-eval"), required=True, help="whose metric names to read")
    step.add_argument("--out", type=Path, required=True)
    step.add_argument("models", nargs="+", help="model paths under the root (onmerge.grid)")

    for name, run, help in (
        ("tables", _tables, "the paper's tables from results.csv, beside the published ones"),
        ("verdicts", _verdicts, "each of the paper's claims: supported, contradicted or inconclusive"),
    ):  # both compare models through their per-item outcomes
        step = command(commands, name, run, help)
        step.add_argument("--results", type=Path, required=True, help="results/<preset>/results.csv")
        step.add_argument("--preset", required=True, help="the preset's name or YAML path")
        step.add_argument("--paper", type=Path, required=True, help="the published tables (results/paper)")
        step.add_argument("--root", type=Path, required=True, help="results/<preset>: the models' per-item outcomes")
        step.add_argument("--world", choices=("toy", "lm-eval"), required=True, help="whose metric names to read")
        step.add_argument("--out-dir", type=Path, required=True)

    step = command(commands, "failures", _failures, "the samples of one model and column that lost points, and why")
    step.add_argument("--eval", type=Path, required=True, help="results/<preset>/<model>/eval")
    step.add_argument("--column", required=True, help="a paper column, e.g. gsm8k_acc, mbpp_pass1, mt_bench")
    step.add_argument("--world", choices=("toy", "lm-eval"), required=True, help="whose metric names the files use")
    step.add_argument("--limit", type=int, default=20, help="show at most this many (default 20)")

    step = command(commands, "figures", _figures, "the paper's figures and each study's training curves (PNG)")
    step.add_argument("--results", type=Path, required=True, help="results/<preset>/results.csv")
    step.add_argument("--root", type=Path, required=True, help="results/<preset>, where the training logs are")
    step.add_argument("--preset", required=True, help="the preset's name or YAML path")
    step.add_argument("--out-dir", type=Path, required=True)

    step = command(commands, "provenance", _provenance, "environment, and each cell's seed, settings and timings")
    step.add_argument("--preset", required=True, help="the preset's name or YAML path")
    step.add_argument("--benchmarks", type=Path, required=True, help="benchmarks/<preset> (Snakemake's timings)")
    step.add_argument("--out-dir", type=Path, required=True)

    bench = commands.add_parser("bench", help="benchmarks (ratios against a reference measured in the same run)")
    bench_kinds = bench.add_subparsers(dest="kind", required=True)
    optim = command(bench_kinds, "optim", _bench_optim, "one step of each optimizer vs torch.optim.AdamW")
    optim.add_argument("--params", type=int, default=30_000_000, help="total parameters (default 30M)")
    optim.add_argument("--tensors", type=int, default=20, help="number of parameter tensors (default 20)")
    optim.add_argument("--reserve-p", type=float, default=0.01, help="reserve rate p (default 0.01)")
    optim.add_argument("--repeats", type=int, default=7, help="timed steps per optimizer; the median is reported")
    optim.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="cuda: Qwen1.5-1.8B's shapes in bf16 (needs ~70 GB)"
    )
    optim.add_argument("--out", type=Path, help="also write the rows as TSV here")
    toy_bench = command(
        bench_kinds, "toy", _bench_toy, "time the toy world, one DPO run and one evaluation", threads=True
    )
    toy_bench.add_argument("--preset", default="toy", help="a toy preset's name or YAML path (default: toy)")
    gpu = command(bench_kinds, "gpu", _bench_gpu, "generation throughput, transformers vs vLLM, on one model (CUDA)")
    gpu.add_argument("--model", type=Path, required=True, help="a small model folder with a chat template")
    gpu.add_argument("--prompts", type=_count, default=64, help="requests, the same for both (default 64)")
    gpu.add_argument("--max-new-tokens", type=_count, default=256, help="per request, greedy (default 256)")
    gpu.add_argument("--batch-size", type=_count, default=16, help="transformers' batch (default 16, the presets')")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
