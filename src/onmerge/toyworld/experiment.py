"""Build the toy world and measure what the paper measures in it: reward against alignment tax.

`build_world` makes the tokenizers, the three base models and their SFT models, the preference data and the
held-out task suite, skipping whatever already exists. `alignment_tax` trains AdamW DPO cells from each SFT model
and compares each with its reference on the judge (toy MT-Bench, LC win rate) and on the Benchmark Avg.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path

from onmerge.aggregate import benchmark_average
from onmerge.atomic import write_json
from onmerge.toyworld import evaluation, judge, suite
from onmerge.toyworld.models import BACKBONES, SMOKE_SCALE, TOY_SCALE, ToyScale, build_base, build_sft, train_tokenizer
from onmerge.toyworld.world import COLUMN_CATEGORY, tokenizer_corpus
from onmerge.training import OptimizerSpec, PreferenceTraining, train_preference


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

    The settings come from the run configuration's `toy` section (`settings_from_config`).

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
        timings["preferences"] = _timed(_write_preferences, preferences.parent, preference_pairs, seed)
    suite_dir = root / "suite"
    if not suite_dir.exists():
        timings["suite"] = _timed(evaluation.write_task_suite, suite_dir, docs_per_task, seed)
    return World(root, tokenizers, bases, sfts, preferences, suite_dir), timings


def _write_preferences(folder: Path, pairs: int, seed: int) -> None:
    """Train and test pairs (as UltraFeedback binarized has), and the unpaired views KTO trains on."""
    test_pairs = max(1, pairs // 8)
    for split, count in (("test", test_pairs), ("train", pairs)):  # train.json last: its presence means done
        chosen_rejected = judge.preference_pairs(count, seed, "eval" if split == "test" else "train")
        write_json(folder / f"{split}_unpaired.json", judge.to_unpaired(chosen_rejected))
        write_json(folder / f"{split}.json", judge.to_conversational(chosen_rejected))


def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _timed(function, *args, **kwargs) -> float:
    start = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - start


def evaluate(model: Path, world: World, out: Path) -> tuple[dict, dict[str, str]]:
    """Every toy column plus the judged task for one model, kept in `out/metrics.json` and `out/answers.json`.

    Returns (metrics, judged answers by doc id); an evaluation already on disk is read, not run again.
    """
    metrics_path, answers_path = out / "metrics.json", out / "answers.json"
    if not metrics_path.exists():
        metrics = evaluation.evaluate_model(model, world.suite, answers_path=answers_path)
        evaluation.write_results(metrics, metrics_path, model_dir=model, include_path=world.suite)
    return json.loads(metrics_path.read_text())["metrics"], json.loads(answers_path.read_text())


def summarize(
    world: World, metrics: dict, answers: dict[str, str], reference_answers: dict[str, str]
) -> dict[str, object]:
    """Categories and Benchmark Avg. (with stderr), toy MT-Bench, and the LC win rate against the reference."""
    columns = {column: (metrics[column]["value"], metrics[column]["stderr"]) for column in COLUMN_CATEGORY}
    scores = benchmark_average(columns, COLUMN_CATEGORY)
    manifest = evaluation.read_manifest(world.suite)
    docs = suite.docs(suite.JUDGE_TASK.name, manifest["n_per_task"], manifest["seed"])
    items = [suite.item_of(doc) for doc in docs]
    lc, raw = judge.length_controlled_win_rate(
        items, [answers[d["id"]] for d in docs], [reference_answers[d["id"]] for d in docs]
    )
    return {
        **{name: {"value": v, "stderr": se} for name, (v, se) in scores.items()},
        "mt_bench": {"value": metrics["toy_mt_bench"]["value"], "stderr": metrics["toy_mt_bench"]["stderr"]},
        "alpacaeval_lc": lc,
        "alpacaeval_raw": raw,
    }


def alignment_tax(world: World, seeds: list[int], out: Path, training: PreferenceTraining) -> list[dict]:
    """AdamW DPO from each SFT model with each seed, summarised beside the SFT reference and the base model."""
    rows = json.loads(world.preferences.read_text())
    table = []
    for name, sft in world.sfts.items():
        base_metrics, base_answers = evaluate(world.bases[name], world, out / name / "base")
        reference_metrics, reference_answers = evaluate(sft, world, out / name / "reference")
        table.append(
            {"backbone": name, "model": "base", "seed": None}
            | summarize(world, base_metrics, base_answers, reference_answers)
        )
        table.append(
            {"backbone": name, "model": "reference", "seed": None}
            | summarize(world, reference_metrics, reference_answers, reference_answers)
        )
        for seed in seeds:
            cell = out / name / f"adamw_seed{seed}"
            model = cell / "model"
            if not model.exists():
                start = time.perf_counter()
                train_preference(
                    sft=sft,
                    base=world.bases[name],
                    rows=rows,
                    out=model,
                    training=replace(training, seed=seed),
                    optimizer=OptimizerSpec("adamw"),
                )
                write_json(cell / "train_seconds.json", time.perf_counter() - start)
            metrics, answers = evaluate(model, world, cell)
            table.append(
                {"backbone": name, "model": "adamw", "seed": seed}
                | summarize(world, metrics, answers, reference_answers)
            )
    write_json(out / "alignment_tax.json", table)
    return table


def settings_from_config(toy: dict) -> tuple[ToyScale, PreferenceTraining, dict]:
    """The validated `toy` section of the run configuration as (scale, DPO training, `build_world` arguments)."""
    scale = {"toy": TOY_SCALE, "smoke": SMOKE_SCALE}[toy["scale"]]
    training = PreferenceTraining(loss="dpo", **toy["dpo"])
    world = {
        "seed": toy["world_seed"],
        "backbones": toy["backbones"],
        "preference_pairs": toy["preference_pairs"],
        "docs_per_task": toy["docs_per_task"],
    }
    return scale, training, world


def format_table(table: list[dict]) -> str:
    lines = [f"{'backbone':<9}{'model':<11}{'seed':>5}{'MT-Bench':>16}{'LC win %':>10}{'Benchmark Avg. %':>20}"]
    for row in table:
        seed = "" if row["seed"] is None else str(row["seed"])
        mt, avg = row["mt_bench"], row["benchmark_avg"]
        lines.append(
            f"{row['backbone']:<9}{row['model']:<11}{seed:>5}{mt['value']:>9.2f} +- {mt['stderr']:.2f}"
            f"{row['alpacaeval_lc']:>10.1f}{100 * avg['value']:>12.1f} +- {100 * avg['stderr']:.1f}"
        )
    return "\n".join(lines)
