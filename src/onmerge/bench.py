"""Optimizer benchmark: one step of each optimizer on the same parameters, as ratios to torch's AdamW.

All optimizers are timed in one process, round-robin, so the reference and the candidates see the same machine
state; the reference is the faster of torch's foreach and for-loop AdamW. Reported per optimizer: median ms/step,
ratio to AdamW, and optimizer-state bytes per parameter byte.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from onmerge.optim import ChildTuningAdamW, OnDAREAdamW, OnTIESAdamW

# Targets from the project's issue, on a 2-core CPU: (max ratio to AdamW).
TIME_TARGETS = {"OnDAREAdamW": 1.0, "OnTIESAdamW": 2.0}
STATE_TARGET = 2.05


@dataclass(frozen=True)
class BenchRow:
    name: str
    ms_per_step: float
    ratio_to_adamw: float
    state_bytes_per_param_byte: float


def _benchmark_shapes(total_params: int, tensors: int) -> list[tuple[int, int]]:
    """`tensors` matrices of 1.5:1 aspect (like attention/MLP blocks) adding up to about `total_params`."""
    rows = int((total_params / tensors / 1.5) ** 0.5)
    return [(int(rows * 1.5), rows)] * tensors


def _named_params(shapes, device, seed) -> list[tuple[str, Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    params = []
    for index, shape in enumerate(shapes):
        param = torch.nn.Parameter(torch.randn(shape, generator=generator).to(device))
        param.grad = torch.randn(shape, generator=generator).to(device)
        params.append((f"layers.{index}.weight", param))
    return params


def _state_ratio(optimizer: torch.optim.Optimizer, params: list[tuple[str, Tensor]]) -> float:
    state_bytes = sum(
        value.numel() * value.element_size()
        for state in optimizer.state.values()
        for value in state.values()
        if torch.is_tensor(value)
    )
    return state_bytes / sum(p.numel() * p.element_size() for _, p in params)


def run_optimizer_benchmark(
    total_params: int = 30_000_000,
    tensors: int = 20,
    reserve_p: float = 0.01,
    repeats: int = 7,
    device: str = "cpu",
) -> list[BenchRow]:
    shapes = _benchmark_shapes(total_params, tensors)
    tau = {name: 1e-3 * torch.randn(p.shape).to(device) for name, p in _named_params(shapes, "cpu", seed=1)}
    factories: dict[str, Callable[[list], torch.optim.Optimizer]] = {
        "torch AdamW (foreach)": lambda ps: torch.optim.AdamW([p for _, p in ps], lr=1e-6, foreach=True),
        "torch AdamW (for-loop)": lambda ps: torch.optim.AdamW([p for _, p in ps], lr=1e-6, foreach=False),
        "OnDAREAdamW": lambda ps: OnDAREAdamW(ps, tau, lr=1e-6, reserve_p=reserve_p, alpha=1e-7),
        "OnTIESAdamW": lambda ps: OnTIESAdamW(ps, tau, lr=1e-6, reserve_p=reserve_p, alpha=1e-7),
        "ChildTuningAdamW": lambda ps: ChildTuningAdamW(ps, lr=1e-6, reserve_p=reserve_p),
    }
    runs = {}
    for name, factory in factories.items():
        params = _named_params(shapes, device, seed=0)
        optimizer = factory(params)
        optimizer.step()  # warm-up, creates the state
        runs[name] = (optimizer, params, [])
    for _ in range(repeats):
        for optimizer, _, times in runs.values():
            if device != "cpu":
                torch.cuda.synchronize()
            start = time.perf_counter()
            optimizer.step()
            if device != "cpu":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1e3)
    medians = {name: statistics.median(times) for name, (_, _, times) in runs.items()}
    adamw_ms = min(medians["torch AdamW (foreach)"], medians["torch AdamW (for-loop)"])
    return [
        BenchRow(name, medians[name], medians[name] / adamw_ms, _state_ratio(optimizer, params))
        for name, (optimizer, params, _) in runs.items()
    ]


def format_rows(rows: list[BenchRow]) -> str:
    lines = [f"{'optimizer':<24}{'ms/step':>10}{'x AdamW':>10}{'state/param bytes':>20}{'target':>22}"]
    for row in rows:
        target = ""
        if row.name in TIME_TARGETS:
            met = row.ratio_to_adamw <= TIME_TARGETS[row.name] and row.state_bytes_per_param_byte <= STATE_TARGET
            target = f"<={TIME_TARGETS[row.name]:.1f}x, <={STATE_TARGET} {'met' if met else 'MISSED'}"
        lines.append(
            f"{row.name:<24}{row.ms_per_step:>10.1f}{row.ratio_to_adamw:>10.2f}"
            f"{row.state_bytes_per_param_byte:>20.3f}{target:>22}"
        )
    return "\n".join(lines)


def rows_to_tsv(rows: list[BenchRow]) -> str:
    header = "optimizer\tms_per_step\tratio_to_adamw\tstate_bytes_per_param_byte\n"
    return header + "".join(
        f"{r.name}\t{r.ms_per_step:.3f}\t{r.ratio_to_adamw:.4f}\t{r.state_bytes_per_param_byte:.4f}\n" for r in rows
    )


def run_toy_benchmark(preset: str) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Build a toy preset's world from scratch, train one AdamW DPO cell, evaluate it; time each step.

    Returns the seconds of every build step (they overlap in the parallel build), and (wall seconds, budget) for the
    issue's three budgets.
    """
    import json
    import tempfile

    from onmerge import grid
    from onmerge.config import load_preset
    from onmerge.toyworld.backbones import SCALES
    from onmerge.toyworld.evaluation import evaluate_model
    from onmerge.toyworld.experiment import build_world
    from onmerge.training import OptimizerSpec, PreferenceTraining, train_preference

    loaded = load_preset(preset)
    if "world" not in loaded:
        raise ValueError(f"preset {preset!r} is not a toy preset (it has no world section)")
    world_settings = loaded["world"]
    backbones = list(loaded["backbones"])
    name = backbones[0]
    cell = grid.TrainCell(name, "dpo", "adamw", (("beta", loaded["training"]["beta"]),), seed=0)
    training = PreferenceTraining(**grid.training_settings(loaded, cell)["training"])
    with tempfile.TemporaryDirectory(prefix="onmerge-bench-toy-") as scratch:
        root = Path(scratch)
        start = time.perf_counter()
        world, steps = build_world(  # steps overlap: two builds run at once
            root,
            SCALES[world_settings["scale"]],
            seed=world_settings["seed"],
            backbones=backbones,
            preference_pairs=world_settings["preference_pairs"],
            docs_per_task=world_settings["docs_per_task"],
        )
        models = time.perf_counter() - start
        start = time.perf_counter()
        model = train_preference(
            sft=world.sfts[name],
            base=world.bases[name],
            rows=json.loads(world.preferences.read_text()),
            out=root / "dpo",
            training=training,
            optimizer=OptimizerSpec("adamw"),
        )
        dpo = time.perf_counter() - start
        start = time.perf_counter()
        evaluate_model(model, world.suite, answers_path=root / "answers.json")
        evaluation = time.perf_counter() - start
    totals = {
        f"whole world: {len(backbones)} bases + SFTs, wall": (models, 300.0),
        f"one toy DPO run ({name})": (dpo, 30.0),
        "one full evaluation (14 + judge)": (evaluation, 30.0),
    }
    return steps, totals
