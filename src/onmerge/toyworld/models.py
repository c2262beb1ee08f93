"""Toy stand-ins for the paper's backbones: a locally trained tokenizer, tiny Qwen2/Llama bases, and their SFT models.

No weights can be downloaded, so each backbone of the paper (Qwen1.5-1.8B, Qwen1.5-7B, Llama-3-8B) gets a tiny model
of the same architecture, pretrained from a seeded random init on the toy world's documents and then supervised
fine-tuned with trl on its chat data. The folders look like Hub checkpoints (safetensors, tokenizer, ChatML chat
template), so every later stage (DPO, merging, evaluation) loads them with the `Auto*` classes as it would the real
ones.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
from datasets import Dataset
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    get_cosine_schedule_with_warmup,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX as QWEN2_SPLIT_REGEX
from trl import SFTConfig, SFTTrainer

from onmerge.atomic import atomic_dir
from onmerge.toyworld.backbones import BACKBONES, Arch, BackboneSpec, ToyScale
from onmerge.toyworld.world import pretraining_documents, sft_conversations

logger = logging.getLogger(__name__)

PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
VOCAB_SIZE = 1024
MAX_POSITIONS = 2048  # RoPE has no position parameters, so a long limit costs nothing and leaves room for few-shot
LOSS_LOG = "train_losses.json"  # written next to the weights: the loss curve shows the toy model learned

# Llama-3's split regex: as Qwen2's, except that digits group in threes. Llama-3 has no normaliser.
LLAMA3_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# ChatML as Qwen uses it; `{% generation %}` marks what the assistant writes (its `<|im_end|>` included), which is
# what trl's assistant-only loss trains on.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def train_tokenizer(texts: list[str], out_dir: Path, arch: Arch) -> PreTrainedTokenizerFast:
    """Byte-level BPE with the real family's pre-tokenisation, saved to `out_dir`.

    transformers rebuilds a qwen2 checkpoint's tokenizer as `Qwen2Tokenizer` (its own NFC normaliser, split regex
    and ByteLevel), keeping only vocabulary and merges, so the qwen2 tokenizer is trained with exactly that pipeline:
    anything else would encode differently once loaded from a model folder. Llama checkpoints keep the saved
    pipeline; it gets Llama-3's (same shape, digits in threes, no normaliser).
    """
    tokenizer = Tokenizer(models.BPE())
    split_regex = QWEN2_SPLIT_REGEX if arch == "qwen2" else LLAMA3_SPLIT_REGEX
    if arch == "qwen2":
        tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split_regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[PAD, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token=IM_END, pad_token=PAD, model_max_length=MAX_POSITIONS
    )
    wrapped.chat_template = CHAT_TEMPLATE
    with atomic_dir(Path(out_dir)) as staging:
        wrapped.save_pretrained(staging)
    return wrapped


def _model_config(spec: BackboneSpec, tokenizer: PreTrainedTokenizerFast) -> Qwen2Config | LlamaConfig:
    config_cls = Qwen2Config if spec.arch == "qwen2" else LlamaConfig
    return config_cls(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _blocks(tokenizer: PreTrainedTokenizerFast, documents: list[str], length: int) -> torch.Tensor:
    """Documents joined by `<|endoftext|>` and cut into equal blocks, as in causal-LM pretraining (tail dropped)."""
    ids = [token for doc in tokenizer(documents)["input_ids"] for token in [*doc, tokenizer.pad_token_id]]
    n_blocks = len(ids) // length
    if n_blocks == 0:
        raise ValueError(f"{len(documents)} documents hold fewer than {length} tokens")
    return torch.tensor(ids[: n_blocks * length]).view(n_blocks, length)


def _write_losses(folder: Path, losses: dict[int, float]) -> None:
    (folder / LOSS_LOG).write_text(json.dumps([{"step": step, "loss": loss} for step, loss in losses.items()]))


def build_base(backbone: str, out: Path, scale: ToyScale, seed: int, *, tokenizer_dir: Path) -> Path:
    """Pretrain `backbone` from a seeded random init on the world's documents and save it with the shared tokenizer.

    A plain AdamW loop with warmup and cosine decay over shuffled fixed-length blocks: the data order and the init
    come from `seed` alone, so on CPU (same torch thread count) two builds give byte-identical weights.
    """
    spec = BACKBONES[backbone]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    blocks = _blocks(tokenizer, pretraining_documents(scale.pretrain_docs, seed), scale.max_length)
    torch.manual_seed(seed)
    model_cls = Qwen2ForCausalLM if spec.arch == "qwen2" else LlamaForCausalLM
    model = model_cls(_model_config(spec, tokenizer))
    optimizer = torch.optim.AdamW(model.parameters(), lr=scale.pretrain_lr, betas=(0.9, 0.95), weight_decay=0.1)
    schedule = get_cosine_schedule_with_warmup(
        optimizer, math.ceil(scale.warmup_ratio * scale.pretrain_steps), scale.pretrain_steps
    )
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(blocks), generator=generator)
    cursor, losses = 0, []
    model.train()
    for _ in range(scale.pretrain_steps):
        if cursor + scale.pretrain_batch_size > len(order):  # next epoch, reshuffled
            order, cursor = torch.randperm(len(blocks), generator=generator), 0
        batch = blocks[order[cursor : cursor + scale.pretrain_batch_size]]
        cursor += scale.pretrain_batch_size
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    logger.info("%s base: %d steps, final loss %.3f", backbone, scale.pretrain_steps, losses[-1])
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _write_losses(tmp, dict(enumerate(losses, start=1)))
    return out


def build_sft(base: Path, out: Path, scale: ToyScale, seed: int) -> Path:
    """Supervised fine-tuning of `base` on the world's chat data with trl, loss on the assistant turns only."""
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    dataset = Dataset.from_list([{"messages": chat} for chat in sft_conversations(scale.sft_conversations, seed)])
    with atomic_dir(out) as tmp:
        args = SFTConfig(
            output_dir=str(tmp),
            num_train_epochs=scale.sft_epochs,
            per_device_train_batch_size=scale.sft_batch_size,
            learning_rate=scale.sft_lr,
            lr_scheduler_type="cosine",
            warmup_steps=scale.warmup_ratio,  # a float below 1 is a fraction of the steps
            weight_decay=0.0,
            max_length=scale.max_length,
            assistant_only_loss=True,
            logging_steps=5,
            seed=seed,
            data_seed=seed,
            bf16=False,  # trl turns bf16 on unless told otherwise
            use_cpu=True,
            activation_checkpointing=False,  # trl's default is on; pointless for a tiny model
            use_cache=True,  # only lands in the saved config (trl's training forward turns the cache off)
            report_to=[],
            save_strategy="no",
            disable_tqdm=True,
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
        trainer.train()
        losses = {entry["step"]: entry["loss"] for entry in trainer.state.log_history if "loss" in entry}
        logger.info("%s SFT: %d steps, final loss %.3f", out.name, trainer.state.global_step, losses[max(losses)])
        trainer.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _write_losses(tmp, losses)
    return out
