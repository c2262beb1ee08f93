"""How an `onmerge` command is declared, apart from the commands, so that each lives with the code that owns it.

A command is its handler, registered with its arguments by `command` just above it: `onmerge.cli` holds the
world-independent steps and the benchmarks, and a world's adapter names the module of its own (`onmerge.worlds`:
the toy world's `onmerge.toyworld.cli`, the paper's `onmerge.paper_cli`). `onmerge.cli.build_parser` assembles them.
The arguments several of those modules take, and what their handlers share (`recorded`, `set_torch_threads`), are
here too.

Every command's module imports this one, and `onmerge --help` imports them all, so it imports nothing heavy: handlers
import their libraries when they run.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Handler = Callable[[argparse.Namespace], None]
Argument = tuple[tuple[str, ...], dict[str, Any]]  # add_argument's flags and options


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]  # ("merge",) or a group and its step: ("toy", "tokenizer")
    help: str
    arguments: tuple[Argument, ...]
    run: Handler


# What `command` registered, in the order the modules loaded (the order `onmerge --help` lists them in).
COMMANDS: list[Command] = []


def argument(*flags: str, **options: Any) -> Argument:
    return flags, options


def command(name: str, help: str, *arguments: Argument) -> Callable[[Handler], Handler]:
    """Register the decorated handler as `onmerge <name>` ("merge", or a group and a step: "toy base")."""

    def register(run: Handler) -> Handler:
        COMMANDS.append(Command(tuple(name.split()), help, arguments, run))
        return run

    return register


def count(text: str) -> int:
    """An integer of at least 1 (a command-line count)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


# Arguments the commands of several modules take.
THREADS = argument("--threads", type=int, default=1, help="torch threads (tiny models: 1 is fastest)")
OUT = argument("--out", type=Path, required=True)
OUT_DIR = argument("--out-dir", type=Path, required=True)
MODEL = argument("--model", type=Path, required=True)


def set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)  # tiny models: one thread per process is fastest (two cores run two jobs)


@contextmanager
def recorded(step: str, out: Path, settings: Mapping[str, Any], inputs: Mapping[str, Path | None]) -> Iterator[None]:
    """Time the step's body, then write its provenance record beside `out` (under accelerate, from rank 0 only)."""
    from onmerge.provenance import write_step_record

    started = time.perf_counter()
    yield
    if os.environ.get("RANK", "0") == "0":
        write_step_record(out, step, settings, inputs, time.perf_counter() - started)
