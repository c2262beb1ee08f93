"""The toy backbones' shapes and the scales they are built at: plain data, light enough for Snakemake to read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Arch = Literal["qwen2", "llama"]


@dataclass(frozen=True)
class BackboneSpec:
    """Shape of a toy backbone; embeddings are untied, as in Qwen1.5-1.8B/7B and Llama-3-8B."""

    arch: Arch
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int


# Qwen1.5 uses full multi-head attention, Llama-3 grouped-query attention; "m" is the larger size of the paper's pair.
BACKBONES: dict[str, BackboneSpec] = {
    "qwen-s": BackboneSpec("qwen2", hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=4, intermediate_size=192),
    "qwen-m": BackboneSpec("qwen2", hidden_size=96, num_layers=3, num_heads=6, num_kv_heads=6, intermediate_size=288),
    "llama-m": BackboneSpec("llama", hidden_size=96, num_layers=3, num_heads=6, num_kv_heads=2, intermediate_size=288),
}


@dataclass(frozen=True)
class ToyScale:
    """Everything that sets the cost of building a base and an SFT model."""

    pretrain_docs: int
    pretrain_steps: int
    pretrain_batch_size: int
    pretrain_lr: float
    max_length: int  # pretraining block length and SFT truncation length
    sft_conversations: int
    sft_epochs: int
    sft_batch_size: int
    sft_lr: float
    warmup_ratio: float = 0.05


# All three backbones (base + SFT, one process per stage) took 3.5 minutes on 2 otherwise idle CPU cores with 2 torch
# threads. Each half matters: with 200 pretraining steps or one SFT epoch, qwen-m answered ~2% of chat prompts
# drawn with another seed exactly instead of ~25%.
TOY_SCALE = ToyScale(
    pretrain_docs=6000,
    pretrain_steps=300,
    pretrain_batch_size=32,
    pretrain_lr=3e-3,
    max_length=128,
    sft_conversations=3000,
    sft_epochs=4,  # copying entities from the prompt (names, numbers, cities) emerges in the third to fourth epoch
    sft_batch_size=32,
    sft_lr=2e-3,
)
SMOKE_SCALE = ToyScale(
    pretrain_docs=200,
    pretrain_steps=20,
    pretrain_batch_size=8,
    pretrain_lr=3e-3,
    max_length=64,
    sft_conversations=96,
    sft_epochs=2,
    sft_batch_size=8,
    sft_lr=3e-3,
)

SCALES = {"toy": TOY_SCALE, "smoke": SMOKE_SCALE}
