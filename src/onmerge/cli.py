"""`onmerge` command line: one command per pipeline step (what the workflow's rules run), and the benchmarks.

Each command is its handler, registered with its arguments by `_command` just above it; `build_parser` assembles
them, with the commands a world keeps beside its own code (`onmerge.worlds`: the toy world's, in
`onmerge.toyworld.cli`). Choices come from the declarations that own them (`onmerge.grid`, `onmerge.worlds`,
lm-eval's backends). Heavy libraries are imported inside each command, so `onmerge --help` and a bad argument answer
at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onmerge import grid, worlds
from onmerge.lm_evaluation import BACKENDS

Handler = Callable[[argparse.Namespace], None]
Argument = tuple[tuple[str, ...], dict[str, Any]]  # add_argument's flags and options


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]  # ("merge",) or a group and its step: ("toy", "tokenizer")
    help: str
    arguments: tuple[Argument, ...]
    run: Handler


COMMANDS: list[Command] = []
# The first word of two-word commands: its help, and the attribute that holds the second word (SUPPRESS: none).
GROUPS: dict[str, tuple[str, str]] = {
    "toy": ("build the toy world, one step at a time", argparse.SUPPRESS),
    "evaluate": ("evaluate one model", argparse.SUPPRESS),
    "judge": ("judged reward benchmarks", argparse.SUPPRESS),
    "answers": ("a model's answers for the judged benchmarks", argparse.SUPPRESS),
    "bench": ("benchmarks (ratios against a reference measured in the same run)", "kind"),
}


def _argument(*flags: str, **options: Any) -> Argument:
    return flags, options


def _command(name: str, help: str, *arguments: Argument) -> Callable[[Handler], Handler]:
    """Register the decorated handler as `onmerge <name>` ("merge", or a group and a step: "toy base")."""

    def register(run: Handler) -> Handler:
        COMMANDS.append(Command(tuple(name.split()), help, arguments, run))
        return run

    return register


def registered_commands() -> list[Command]:
    """Every command: this module's, and those a world's own module registers when imported (`onmerge.worlds`)."""
    for world in worlds.registered():
        world.register_commands()
    return COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onmerge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    groups: dict[str, Any] = {}
    for command in registered_commands():
        *group, name = command.words
        within = commands
        if group:
            if group[0] not in groups:
                help, dest = GROUPS[group[0]]
                groups[group[0]] = commands.add_parser(group[0], help=help).add_subparsers(dest=dest, required=True)
            within = groups[group[0]]
        sub = within.add_parser(name, help=command.help)
        sub.set_defaults(run=command.run)
        for flags, options in command.arguments:
            sub.add_argument(*flags, **options)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


def _sampling_setting(text: str) -> tuple[str, float]:
    """`KEY=VALUE` of `--sampling`, the value a number (checked against its range by run_lm_eval)."""
    key, _, value = text.partition("=")
    try:
        return key, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=NUMBER (e.g. top_p=0.8)") from None


def _count(text: str) -> int:
    """An integer of at least 1 (a command-line count)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


# Arguments several commands take.
_THREADS = _argument("--threads", type=int, default=1, help="torch threads (tiny models: 1 is fastest)")
_OUT = _argument("--out", type=Path, required=True)
_OUT_DIR = _argument("--out-dir", type=Path, required=True)
_MODEL = _argument("--model", type=Path, required=True)
_PRESET = _argument("--preset", required=True, help="the preset's name or YAML path")
_RESULTS = _argument("--results", type=Path, required=True, help="results/<preset>/results.csv")
_WORLD = _argument(
    "--world",
    choices=worlds.metric_name_choices(),
    required=True,
    help="whose metric names the evaluation files use (onmerge.worlds)",
)
_BACKEND = _argument(
    "--backend",
    choices=BACKENDS,
    default="hf",
    help="what generates: hf (transformers, CUDA if any) or vllm (a GPU, .venv-vllm); default hf",
)
_BATCH_SIZE = _argument("--batch-size", type=int, default=16, help="transformers' batch (vLLM batches by itself)")
_SUBSET = "only the first N (tests, smoke runs); without it the full set is required"
_JUDGED_SOURCES = {
    "questions": "MT-Bench questions in FastChat's question.jsonl schema: a file, hf://datasets/... or a URL",
    "instructions": "AlpacaEval 2.0 instructions with the reference outputs (alpaca_eval_gpt4_baseline.json)",
}


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


@_command(
    "fetch-model",
    "a paper backbone's checkpoint: local folder or hub id",
    _argument("--source", required=True),
    _OUT,
)
def _fetch_model(args: argparse.Namespace) -> None:
    from onmerge.checkpoints import fetch_model

    fetch_model(args.source, args.out)


@_command(
    "ultrafeedback",
    "UltraFeedback binarized as trl preference rows",
    _argument("--dataset", required=True, help="hub id or local folder in the dataset's own schema"),
    _argument("--train-split", required=True),
    _argument("--test-split", required=True),
    _OUT_DIR,
)
def _ultrafeedback(args: argparse.Namespace) -> None:
    from onmerge.preferences import write_ultrafeedback

    write_ultrafeedback(args.dataset, args.train_split, args.test_split, args.out_dir)


@_command(
    "train",
    "one RLHF training cell (DPO, IPO or KTO) through trl",
    _THREADS,
    _argument("--sft", type=Path, required=True),
    _argument("--base", type=Path, help="the pre-trained model (online merging optimizers need it)"),
    _argument("--preferences", type=Path, required=True, help="JSON rows in trl's conversational format"),
    _argument("--settings", required=True, help="JSON: {training: {...}, optimizer: {...}} (onmerge.grid)"),
    _argument("--out", type=Path, required=True, help="the model folder"),
    _argument("--training-log", type=Path, required=True, help="JSON: trl's metrics at each logging step"),
)
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


@_command(
    "merge",
    "an offline merge of an RLHF model with its SFT model",
    _THREADS,
    _argument("--method", choices=grid.MERGES, required=True),
    _argument("--rlhf", type=Path, required=True),
    _argument("--sft", type=Path, required=True),
    _argument("--base", type=Path, required=True),
    _argument("--weight", type=float, required=True, help="the RLHF model's weight"),
    _argument("--density", type=float, help="dare and ties only"),
    _argument("--seed", type=int, default=0, help="seed of DARE's drop masks"),
    _OUT,
)
def _merge(args: argparse.Namespace) -> None:
    from onmerge.merging import merge_with_sft

    _threads(args.threads)
    settings = {"method": args.method, "weight": args.weight, "density": args.density, "seed": args.seed}
    with _recorded("merge", args.out, settings, {"rlhf": args.rlhf, "sft": args.sft, "base": args.base}):
        merge_with_sft(
            args.method,
            rlhf=args.rlhf,
            sft=args.sft,
            base=args.base,
            weight=args.weight,
            density=args.density,
            out=args.out,
            seed=args.seed,
        )


@_command(
    "evaluate lm-eval",
    "lm-eval tasks (built-in or under --include-path)",
    _MODEL,
    _argument("--tasks", nargs="+", required=True),
    _argument("--include-path", type=Path, help="folder of custom task YAMLs (default: onmerge.lm_tasks)"),
    _BACKEND,
    _BATCH_SIZE,
    _argument(
        "--sampling",
        nargs="+",
        type=_sampling_setting,
        default=[],
        metavar="KEY=VALUE",
        help="generation settings of the sampled tasks (temperature, top_p, top_k, repetition_penalty)",
    ),
    _argument("--metrics", type=Path, required=True),
    _argument("--items", type=Path, required=True, help="the 14 columns' per-item scores (onmerge.items)"),
    _argument("--samples", type=Path, required=True, help="every sample's record, for audit (onmerge.items)"),
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


def _answers_arguments(source: str) -> tuple[Argument, ...]:
    """`onmerge answers <benchmark>`'s arguments; `source` names the option of its prompts."""
    return (
        _MODEL,
        _argument(f"--{source}", required=True, help=_JUDGED_SOURCES[source]),
        _argument("--generation", required=True, help='JSON sampling settings, e.g. {"do_sample": true, ...}'),
        _OUT,
        _argument("--limit", type=int, metavar="N", help=_SUBSET),
        _argument("--seed", type=int, default=1234, help="generation seed (default 1234)"),
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
    with _recorded("answers", args.out, settings, {"model": args.model}):
        write_answers(args.model, prompts, args.generation, args.out, **options)


@_command(
    "answers mt-bench",
    "generate the model's mt-bench answers (transformers or vLLM)",
    *_answers_arguments("questions"),
)
def _answers_mt_bench(args: argparse.Namespace) -> None:
    from onmerge.judges.answers import write_mt_bench_answers

    _answer(args, write_mt_bench_answers, args.questions)


@_command(
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
        _argument("--answers", type=Path, required=True, help=f"from `onmerge answers {benchmark}`"),
        _argument("--cache", type=Path, required=True, help="folder of cached judgments (shared across runs)"),
        _OUT,
        _argument("--limit", type=int, metavar="N", help=_SUBSET),
        _argument("--judge-model", help="override the judge model (default: $ONMERGE_JUDGE_MODEL, else the paper's)"),
        _argument("--workers", type=int, default=8, help="concurrent judge requests (default 8)"),
        _argument(
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


@_command(
    "judge mt-bench",
    "MT-Bench 1-10 grading through an OpenAI-compatible judge",
    _argument("--questions", required=True, help=_JUDGED_SOURCES["questions"]),
    _argument("--references", help="FastChat's reference_answer/gpt-4.jsonl (else the questions' reference)"),
    *_judge_arguments("mt-bench"),
)
def _judge_mt_bench(args: argparse.Namespace) -> None:
    from onmerge.judges import mt_bench

    _judge_through_api(args, "MT-Bench", mt_bench.judge_file, args.questions, references=args.references)


@_command(
    "judge alpacaeval",
    "AlpacaEval 2.0 LC win rate through an OpenAI-compatible judge",
    _argument("--instructions", required=True, help=_JUDGED_SOURCES["instructions"]),
    _argument("--gamed-annotations", help="alpaca_eval's df_gamed.csv (needed by the default GLM)"),
    _argument("--glm", default="length_controlled_v1", help="alpaca_eval's GLM (default length_controlled_v1)"),
    *_judge_arguments("alpacaeval"),
)
def _judge_alpacaeval(args: argparse.Namespace) -> None:
    from onmerge.judges import alpacaeval

    options = {"gamed_source": args.gamed_annotations, "glm_name": args.glm}
    _judge_through_api(args, "AlpacaEval", alpacaeval.judge_file, args.instructions, **options)


def _bootstrap(root: Path, metric_names: str):
    """Paired contrasts between the models under `root` (results/<preset>), from their per-item outcomes."""
    from onmerge.paired import PairedBootstrap, read_measures

    metrics = worlds.writing(metric_names).paper_metrics()
    return PairedBootstrap(lambda path: read_measures(root / path / "eval", metrics))


@_command(
    "aggregate",
    "every evaluated model into one tidy CSV",
    _argument("--root", type=Path, required=True, help="results/<preset>"),
    _WORLD,
    _OUT,
    _argument("models", nargs="+", help="model paths under the root (onmerge.grid)"),
)
def _aggregate(args: argparse.Namespace) -> None:
    from onmerge.aggregate import results_table
    from onmerge.atomic import write_text

    table = results_table(args.root, args.models, worlds.writing(args.world))
    write_text(args.out, table.to_csv(index=False))
    print(f"{len(args.models)} models, {len(table)} rows -> {args.out}")


@_command(
    "failures",
    "the samples of one model and column that lost points, and why",
    _argument("--eval", type=Path, required=True, help="results/<preset>/<model>/eval"),
    _argument("--column", required=True, help="a paper column, e.g. gsm8k_acc, mbpp_pass1, mt_bench"),
    _WORLD,
    _argument("--limit", type=int, default=20, help="show at most this many (default 20)"),
)
def _failures(args: argparse.Namespace) -> None:
    from onmerge.items import SAMPLES_FILE, failed, read_samples

    columns = worlds.writing(args.world).paper_metrics()
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


# tables and verdicts both compare models through their per-item outcomes
_COMPARING = (
    _RESULTS,
    _PRESET,
    _argument("--paper", type=Path, required=True, help="the published tables (results/paper)"),
    _argument("--root", type=Path, required=True, help="results/<preset>: the models' per-item outcomes"),
    _WORLD,
    _OUT_DIR,
)


@_command("tables", "the paper's tables from results.csv, beside the published ones", *_COMPARING)
def _tables(args: argparse.Namespace) -> None:
    from onmerge.atomic import write_text
    from onmerge.config import load_preset
    from onmerge.tables import regime, render
    from onmerge.tables.build import build
    from onmerge.tables.results import Results

    preset = load_preset(args.preset)
    built = build(Results.read(args.results), preset, args.paper, _bootstrap(args.root, args.world))
    render.write(built, preset, args.out_dir)
    frame = regime.regime_table(preset, args.root, regime.table_studies(preset))
    write_text(args.out_dir / "regime.md", regime.regime_markdown(frame))
    write_text(args.out_dir / "regime.csv", frame.to_csv())
    print(f"{', '.join(built)}, regime -> {args.out_dir}")


@_command("verdicts", "each of the paper's claims: supported, contradicted or inconclusive", *_COMPARING)
def _verdicts(args: argparse.Namespace) -> None:
    from onmerge import verdicts
    from onmerge.config import load_preset
    from onmerge.tables.results import Results

    preset = load_preset(args.preset)
    context = verdicts.Context(preset, Results.read(args.results), args.paper)
    bootstrap = _bootstrap(args.root, args.world)
    frame = verdicts.verdicts(context, bootstrap)
    verdicts.write(frame, preset, args.out_dir, verdicts.between_worlds(context, bootstrap))
    for claim, records in frame.groupby("claim", sort=False):
        print(f"{claim}: {records['verdict'].iloc[0]}")


@_command(
    "figures",
    "the paper's figures and each study's training curves (PNG)",
    _RESULTS,
    _argument("--root", type=Path, required=True, help="results/<preset>, where the training logs are"),
    _PRESET,
    _OUT_DIR,
)
def _figures(args: argparse.Namespace) -> None:
    from onmerge import curves, figures
    from onmerge.config import load_preset
    from onmerge.tables.results import Results

    preset, results = load_preset(args.preset), Results.read(args.results)
    for name in figures.figure_names(preset):
        missing = figures.draw(results, preset, name, args.out_dir / f"{name}.png")
        print(f"{name}: " + (f"missing {', '.join(missing)}" if missing else "complete"))
    for name in curves.curve_names(preset):
        missing = curves.draw(args.root, preset, name, args.out_dir / f"{name}.png")
        print(f"{name}: " + (f"no training log for {', '.join(missing)}" if missing else "complete"))


@_command(
    "provenance",
    "environment, and each cell's seed, settings and timings",
    _PRESET,
    _argument("--benchmarks", type=Path, required=True, help="benchmarks/<preset> (Snakemake's timings)"),
    _OUT_DIR,
)
def _provenance(args: argparse.Namespace) -> None:
    from onmerge import provenance
    from onmerge.config import load_preset

    preset = load_preset(args.preset)
    provenance.write(preset, grid.all_models(preset), args.benchmarks, provenance.CHECKOUT, args.out_dir)


@_command(
    "bench optim",
    "one step of each optimizer vs torch.optim.AdamW",
    _argument("--params", type=int, default=30_000_000, help="total parameters (default 30M)"),
    _argument("--tensors", type=int, default=20, help="number of parameter tensors (default 20)"),
    _argument("--reserve-p", type=float, default=0.01, help="reserve rate p (default 0.01)"),
    _argument("--repeats", type=int, default=7, help="timed steps per optimizer; the median is reported"),
    _argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="cuda: Qwen1.5-1.8B's shapes in bf16 (needs ~70 GB)"
    ),
    _argument("--out", type=Path, help="also write the rows as TSV here"),
)
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


@_command(
    "bench gpu",
    "generation throughput, transformers vs vLLM, on one model (CUDA)",
    _argument("--model", type=Path, required=True, help="a small model folder with a chat template"),
    _argument("--prompts", type=_count, default=64, help="requests, the same for both (default 64)"),
    _argument("--max-new-tokens", type=_count, default=256, help="per request, greedy (default 256)"),
    _argument("--batch-size", type=_count, default=16, help="transformers' batch (default 16, the presets')"),
)
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


if __name__ == "__main__":
    # Run as `python -m onmerge.cli` (the workflow's rules), this file is the module `__main__`, apart from
    # `onmerge.cli`, with which a world's commands register (onmerge.toyworld.cli): that module's parser has them all.
    from onmerge.cli import main as main_with_every_command

    main_with_every_command(sys.argv[1:])
