"""Optimizer benchmark: one step of each optimizer on the same parameters, as ratios to torch's AdamW.

All optimizers are timed in one process, round-robin, so the reference and the candidates see the same machine
state; the reference is the fastest torch AdamW measured in the run (foreach, for-loop or fused; on CPU fused is
usually fastest). Every step sees fresh gradients (a few sets drawn once, copied in untimed): with one fixed
gradient Adam's update magnitudes converge to near-ties, which no training run sees. Reported per optimizer: median
ms/step, ratio to the fastest and to the faster unfused AdamW, and optimizer-state bytes per parameter byte.

On CPU the parameters are synthetic float32 matrices; `device="cuda"` uses Qwen1.5-1.8B's tensor shapes in bf16,
as the presets train.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from onmerge.optim import ChildTuningAdamW, OnDAREAdamW, OnTIESAdamW
from onmerge.seeding import stable_seed

# Targets from the project's issue 18, as ratios to the fastest torch AdamW.
TIME_TARGETS = {"OnDAREAdamW": 0.7, "OnTIESAdamW": 1.5}
STATE_TARGET = 2.05
_UNFUSED = ("torch AdamW (foreach)", "torch AdamW (for-loop)")
_GRADIENT_SETS = 2

Shapes = list[tuple[str, tuple[int, ...]]]
NamedParams = list[tuple[str, Tensor]]
OptimizerFactory = Callable[[NamedParams], torch.optim.Optimizer]


@dataclass(frozen=True)
class BenchRow:
    name: str
    ms_per_step: float
    ratio_to_adamw: float  # to the fastest torch AdamW of the run
    ratio_to_unfused: float  # to the faster of torch's foreach and for-loop AdamW (the reference before fused)
    state_bytes_per_param_byte: float


def synthetic_shapes(total_params: int, tensors: int) -> Shapes:
    """`tensors` matrices of 1.5:1 aspect (like attention/MLP blocks) adding up to about `total_params`."""
    rows = int((total_params / tensors / 1.5) ** 0.5)
    return [(f"layers.{index}.weight", (int(rows * 1.5), rows)) for index in range(tensors)]


def qwen1_5_1_8b_shapes() -> Shapes:
    """Qwen1.5-1.8B's trainable tensors by name: 1,836,828,672 parameters.

    From https://huggingface.co/Qwen/Qwen1.5-1.8B/blob/main/config.json: hidden_size 2048, intermediate_size 5504,
    num_hidden_layers 24, num_attention_heads = num_key_value_heads = 16, vocab_size 151936, tie_word_embeddings
    false; Qwen2 layers have biases on the q, k and v projections only.
    """
    hidden, intermediate, layers, vocab = 2048, 5504, 24, 151936
    shapes = [("model.embed_tokens.weight", (vocab, hidden))]
    for layer in range(layers):
        prefix = f"model.layers.{layer}"
        for projection in ("q", "k", "v"):
            shapes += [(f"{prefix}.self_attn.{projection}_proj.weight", (hidden, hidden))]
            shapes += [(f"{prefix}.self_attn.{projection}_proj.bias", (hidden,))]
        shapes += [(f"{prefix}.self_attn.o_proj.weight", (hidden, hidden))]
        shapes += [(f"{prefix}.mlp.{name}_proj.weight", (intermediate, hidden)) for name in ("gate", "up")]
        shapes += [(f"{prefix}.mlp.down_proj.weight", (hidden, intermediate))]
        shapes += [(f"{prefix}.{norm}.weight", (hidden,)) for norm in ("input_layernorm", "post_attention_layernorm")]
    return [*shapes, ("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))]


def cuda_unavailable() -> str | None:
    """Why `bench optim --device cuda` cannot run here, or None."""
    if not torch.cuda.is_available():
        return "--device cuda needs a CUDA GPU, and torch sees none: run it on a GPU node (about 70 GB of its memory)"
    return None


def _random(shape: tuple[int, ...], seed: int, device: str, dtype: torch.dtype, scale: float = 1.0) -> Tensor:
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(shape, generator=generator, device=device, dtype=torch.float32).mul_(scale).to(dtype)


class _RandomTaskVector(Mapping[str, Tensor]):
    """A task vector drawn one tensor at a time, as `onmerge.optim.TaskVector` reads one: a 1.8B model's full float32
    tau is never in memory at once."""

    def __init__(self, shapes: Shapes, device: str):
        self._shapes, self._device = dict(shapes), device

    def __getitem__(self, name: str) -> Tensor:
        return _random(self._shapes[name], stable_seed(1, name), self._device, torch.float32, scale=1e-3)

    def __iter__(self) -> Iterator[str]:
        return iter(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)


def _named_params(shapes: Shapes, device: str, dtype: torch.dtype) -> NamedParams:
    params = []
    for index, (name, shape) in enumerate(shapes):
        param = torch.nn.Parameter(_random(shape, index, device, dtype))
        param.grad = torch.empty_like(param)
        params.append((name, param))
    return params


def _state_ratio(optimizer: torch.optim.Optimizer, params: NamedParams) -> float:
    """What the optimizer holds beside the weights (its state, and the online optimizers' sparse tau_r), per byte of
    weights."""
    held = [value for state in optimizer.state.values() for value in state.values() if torch.is_tensor(value)]
    if isinstance(optimizer, (OnDAREAdamW, OnTIESAdamW)):
        held += [
            tensor for _, p in params for tensor in (optimizer.reference(p).indices, optimizer.reference(p).values)
        ]
    return sum(value.numel() * value.element_size() for value in held) / sum(
        p.numel() * p.element_size() for _, p in params
    )


def _optimizers(device: str, tau: Mapping[str, Tensor], reserve_p: float) -> dict[str, OptimizerFactory]:
    """What is timed. On CUDA only fused and foreach AdamW, OnDARE and OnTIES: four copies of a 1.8B model with
    gradients and moments already take about 60 GB (and a for-loop AdamW is never the faster one there)."""

    def adamw(**variant: bool) -> OptimizerFactory:
        return lambda named: torch.optim.AdamW([p for _, p in named], lr=1e-6, **variant)

    factories = {"torch AdamW (fused)": adamw(fused=True), "torch AdamW (foreach)": adamw(foreach=True)}
    if device == "cpu":
        factories["torch AdamW (for-loop)"] = adamw(foreach=False)
    factories["OnDAREAdamW"] = lambda named: OnDAREAdamW(named, tau, lr=1e-6, reserve_p=reserve_p, alpha=1e-7)
    factories["OnTIESAdamW"] = lambda named: OnTIESAdamW(named, tau, lr=1e-6, reserve_p=reserve_p, alpha=1e-7)
    if device == "cpu":
        factories["ChildTuningAdamW"] = lambda named: ChildTuningAdamW(named, lr=1e-6, reserve_p=reserve_p)
    return factories


def run_optimizer_benchmark(
    total_params: int = 30_000_000,
    tensors: int = 20,
    reserve_p: float = 0.01,
    repeats: int = 7,
    device: str = "cpu",
) -> list[BenchRow]:
    """Median step time of each optimizer, interleaved. On CUDA the parameter set is Qwen1.5-1.8B's in bf16
    (`total_params` and `tensors` unused); asked for CUDA without one, RuntimeError says why."""
    if device == "cuda" and (reason := cuda_unavailable()):
        raise RuntimeError(reason)
    shapes = synthetic_shapes(total_params, tensors) if device == "cpu" else qwen1_5_1_8b_shapes()
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    gradient_sets = [
        [_random(shape, 1000 * (index + 1) + draw, device, dtype) for index, (_, shape) in enumerate(shapes)]
        for draw in range(_GRADIENT_SETS)
    ]
    runs = {}
    for name, factory in _optimizers(device, _RandomTaskVector(shapes, device), reserve_p).items():
        params = _named_params(shapes, device, dtype)
        optimizer = factory(params)
        _step(optimizer, params, gradient_sets[-1], device)  # warm-up, creates the state
        runs[name] = (optimizer, params, [])
    for repeat in range(repeats):
        for optimizer, params, times in runs.values():
            times.append(_step(optimizer, params, gradient_sets[repeat % _GRADIENT_SETS], device))
    medians = {name: statistics.median(times) for name, (_, _, times) in runs.items()}
    fastest = min(medians[name] for name in medians if name.startswith("torch AdamW"))
    unfused = min(medians[name] for name in _UNFUSED if name in medians)
    return [
        BenchRow(name, medians[name], medians[name] / fastest, medians[name] / unfused, _state_ratio(opt, params))
        for name, (opt, params, _) in runs.items()
    ]


def _step(optimizer: torch.optim.Optimizer, params: NamedParams, gradients: list[Tensor], device: str) -> float:
    """Milliseconds of one `optimizer.step()` on fresh copies of `gradients` (the copy is not timed)."""
    for (_, param), gradient in zip(params, gradients, strict=True):
        param.grad.copy_(gradient)  # ChildTuning masks gradients in place: every optimizer gets its own copy
    if device != "cpu":
        torch.cuda.synchronize()
    start = time.perf_counter()
    optimizer.step()
    if device != "cpu":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


def format_rows(rows: list[BenchRow]) -> str:
    header = f"{'optimizer':<24}{'ms/step':>10}{'x AdamW':>10}{'x unfused':>11}{'state/param bytes':>20}{'target':>22}"
    lines = [header]
    for row in rows:
        target = ""
        if row.name in TIME_TARGETS:
            met = row.ratio_to_adamw <= TIME_TARGETS[row.name] and row.state_bytes_per_param_byte <= STATE_TARGET
            target = f"<={TIME_TARGETS[row.name]:.1f}x, <={STATE_TARGET} {'met' if met else 'MISSED'}"
        lines.append(
            f"{row.name:<24}{row.ms_per_step:>10.1f}{row.ratio_to_adamw:>10.2f}{row.ratio_to_unfused:>11.2f}"
            f"{row.state_bytes_per_param_byte:>20.3f}{target:>22}"
        )
    return "\n".join(lines)


def rows_to_tsv(rows: list[BenchRow]) -> str:
    header = "optimizer\tms_per_step\tratio_to_adamw\tstate_bytes_per_param_byte\n"
    return header + "".join(
        f"{r.name}\t{r.ms_per_step:.3f}\t{r.ratio_to_adamw:.4f}\t{r.state_bytes_per_param_byte:.4f}\n" for r in rows
    )


# `onmerge bench gpu`: generation throughput of the pipeline's two backends (onmerge.judges.answers) on one model.
_BENCH_ASKS = (
    "Explain {} to a first-year student.",
    "Write a short essay about {}.",
    "List ten facts about {}, one sentence each.",
    "Describe common misconceptions about {} and correct them.",
)
_BENCH_TOPICS = (
    "the water cycle",
    "binary search",
    "the French Revolution",
    "photosynthesis",
    "compound interest",
    "TCP connections",
    "plate tectonics",
    "hash tables",
)


@dataclass(frozen=True)
class GenerationRun:
    backend: str
    tokens: int  # generated, up to each answer's stop token
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


def generation_bench_unavailable() -> str | None:
    """Why `bench gpu` cannot run in this environment (no CUDA device, no vLLM), or None."""
    import importlib.util

    if not torch.cuda.is_available():
        return "it needs a CUDA GPU, and torch sees none: run it on a GPU node"
    if importlib.util.find_spec("vllm") is None:
        return (
            "it needs vLLM, which this environment lacks: run .venv-vllm/bin/onmerge bench gpu"
            " (made by `bash envs/setup-venv.sh --vllm`)"
        )
    return None


def bench_prompts(count: int) -> list[str]:
    """`count` distinct one-turn requests, numbered, so that no two share more than the chat template's prefix."""
    asks = [ask.format(topic) for topic in _BENCH_TOPICS for ask in _BENCH_ASKS]
    return [f"Request {index + 1}. {asks[index % len(asks)]}" for index in range(count)]


def run_generation_benchmark(
    model_dir: Path, prompts: int, max_new_tokens: int, batch_size: int
) -> tuple[GenerationRun, GenerationRun]:
    """(transformers, vLLM): the same greedy requests through each backend's answering model, one after the other on
    the GPU (transformers' model is freed before vLLM takes its memory), each timed after a one-request warm-up."""
    import gc

    from onmerge.judges.answers import ChatGenerator, ChatModel, VllmChatGenerator
    from onmerge.lm_evaluation import EVAL_SEED

    generation = {"do_sample": False, "max_new_tokens": max_new_tokens}
    conversations = [[{"role": "user", "content": text}] for text in bench_prompts(prompts)]
    backends: dict[str, Callable[[], ChatModel]] = {
        "hf": lambda: ChatGenerator(model_dir, generation, seed=EVAL_SEED, batch_size=batch_size, device="cuda"),
        "vllm": lambda: VllmChatGenerator(model_dir, generation, seed=EVAL_SEED),
    }
    runs = []
    for backend, load in backends.items():
        generator = load()
        encoded = generator.encode(conversations)
        generator.generate(encoded[:1])
        torch.cuda.synchronize()
        start = time.perf_counter()
        generated = generator.generate(encoded)
        torch.cuda.synchronize()
        runs.append(GenerationRun(backend, sum(map(len, generated)), time.perf_counter() - start))
        del generator
        gc.collect()
        torch.cuda.empty_cache()
    return runs[0], runs[1]


def format_generation_runs(hf: GenerationRun, vllm: GenerationRun) -> str:
    lines = [f"{'backend':<14}{'tokens':>10}{'seconds':>10}{'tokens/s':>12}"]
    for run in (hf, vllm):
        lines.append(f"{run.backend:<14}{run.tokens:>10}{run.seconds:>10.1f}{run.tokens_per_second:>12.1f}")
    lines.append(f"vLLM / transformers: {vllm.tokens_per_second / hf.tokens_per_second:.2f}x tokens/s")
    return "\n".join(lines)
