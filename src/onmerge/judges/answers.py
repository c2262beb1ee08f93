"""The answers the judges grade: a model folder's chat answers (chat template, the backbone's sampling settings,
seeded), generated with transformers (`hf`, batched, on CUDA when there is one) or vLLM (`vllm`, on a GPU, in its own
environment: README, "Generation through vLLM"). Both write the same answers file: the prompt tokens, the settings,
the stop tokens and the decoding are shared, and vLLM gets the settings exactly or refuses (`onmerge.vllm_sampling`).

The paper samples with each backbone's settings (Qwen1.5: top-p 0.8, temperature 0.7, top-k 20, repetition penalty
1.05; Llama-3: top-p 0.8, temperature 0.7); the workflow passes them as a JSON object of `GENERATION_KEYS`. Answers
are stripped of surrounding whitespace, as FastChat's `gen_model_answer.py` strips them.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from onmerge.atomic import write_json
from onmerge.judges.alpacaeval import read_instructions
from onmerge.judges.mt_bench import answer_rows, read_questions
from onmerge.lm_evaluation import BACKENDS, EVAL_SEED
from onmerge.progress import Progress
from onmerge.vllm_sampling import checkpoint_dtype, load_generation_config, sampling_arguments, stop_token_ids

GENERATION_KEYS = frozenset(
    {"do_sample", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_new_tokens"}
)
MT_BENCH_MAX_NEW_TOKENS = 1024  # FastChat gen_model_answer.py's --max-new-token default
ALPACAEVAL_MAX_NEW_TOKENS = 2048  # alpaca_eval's model configs' usual max_new_tokens
_SAMPLING_ONLY = ("temperature", "top_p", "top_k", "min_p")

Conversation = Sequence[Mapping[str, str]]


def parse_generation(text: str, max_new_tokens: int) -> dict[str, Any]:
    """Generation settings from a JSON object, `max_new_tokens` defaulted; ValueError names what is wrong."""
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"generation settings are not JSON ({error}): {text!r}") from error
    if not isinstance(settings, dict):
        raise ValueError(f"generation settings must be a JSON object, not {text!r}")
    return check_generation({"max_new_tokens": max_new_tokens} | settings)


def check_generation(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings, if every key is a known one with a value of the right kind."""
    unknown = sorted(set(settings) - GENERATION_KEYS)
    if unknown:
        raise ValueError(f"unknown generation settings {unknown} (known: {sorted(GENERATION_KEYS)})")
    for key, value in settings.items():
        if key == "do_sample":
            valid = isinstance(value, bool)
        elif key in ("top_k", "max_new_tokens"):
            valid = isinstance(value, int) and not isinstance(value, bool) and value >= (0 if key == "top_k" else 1)
        else:
            valid = isinstance(value, numbers.Real) and not isinstance(value, bool) and value >= 0
        if not valid:
            raise ValueError(f"generation setting {key}={value!r} is not valid")
    sampling = [key for key in _SAMPLING_ONLY if key in settings]
    if sampling and not settings.get("do_sample", False):
        raise ValueError(f'generation settings {sampling} only apply when sampling: add "do_sample": true')
    return dict(settings)


class ChatModel:
    """What both backends share for one model folder: its tokenizer and chat template, the generation settings (the
    model's generation config under the caller's), where an answer stops, and how it is decoded (stripped, as FastChat
    does). A backend's `generate` turns prompts into the new tokens of each."""

    def __init__(self, model_dir: Path, generation: Mapping[str, Any], *, seed: int) -> None:
        from transformers import AutoTokenizer

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise ValueError(f"{model_dir} is not a model folder (no config.json)")
        self.model_dir = model_dir
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if self.tokenizer.chat_template is None:
            raise ValueError(f"the tokenizer in {model_dir} has no chat template")
        self.config = load_generation_config(model_dir)
        self.config.update(**check_generation(generation))
        self.config.eos_token_id = stop_token_ids(self.config, self.tokenizer)
        self.seed = seed

    @property
    def settings(self) -> dict[str, Any]:
        """The effective generation settings (the model's own defaults where the preset sets none)."""
        keys = sorted(GENERATION_KEYS | {"eos_token_id"})
        return {key: getattr(self.config, key, None) for key in keys}

    def encode(self, conversations: Sequence[Conversation]) -> list[list[int]]:
        """Each conversation's prompt tokens, chat template applied, ready for the assistant's next message."""
        return [
            self.tokenizer.apply_chat_template(list(c), add_generation_prompt=True, tokenize=True, return_dict=False)
            for c in conversations
        ]

    def generate(self, prompts: Sequence[list[int]]) -> list[list[int]]:
        """The new tokens of each prompt, up to (without) the first stop token."""
        raise NotImplementedError

    def answer(self, conversations: Sequence[Conversation]) -> list[str]:
        """The model's next assistant message for each conversation."""
        generated = self.generate(self.encode(conversations))
        return [self.tokenizer.decode(tokens, skip_special_tokens=True).strip() for tokens in generated]

    def _until_stop(self, tokens: Sequence[int]) -> list[int]:
        stops = set(self.config.eos_token_id)
        end = next((index for index, token in enumerate(tokens) if token in stops), len(tokens))
        return list(tokens[:end])


class ChatGenerator(ChatModel):
    """transformers' `generate`, on CUDA when there is one.

    Each batch is seeded with `seed` plus its number (counted over the generator's life), so a run is repeatable
    and no two batches share a seed. Prompts are batched longest first, which wastes least on padding.
    """

    def __init__(
        self, model_dir: Path, generation: Mapping[str, Any], *, seed: int, batch_size: int, device: str | None = None
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {batch_size}")
        super().__init__(model_dir, generation, seed=seed)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype="auto").to(self.device).eval()
        self.config.pad_token_id = self.tokenizer.pad_token_id
        self.batch_size = batch_size
        self._batches = 0

    def generate(self, prompts: Sequence[list[int]]) -> list[list[int]]:
        import torch
        from transformers import set_seed

        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        generated: list[list[int]] = [[] for _ in prompts]
        with Progress("answers", len(prompts), "prompts") as progress:
            for start in range(0, len(order), self.batch_size):
                indices = order[start : start + self.batch_size]
                batch = self.tokenizer.pad({"input_ids": [prompts[i] for i in indices]}, return_tensors="pt")
                batch = batch.to(self.device)
                set_seed(self.seed + self._batches)
                self._batches += 1
                with torch.inference_mode():
                    output = self.model.generate(**batch, generation_config=self.config)
                prompt_length = batch["input_ids"].shape[1]
                for i, row in zip(indices, output[:, prompt_length:].tolist(), strict=True):
                    generated[i] = self._until_stop(row)
                progress.advance(len(indices))
        return generated


class VllmChatGenerator(ChatModel):
    """vLLM, on the same prompt tokens and with the same settings (`onmerge.vllm_sampling`), decoded by the same
    tokenizer. vLLM schedules the batches itself; each request is seeded with `seed` plus its number (counted over the
    generator's life), so its draws do not depend on what it was batched with."""

    def __init__(self, model_dir: Path, generation: Mapping[str, Any], *, seed: int) -> None:
        from vllm import LLM, SamplingParams

        super().__init__(model_dir, generation, seed=seed)
        self._sampling_params = SamplingParams
        self._sampling = sampling_arguments(self.config) | {"max_tokens": self.config.max_new_tokens}
        self.llm = LLM(model=str(self.model_dir), dtype=checkpoint_dtype(self.model_dir), seed=seed)
        self._requests = 0

    def generate(self, prompts: Sequence[list[int]]) -> list[list[int]]:
        first = self.seed + self._requests
        self._requests += len(prompts)
        outputs = self.llm.generate(
            [{"prompt_token_ids": list(tokens)} for tokens in prompts],
            sampling_params=[self._sampling_params(**self._sampling, seed=first + i) for i in range(len(prompts))],
            use_tqdm=False,
        )
        return [self._until_stop(output.outputs[0].token_ids) for output in outputs]


def chat_generator(
    backend: str, model_dir: Path, generation: Mapping[str, Any], *, seed: int, batch_size: int
) -> ChatModel:
    """The answering model of `backend` (vLLM batches by itself, so `batch_size` is transformers')."""
    if backend == "vllm":
        return VllmChatGenerator(model_dir, generation, seed=seed)
    if backend == "hf":
        return ChatGenerator(model_dir, generation, seed=seed, batch_size=batch_size)
    raise ValueError(f"unknown generation backend {backend!r} (known: {', '.join(BACKENDS)})")


def answer_two_turns(generator: ChatModel, turns: Sequence[Sequence[str]]) -> list[list[str]]:
    """MT-Bench's answers: the first turns, then each second turn asked after the model's own first answer."""
    first = generator.answer([[{"role": "user", "content": question[0]}] for question in turns])
    second = generator.answer(
        [
            [
                {"role": "user", "content": question[0]},
                {"role": "assistant", "content": answer},
                {"role": "user", "content": question[1]},
            ]
            for question, answer in zip(turns, first, strict=True)
        ]
    )
    return [[a, b] for a, b in zip(first, second, strict=True)]


def answer_instructions(generator: ChatModel, instructions: Sequence[str]) -> list[str]:
    """AlpacaEval's outputs: each instruction as the single user message."""
    return generator.answer([[{"role": "user", "content": instruction}] for instruction in instructions])


def write_mt_bench_answers(
    model_dir: Path,
    questions_source: str,
    generation_json: str,
    out: Path,
    *,
    limit: int | None = None,
    seed: int = EVAL_SEED,
    batch_size: int = 16,
    backend: str = "hf",
) -> None:
    """The model's answers to both turns of every MT-Bench question, as the answers file `judge mt-bench` reads."""
    generation = parse_generation(generation_json, MT_BENCH_MAX_NEW_TOKENS)
    questions, text = read_questions(questions_source, limit)
    generator = chat_generator(backend, model_dir, generation, seed=seed, batch_size=batch_size)
    answers = answer_two_turns(generator, [question.turns for question in questions])
    write_json(
        out,
        {
            "benchmark": "mt_bench",
            "model": str(Path(model_dir).resolve()),
            "questions": text.source,
            "questions_sha256": text.sha256,
            "generation": generator.settings,
            "seed": seed,
            "answers": answer_rows(questions, answers),
        },
    )


def write_alpacaeval_outputs(
    model_dir: Path,
    instructions_source: str,
    generation_json: str,
    out: Path,
    *,
    limit: int | None = None,
    seed: int = EVAL_SEED,
    batch_size: int = 16,
    backend: str = "hf",
) -> None:
    """The model's output for every AlpacaEval instruction (alpaca_eval's model-outputs format under `outputs`)."""
    generation = parse_generation(generation_json, ALPACAEVAL_MAX_NEW_TOKENS)
    instructions, text = read_instructions(instructions_source, limit)
    generator = chat_generator(backend, model_dir, generation, seed=seed, batch_size=batch_size)
    outputs = answer_instructions(generator, [item.instruction for item in instructions])
    generator_name = Path(model_dir).resolve().name
    write_json(
        out,
        {
            "benchmark": "alpacaeval",
            "model": str(Path(model_dir).resolve()),
            "instructions": text.source,
            "instructions_sha256": text.sha256,
            "generation": generator.settings,
            "seed": seed,
            "outputs": [
                {"instruction": item.instruction, "output": output, "generator": generator_name}
                for item, output in zip(instructions, outputs, strict=True)
            ],
        },
    )
