"""`onmerge` command line: one command per pipeline step (what the workflow's rules run), and the benchmarks.

This module holds the steps every world runs and the benchmarks; a world keeps its own commands beside its code, in
the module its adapter names (`onmerge.worlds`: the toy world's `onmerge.toyworld.cli`, the paper's
`onmerge.paper_cli`). Each command is its handler, registered with its arguments by `onmerge.commands.command` just
above it; `build_parser` assembles them all. Choices come from the declarations that own them (`onmerge.grid`,
`onmerge.worlds`, lm-eval's backends). Heavy libraries are imported inside each command, so `onmerge --help` and a
bad argument answer at once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from onmerge import grid, worlds
from onmerge.commands import (
    COMMANDS,
    OUT,
    OUT_DIR,
    THREADS,
    Command,
    argument,
    command,
    count,
    recorded,
    set_torch_threads,
)

# The first word of two-word commands: its help, and the attribute that holds the second word (SUPPRESS: none).
GROUPS: dict[str, tuple[str, str]] = {
    "toy": ("build the toy world, one step at a time", argparse.SUPPRESS),
    "evaluate": ("evaluate one model", argparse.SUPPRESS),
    "judge": ("judged reward benchmarks", argparse.SUPPRESS),
    "answers": ("a model's answers for the judged benchmarks", argparse.SUPPRESS),
    "bench": ("benchmarks (ratios against a reference measured in the same run)", "kind"),
}


def registered_commands() -> list[Command]:
    """Every command: this module's, and those a world's own module registers when imported (`onmerge.worlds`)."""
    for world in worlds.registered():
        world.register_commands()
    return COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onmerge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    groups: dict[str, Any] = {}
    for declared in registered_commands():
        *group, name = declared.words
        within = commands
        if group:
            if group[0] not in groups:
                help, dest = GROUPS[group[0]]
                groups[group[0]] = commands.add_parser(group[0], help=help).add_subparsers(dest=dest, required=True)
            within = groups[group[0]]
        sub = within.add_parser(name, help=declared.help)
        sub.set_defaults(run=declared.run)
        for flags, options in declared.arguments:
            sub.add_argument(*flags, **options)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


# Arguments several of this module's commands take.
_PRESET = argument("--preset", required=True, help="the preset's name or YAML path")
_RESULTS = argument("--results", type=Path, required=True, help="results/<preset>/results.csv")
_WORLD = argument(
    "--world",
    choices=worlds.metric_name_choices(),
    required=True,
    help="whose metric names the evaluation files use (onmerge.worlds)",
)


@command(
    "train",
    "one RLHF training cell (DPO, IPO or KTO) through trl",
    THREADS,
    argument("--sft", type=Path, required=True),
    argument("--base", type=Path, help="the pre-trained model (online merging optimizers need it)"),
    argument("--preferences", type=Path, required=True, help="JSON rows in trl's conversational format"),
    argument("--settings", required=True, help="JSON: {training: {...}, optimizer: {...}} (onmerge.grid)"),
    argument("--out", type=Path, required=True, help="the model folder"),
    argument("--training-log", type=Path, required=True, help="JSON: trl's metrics at each logging step"),
)
def _train(args: argparse.Namespace) -> None:
    from onmerge.preferences import read_rows
    from onmerge.training import OptimizerSpec, PreferenceTraining, train_preference

    settings = json.loads(args.settings)
    set_torch_threads(args.threads)
    inputs = {"sft": args.sft, "base": args.base, "preferences": args.preferences}
    with recorded("train", args.out, settings, inputs):
        train_preference(
            sft=args.sft,
            base=args.base,
            rows=read_rows(args.preferences),
            out=args.out,
            training_log=args.training_log,
            training=PreferenceTraining(**settings["training"]),
            optimizer=OptimizerSpec.from_settings(settings["optimizer"]),
            rows_from=str(args.preferences),
        )


@command(
    "merge",
    "an offline merge of an RLHF model with its SFT model",
    THREADS,
    argument("--method", choices=grid.MERGES, required=True),
    argument("--rlhf", type=Path, required=True),
    argument("--sft", type=Path, required=True),
    argument("--base", type=Path, required=True),
    argument("--weight", type=float, required=True, help="the RLHF model's weight"),
    argument("--density", type=float, help="dare and ties only"),
    argument("--seed", type=int, default=0, help="seed of DARE's drop masks"),
    OUT,
)
def _merge(args: argparse.Namespace) -> None:
    from onmerge.merging import merge_with_sft

    set_torch_threads(args.threads)
    settings = {"method": args.method, "weight": args.weight, "density": args.density, "seed": args.seed}
    with recorded("merge", args.out, settings, {"rlhf": args.rlhf, "sft": args.sft, "base": args.base}):
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


def _bootstrap(root: Path, metric_names: str):
    """Paired contrasts between the models under `root` (results/<preset>), from their per-item outcomes."""
    from onmerge.paired import PairedBootstrap, read_measures

    world = worlds.writing(metric_names)
    return PairedBootstrap(lambda path: read_measures(root / path / "eval", world))


@command(
    "aggregate",
    "every evaluated model into one tidy CSV",
    argument("--root", type=Path, required=True, help="results/<preset>"),
    _WORLD,
    OUT,
    argument("models", nargs="+", help="model paths under the root (onmerge.grid)"),
)
def _aggregate(args: argparse.Namespace) -> None:
    from onmerge.aggregate import results_table
    from onmerge.atomic import write_text

    table = results_table(args.root, args.models, worlds.writing(args.world))
    write_text(args.out, table.to_csv(index=False))
    print(f"{len(args.models)} models, {len(table)} rows -> {args.out}")


@command(
    "failures",
    "the samples of one model and column that lost points, and why",
    argument("--eval", type=Path, required=True, help="results/<preset>/<model>/eval"),
    argument("--column", required=True, help="a paper column, e.g. gsm8k_acc, mbpp_pass1, mt_bench"),
    _WORLD,
    argument("--limit", type=int, default=20, help="show at most this many (default 20)"),
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
    argument("--paper", type=Path, required=True, help="the published tables (results/paper)"),
    argument("--root", type=Path, required=True, help="results/<preset>: the models' per-item outcomes"),
    _WORLD,
    OUT_DIR,
)


@command("tables", "the paper's tables from results.csv, beside the published ones", *_COMPARING)
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


@command("verdicts", "each of the paper's claims: supported, contradicted or inconclusive", *_COMPARING)
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


@command(
    "figures",
    "the paper's figures and each study's training curves (PNG)",
    _RESULTS,
    argument("--root", type=Path, required=True, help="results/<preset>, where the training logs are"),
    _PRESET,
    OUT_DIR,
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


@command(
    "provenance",
    "environment, and each cell's seed, settings and timings",
    _PRESET,
    argument("--benchmarks", type=Path, required=True, help="benchmarks/<preset> (Snakemake's timings)"),
    OUT_DIR,
)
def _provenance(args: argparse.Namespace) -> None:
    from onmerge import provenance
    from onmerge.config import load_preset

    preset = load_preset(args.preset)
    provenance.write(preset, grid.all_models(preset), args.benchmarks, provenance.CHECKOUT, args.out_dir)


@command(
    "bench optim",
    "one step of each optimizer vs torch.optim.AdamW",
    argument("--params", type=int, default=30_000_000, help="total parameters (default 30M)"),
    argument("--tensors", type=int, default=20, help="number of parameter tensors (default 20)"),
    argument("--reserve-p", type=float, default=0.01, help="reserve rate p (default 0.01)"),
    argument("--repeats", type=int, default=7, help="timed steps per optimizer; the median is reported"),
    argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="cuda: Qwen1.5-1.8B's shapes in bf16 (needs ~70 GB)"
    ),
    argument("--out", type=Path, help="also write the rows as TSV here"),
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


@command(
    "bench gpu",
    "generation throughput, transformers vs vLLM, on one model (CUDA)",
    argument("--model", type=Path, required=True, help="a small model folder with a chat template"),
    argument("--prompts", type=count, default=64, help="requests, the same for both (default 64)"),
    argument("--max-new-tokens", type=count, default=256, help="per request, greedy (default 256)"),
    argument("--batch-size", type=count, default=16, help="transformers' batch (default 16, the presets')"),
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
    # Run as `python -m onmerge.cli` (the workflow's rules), this file is the module `__main__`, whose commands register
    # in `onmerge.commands` as `onmerge.cli`'s would: no module of the package imports `onmerge.cli`, so they register
    # once (tests/test_import_structure.py).
    main()
