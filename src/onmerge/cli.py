"""`onmerge` command line: benchmarks now; pipeline steps join as they are built."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from onmerge.config import DEFAULT_CONFIG


def _bench_optim(args: argparse.Namespace) -> None:
    from onmerge.atomic import write_text
    from onmerge.bench import format_rows, rows_to_tsv, run_optimizer_benchmark

    rows = run_optimizer_benchmark(args.params, args.tensors, args.reserve_p, args.repeats, args.device)
    print(
        f"one optimizer step, {args.params / 1e6:.0f}M parameters in {args.tensors} tensors,"
        f" reserve_p={args.reserve_p},"
        f" device={args.device}, threads={torch.get_num_threads()}; ratios against the faster torch AdamW"
    )
    print(format_rows(rows))
    if args.out:
        write_text(args.out, rows_to_tsv(rows))


def _toy_tax(args: argparse.Namespace) -> None:
    from onmerge.config import load_config
    from onmerge.toyworld.experiment import alignment_tax, build_world, format_table, settings_from_config

    toy = load_config(args.config)["toy"]  # fails here, before any work, naming a bad key
    scale, training, world_arguments = settings_from_config(toy)
    torch.set_num_threads(args.threads)
    world, timings = build_world(args.root / "world", scale, **world_arguments)
    for step, seconds in timings.items():
        print(f"built {step} in {seconds:.1f} s")
    print(format_table(alignment_tax(world, toy["seeds"], args.root / "tax", training)))


def _bench_toy(args: argparse.Namespace) -> None:
    from onmerge.bench import run_toy_benchmark

    torch.set_num_threads(args.threads)
    steps, totals = run_toy_benchmark(args.config)
    print(f"toy world from scratch, {torch.get_num_threads()} torch thread(s) per process; budgets from the issue")
    print("build steps (two run at once, so they overlap):")
    for step, seconds in steps.items():
        print(f"  {step:<30}{seconds:>8.1f} s")
    for what, (seconds, budget) in totals.items():
        print(f"{what:<36}{seconds:>8.1f} s   budget {budget:.0f} s   {'met' if seconds <= budget else 'MISSED'}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onmerge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="benchmarks (ratios against a reference measured in the same run)")
    bench_kinds = bench.add_subparsers(dest="kind", required=True)
    optim = bench_kinds.add_parser("optim", help="one step of each optimizer vs torch.optim.AdamW")
    optim.add_argument("--params", type=int, default=30_000_000, help="total parameters (default 30M)")
    optim.add_argument("--tensors", type=int, default=20, help="number of parameter tensors (default 20)")
    optim.add_argument("--reserve-p", type=float, default=0.01, help="reserve rate p (default 0.01)")
    optim.add_argument("--repeats", type=int, default=7, help="timed steps per optimizer; the median is reported")
    optim.add_argument("--device", default="cpu", help="cpu or cuda")
    optim.add_argument("--out", type=Path, help="also write the rows as TSV here")
    optim.set_defaults(run=_bench_optim)
    toy_bench = bench_kinds.add_parser("toy", help="time building the toy world, one DPO run and one evaluation")
    toy_bench.add_argument("--threads", type=int, default=1, help="torch threads (tiny models: 1 is fastest)")
    toy_bench.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="run configuration (its `toy` section)")
    toy_bench.set_defaults(run=_bench_toy)

    toy = commands.add_parser("toy", help="the toy world")
    toy_kinds = toy.add_subparsers(dest="kind", required=True)
    tax = toy_kinds.add_parser("tax", help="AdamW DPO against the SFT reference: reward up, benchmarks down?")
    tax.add_argument("--root", type=Path, default=Path("results/toy"), help="where the world and the cells go")
    tax.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="run configuration (its `toy` section)")
    tax.add_argument("--threads", type=int, default=1, help="torch threads (tiny models: 1 is fastest)")
    tax.set_defaults(run=_toy_tax)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
