"""The toy world's `onmerge` commands (`toy ...`, `evaluate toy`, `judge toy`): the toy adapter's entry points
(`onmerge.worlds`), registered with `onmerge.cli`'s commands when it builds its parser."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import get_args

from onmerge.commands import MODEL, OUT, OUT_DIR, THREADS, argument, command, recorded, set_torch_threads
from onmerge.toyworld.backbones import BACKBONES, SCALES, Arch

_SCALE = argument("--scale", choices=tuple(SCALES), required=True)
_SEED = argument("--seed", type=int, required=True)


@command(
    "toy tokenizer",
    "a byte-level BPE tokenizer of one architecture",
    argument("--arch", choices=get_args(Arch), required=True),
    _SEED,
    OUT,
)
def _toy_tokenizer(args: argparse.Namespace) -> None:
    from onmerge.toyworld.models import train_tokenizer
    from onmerge.toyworld.world import tokenizer_corpus

    train_tokenizer(tokenizer_corpus(args.seed), args.out, args.arch)


@command(
    "toy base",
    "pre-train one toy base model",
    THREADS,
    argument("--backbone", choices=tuple(BACKBONES), required=True),
    argument("--tokenizer", type=Path, required=True),
    _SCALE,
    _SEED,
    OUT,
)
def _toy_base(args: argparse.Namespace) -> None:
    from onmerge.toyworld.models import build_base

    set_torch_threads(args.threads)
    settings = {"backbone": args.backbone, "scale": args.scale, "seed": args.seed}
    with recorded("build", args.out, settings, {"tokenizer": args.tokenizer}):
        build_base(args.backbone, args.out, SCALES[args.scale], args.seed, tokenizer_dir=args.tokenizer)


@command(
    "toy sft",
    "supervised fine-tuning of a toy base model",
    THREADS,
    argument("--base", type=Path, required=True),
    _SCALE,
    _SEED,
    OUT,
)
def _toy_sft(args: argparse.Namespace) -> None:
    from onmerge.toyworld.models import build_sft

    set_torch_threads(args.threads)
    with recorded("build", args.out, {"scale": args.scale, "seed": args.seed}, {"base": args.base}):
        build_sft(args.base, args.out, SCALES[args.scale], args.seed)


@command(
    "toy preferences",
    "preference pairs (train/test) and their unpaired view",
    argument("--pairs", type=int, required=True),
    _SEED,
    OUT_DIR,
)
def _toy_preferences(args: argparse.Namespace) -> None:
    """Pairs ranked by the toy judge; the test split is an eighth of train's size, as UltraFeedback binarized's is."""
    from onmerge.preferences import write_splits
    from onmerge.toyworld.judge import preference_pairs, to_conversational

    splits = {"train": (args.pairs, "train"), "test": (max(1, args.pairs // 8), "eval")}
    rows = {name: to_conversational(preference_pairs(n, args.seed, split)) for name, (n, split) in splits.items()}
    write_splits(args.out_dir, rows)


@command(
    "toy suite",
    "the held-out benchmark suite as lm-eval tasks",
    argument("--docs-per-task", type=int, required=True),
    _SEED,
    OUT,
)
def _toy_suite(args: argparse.Namespace) -> None:
    from onmerge.toyworld.evaluation import write_task_suite

    write_task_suite(args.out, args.docs_per_task, args.seed)


@command(
    "evaluate toy",
    "every toy benchmark column and the judged task",
    THREADS,
    MODEL,
    argument("--suite", type=Path, required=True),
    argument("--metrics", type=Path, required=True),
    argument("--answers", type=Path, required=True, help="the judged task's answers, for the win rate"),
    argument("--items", type=Path, required=True, help="every column's per-item scores (onmerge.items)"),
    argument("--samples", type=Path, required=True, help="every sample's record, for audit (onmerge.items)"),
)
def _evaluate_toy(args: argparse.Namespace) -> None:
    from onmerge.items import write_items, write_samples
    from onmerge.toyworld.evaluation import EVAL_SEED, evaluate_model, write_results

    set_torch_threads(args.threads)
    with recorded("evaluate", args.metrics, {"eval_seed": EVAL_SEED}, {"model": args.model, "suite": args.suite}):
        metrics, items, records = evaluate_model(args.model, args.suite, answers_path=args.answers)
        write_items(args.items, items, metrics)
        write_samples(args.samples, records)
        write_results(metrics, args.metrics, include_path=args.suite)


@command(
    "judge toy",
    "toy AlpacaEval 2.0: LC win rate against the SFT reference",
    argument("--suite", type=Path, required=True),
    argument("--answers", type=Path, required=True),
    argument("--reference-answers", type=Path, required=True),
    OUT,
)
def _judge_toy(args: argparse.Namespace) -> None:
    """The judged file in the paper judges' shape, `{"metrics", "provenance", "judgments"}`: the provenance names
    the answers judged and the SFT answers they were judged against, by path and SHA-256."""
    from onmerge.atomic import write_json
    from onmerge.toyworld.evaluation import win_rates

    inputs = {"answers": args.answers, "reference_answers": args.reference_answers, "suite": args.suite}
    with recorded("judge", args.out, {}, inputs):
        answers, reference = (path.read_text(encoding="utf-8") for path in (args.answers, args.reference_answers))
        judged = win_rates(args.suite, json.loads(answers), json.loads(reference))
        provenance = {
            "answers": str(args.answers),
            "answers_sha256": hashlib.sha256(answers.encode()).hexdigest(),
            "reference_answers": str(args.reference_answers),
            "reference_answers_sha256": hashlib.sha256(reference.encode()).hexdigest(),
        }
        write_json(args.out, judged | {"provenance": provenance | judged["provenance"]})
