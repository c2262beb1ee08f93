"""The toy world's steps outside the models: preference data, the judge's win rates, and the whole world at once.

The workflow runs each step as its own job; `build_world` runs them all in one call (for `onmerge bench toy`),
skipping whatever already exists.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from onmerge.preferences import write_splits
from onmerge.toyworld import evaluation, judge
from onmerge.toyworld.backbones import BACKBONES, ToyScale
from onmerge.toyworld.models import build_base, build_sft, train_tokenizer
from onmerge.toyworld.world import tokenizer_corpus


@dataclass(frozen=True)
class World:
    root: Path
    tokenizers: dict[str, Path]
    bases: dict[str, Path]
    sfts: dict[str, Path]
    preferences: Path
    suite: Path


def build_world(
    root: Path,
    scale: ToyScale,
    *,
    seed: int,
    backbones: list[str],
    preference_pairs: int,
    docs_per_task: int,
    workers: int = 2,
) -> tuple[World, dict[str, float]]:
    """Everything the toy grid starts from, under `root`, skipping what exists; returns the world and seconds per step.

    Models train in `workers` single-threaded processes: tiny models run 4x slower on two threads than on one
    (measured), so two cores serve best as two builds at once. Each SFT starts as soon as its base is done.
    """
    timings: dict[str, float] = {}
    tokenizers = {}
    for arch in sorted({BACKBONES[name].arch for name in backbones}):
        tokenizers[arch] = root / "tokenizers" / arch
        if not tokenizers[arch].exists():
            timings[f"tokenizer {arch}"] = _timed(train_tokenizer, tokenizer_corpus(seed), tokenizers[arch], arch)
    bases = {name: root / "base" / name for name in backbones}
    sfts = {name: root / "sft" / name for name in backbones}
    largest_first = sorted(backbones, key=lambda name: -BACKBONES[name].hidden_size * BACKBONES[name].num_layers)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_one_torch_thread) as pool:
        running = {}
        for name in largest_first:
            if not bases[name].exists():
                tokenizer_dir = tokenizers[BACKBONES[name].arch]
                job = pool.submit(_timed, build_base, name, bases[name], scale, seed, tokenizer_dir=tokenizer_dir)
                running[job] = ("base", name)
            elif not sfts[name].exists():
                running[pool.submit(_timed, build_sft, bases[name], sfts[name], scale, seed)] = ("sft", name)
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for job in done:
                stage, name = running.pop(job)
                timings[f"{stage} {name}"] = job.result()
                if stage == "base" and not sfts[name].exists():
                    running[pool.submit(_timed, build_sft, bases[name], sfts[name], scale, seed)] = ("sft", name)
    preferences = root / "preferences" / "train.json"
    if not preferences.exists():
        timings["preferences"] = _timed(write_preferences, preferences.parent, preference_pairs, seed)
    suite_dir = root / "suite"
    if not suite_dir.exists():
        timings["suite"] = _timed(evaluation.write_task_suite, suite_dir, docs_per_task, seed)
    return World(root, tokenizers, bases, sfts, preferences, suite_dir), timings


def write_preferences(folder: Path, pairs: int, seed: int) -> None:
    """Train and test pairs (test an eighth of train, as UltraFeedback binarized has), and their unpaired views."""
    splits = {"train": (pairs, "train"), "test": (max(1, pairs // 8), "eval")}
    write_splits(
        folder,
        {name: judge.to_conversational(judge.preference_pairs(n, seed, split)) for name, (n, split) in splits.items()},
    )


def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _timed(function, *args, **kwargs) -> float:
    start = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - start
