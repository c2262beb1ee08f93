"""`onmerge` command line: benchmarks now; pipeline steps join as they are built."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch


def _bench_optim(args: argparse.Namespace) -> None:
    from onmerge.bench import format_rows, rows_to_tsv, run_optimizer_benchmark

    rows = run_optimizer_benchmark(args.params, args.tensors, args.reserve_p, args.repeats, args.device)
    print(
        f"one optimizer step, {args.params / 1e6:.0f}M parameters in {args.tensors} tensors,"
        f" reserve_p={args.reserve_p},"
        f" device={args.device}, threads={torch.get_num_threads()}; ratios against the faster torch AdamW"
    )
    print(format_rows(rows))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        partial = args.out.with_name(f".{args.out.name}.partial")
        partial.write_text(rows_to_tsv(rows))
        os.replace(partial, args.out)


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
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
