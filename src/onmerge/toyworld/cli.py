"""The toy world's `onmerge` commands (`toy ...`, `evaluate toy`, `judge toy`): the toy adapter's entry points
(`onmerge.worlds`), registered with `onmerge.cli`'s commands when it builds its parser."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import get_args

from onmerge.cli import _MODEL, _OUT, _OUT_DIR, _THREADS, _argument, _command, _recorded, _threads
from onmerge.toyworld.backbones import BACKBONES, SCALES, Arch

_SCALE = _argument("--scale", choices=tuple(SCALES), required=True)
_SEED = _argument("--seed", type=int, required=True)


@_command(
    "toy tokenizer",
    "a byte-level BPE tokenizer of one architecture",
    _argument("--arch", choices=get_args(Arch), required=True),
    _SEED,
    _OUT,
)
def _toy_tokenizer(args: argparse.Namespace) -> None:
    from onmerge.toyworld.models import train_tokenizer
    from onmerge.toyworld.world import tokenizer_corpus

    train_tokenizer(tokenizer_corpus(args.seed), args.out, args.arch)


@_command(
    "toy base",
    "pre-train one toy base model",
    _THREADS,
    _argument("--backbone", choices=tuple(BACKBONES), required=True),
    _argument("--tokenizer", type=Path, required=True),
    _SCALE,
    _SEED,
    _OUT,
)
def _toy_base(args: argparse.Namespace) -> None:
    from onmerge.toyworld.models import build_base

    _threads(args.threads)
    settings = {"backbone": args.backbone, "scale": args.scale, "seed": args.seed}
    with _recorded("build", args.out, settings, {"tokenizer": args.tokenizer}):
        build_base(args.backbone, args.out, SCALES[args.scale], args.seed, tokenizer_dir=args.tokenizer)


@_command(
    "toy sft",
    "supervised fine-tuning of a toy base model",
    _THREADS,
    _argument("--base", type=Path, required=True),
    _SCALE,
    _SEED,
    _OUT,
)
def _toy_sft(args: argparse.Namespace) -> None:
    from onmerge.toyworld.models import build_sft

    _threads(args.threads)
    with _recorded("build", args.out, {"scale": args.scale, "seed": args.seed}, {"base": args.base}):
        build_sft(args.base, args.out, SCALES[args.scale], args.seed)


@_command(
    "toy preferences",
    "preference pairs (train/test) and their unpaired view",
    _argument("--pairs", type=int, required=True),
    _SEED,
    _OUT_DIR,
)
def _toy_preferences(args: argparse.Namespace) -> None:
    """Pairs ranked by the toy judge; the test split is an eighth of train's size, as UltraFeedback binarized's is."""
    from onmerge.preferences import write_splits
    from onmerge.toyworld.judge import preference_pairs, to_conversational

    splits = {"train": (args.pairs, "train"), "test": (max(1, args.pairs // 8), "eval")}
    rows = {name: to_conversational(preference_pairs(n, args.seed, split)) for name, (n, split) in splits.items()}
    write_splits(args.out_dir, rows)


@_command(
    "toy suite",
    "the held-out benchmark suite as lm-eval tasks",
    _argument("--docs-per-task", type=int, required=True),
    _SEED,
    _OUT,
)
def _toy_suite(args: argparse.Namespace) -> None:
    from onmerge.toyworld.evaluation import write_task_suite

    write_task_suite(args.out, args.docs_per_task, args.seed)


@_command(
    "evaluate toy",
    "every toy benchmark column and the judged task",
    _THREADS,
    _MODEL,
    _argument("--suite", type=Path, required=True),
    _argument("--metrics", type=Path, required=True),
    _argument("--answers", type=Path, required=True, help="the judged task's answers, for the win rate"),
    _argument("--items", type=Path, required=True, help="every column's per-item scores (onmerge.items)"),
    _argument("--samples", type=Path, required=True, help="every sample's record, for audit (onmerge.items)"),
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


@_command(
    "judge toy",
    "toy AlpacaEval 2.0: LC win rate against the SFT reference",
    _argument("--suite", type=Path, required=True),
    _argument("--answers", type=Path, required=True),
    _argument("--reference-answers", type=Path, required=True),
    _OUT,
)
def _judge_toy(args: argparse.Namespace) -> None:
    """The judged file in the paper judges' shape, `{"metrics", "provenance", "judgments"}`: the provenance names
    the answers judged and the SFT answers they were judged against, by path and SHA-256."""
    from onmerge.atomic import write_json
    from onmerge.toyworld.evaluation import win_rates

    inputs = {"answers": args.answers, "reference_answers": args.reference_answers, "suite": args.suite}
    with _recorded("judge", args.out, {}, inputs):
        answers, reference = (path.read_text(encoding="utf-8") for path in (args.answers, args.reference_answers))
        judged = win_rates(args.suite, json.loads(answers), json.loads(reference))
        provenance = {
            "answers": str(args.answers),
            "answers_sha256": hashlib.sha256(answers.encode()).hexdigest(),
            "reference_answers": str(args.reference_answers),
            "reference_answers_sha256": hashlib.sha256(reference.encode()).hexdigest(),
        }
        write_json(args.out, judged | {"provenance": provenance | judged["provenance"]})
