"""Tiny offline stand-ins for the tokenizer, models and datasets the pipeline uses.

Nothing can be fetched from a hub in tests, so everything is built locally in well under a second: a byte-level BPE
tokenizer with a ChatML chat template, randomly initialised 2-layer Qwen2/Llama models, and synthetic preference data
in trl's conversational formats.
"""

from __future__ import annotations

import copy
import functools
import random
from pathlib import Path
from typing import Literal

import torch
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from onmerge.toyworld.models import CHAT_TEMPLATE  # ChatML, with {% generation %} markers for trl

BOS, EOS, PAD = "<|startoftext|>", "<|im_end|>", "<|endoftext|>"
SPECIAL_TOKENS = [PAD, BOS, "<|im_start|>", EOS]

_SUBJECTS = ["sky", "grass", "sun", "sea", "snow", "cat", "dog", "apple"]
_GOOD = {
    "sky": "blue",
    "grass": "green",
    "sun": "yellow",
    "sea": "blue",
    "snow": "white",
    "cat": "small",
    "dog": "loyal",
    "apple": "red",
}
_BAD = ["purple", "square", "loud", "broken", "plaid", "angry"]
_QUESTIONS = ["what color is the {}?", "describe the {} please.", "tell me about the {}."]
_SYSTEM = "you are a helpful assistant."


def _corpus() -> list[str]:
    """Every sentence the synthetic data can produce, so the BPE vocabulary covers them with few tokens each."""
    lines = [_SYSTEM, "system user assistant"]
    for subject in _SUBJECTS:
        lines += [question.format(subject) for question in _QUESTIONS]
        lines += [f"the {subject} is {word}." for word in [_GOOD[subject], *_BAD]]
        lines.append(f"i do not know about the {subject}.")
    return lines


@functools.cache
def _tokenizer_json() -> str:
    """Train once per process; callers get a fresh tokenizer because trainers mutate it (e.g. pad token)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus() * 4, trainer=trainer)
    return tokenizer.to_str()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE (any text encodes, no UNK) with ChatML special tokens and chat template."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=256,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_causal_lm(seed: int, arch: Literal["qwen2", "llama"] = "qwen2") -> PreTrainedModel:
    """A random float32 2-layer model (GQA, untied head) whose vocabulary matches `tiny_tokenizer`."""
    tokenizer = tiny_tokenizer()
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 256,
        "tie_word_embeddings": False,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = Qwen2Config(**common) if arch == "qwen2" else LlamaConfig(**common)
    model_cls = Qwen2ForCausalLM if arch == "qwen2" else LlamaForCausalLM
    torch.manual_seed(seed)
    return model_cls(config).to(torch.float32)


def _pairs(n: int, seed: int) -> list[tuple[list[dict[str, str]], str, str]]:
    """(prompt messages, preferred answer, dispreferred answer): a seeded draw, with a learnable preference."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        subject = rng.choice(_SUBJECTS)
        prompt = [{"role": "user", "content": rng.choice(_QUESTIONS).format(subject)}]
        if rng.random() < 0.5:
            prompt.insert(0, {"role": "system", "content": _SYSTEM})
        bad = rng.choice([*_BAD, None])
        rejected = f"i do not know about the {subject}." if bad is None else f"the {subject} is {bad}."
        pairs.append((prompt, f"the {subject} is {_GOOD[subject]}.", rejected))
    return pairs


def tiny_preference_dataset(n: int = 16, seed: int = 0) -> Dataset:
    """trl's conversational preference format: `prompt`, `chosen`, `rejected` as message lists."""
    rows = [
        {
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }
        for prompt, chosen, rejected in _pairs(n, seed)
    ]
    return Dataset.from_list(rows)


def tiny_unpaired_dataset(n: int = 16, seed: int = 0) -> Dataset:
    """trl's conversational unpaired preference format (KTO): `prompt`, `completion`, boolean `label`.

    Labels alternate so every batch holds both kinds: KTO weighs desirable and undesirable losses separately.
    """
    rows = []
    for i, (prompt, chosen, rejected) in enumerate(_pairs(n, seed)):
        desirable = i % 2 == 0
        answer = chosen if desirable else rejected
        rows.append({"prompt": prompt, "completion": [{"role": "assistant", "content": answer}], "label": desirable})
    return Dataset.from_list(rows)


def save_base_and_sft(tmp_path: Path, seed: int = 0, noise_std: float = 0.01) -> tuple[Path, Path]:
    """Write a base model and an "SFT" model (base + seeded noise on every parameter), each with the tokenizer.

    Every parameter differs, so a task vector between the two folders is nonzero everywhere.
    """
    base = tiny_causal_lm(seed)
    sft = copy.deepcopy(base)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in sft.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * noise_std)
    tokenizer = tiny_tokenizer()
    folders = (Path(tmp_path) / "base", Path(tmp_path) / "sft")
    for model, folder in zip((base, sft), folders, strict=True):
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
    return folders
