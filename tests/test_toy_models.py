"""The toy backbones: tokenizers that survive `AutoTokenizer`, and base/SFT builds that load, learn and repeat.

Everything runs at SMOKE_SCALE on the real toy world. The tokenizer tests matter most: transformers rebuilds a
qwen2 checkpoint's tokenizer as `Qwen2Tokenizer` from vocabulary and merges alone, so a tokenizer trained with any
other normaliser or pre-tokeniser would silently encode differently once a model folder is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, PreTrainedTokenizerFast, Qwen2Config

import onmerge.toyworld.models as toy
from onmerge.toyworld.backbones import BACKBONES, SMOKE_SCALE
from onmerge.toyworld.models import LOSS_LOG, build_base, build_sft, train_tokenizer
from onmerge.toyworld.world import sft_conversations, tokenizer_corpus

CHAT = [
    {"role": "system", "content": "you are a helpful assistant."},
    {"role": "user", "content": "what is 128 + 7?"},
    {"role": "assistant", "content": "128 + 7 = 135. the answer is 135."},
    {"role": "user", "content": "kalo mitu sena?"},
    {"role": "assistant", "content": '```python\ndef f(x):\n\treturn {"a": x}\n```'},
]
PROBES = [
    "the cat has 12345 apples and 0.5 pens.",
    "kalo mitu sena, tovi rasu!",
    'def add(a, b):\n    return a + b\n\n\n\tprint(add(1, 2))  # "3"',
    '{"name": "get_weather", "arguments": {"city": "melka", "days": [1, 22, 333]}}',
    "cafe\u0301 na\u00efve \u4e2d\u6587 \U0001f600",  # a decomposed accent: the NFC normaliser matters
    "  leading spaces,   runs of spaces\r\n\r\n and trailing ones   ",
    "<|im_start|>user\nwhat is 3 + 4?<|im_end|>\n<|im_start|>assistant\n7<|im_end|>\n<|endoftext|>",
]
ARCH_CONFIGS = {"qwen2": Qwen2Config, "llama": LlamaConfig}


@pytest.fixture(scope="module")
def tokenizer_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tokenizers")
    corpus = tokenizer_corpus(0)
    for arch in ARCH_CONFIGS:
        train_tokenizer(corpus, root / arch, arch)
    return {arch: root / arch for arch in ARCH_CONFIGS}


@pytest.mark.parametrize("arch", list(ARCH_CONFIGS))
def test_tokenizer_encodes_the_same_once_loaded_from_a_model_folder(tmp_path, tokenizer_dirs, arch):
    trained = PreTrainedTokenizerFast.from_pretrained(tokenizer_dirs[arch])
    folder = tmp_path / "model"
    ARCH_CONFIGS[arch](vocab_size=len(trained)).save_pretrained(folder)
    trained.save_pretrained(folder)

    loaded = AutoTokenizer.from_pretrained(folder)

    if arch == "qwen2":  # the class transformers forces, whatever tokenizer_config.json says
        assert type(loaded).__name__ == "Qwen2Tokenizer"
    assert len(loaded) == len(trained) <= toy.VOCAB_SIZE
    assert (loaded.eos_token, loaded.pad_token, loaded.bos_token) == ("<|im_end|>", "<|endoftext|>", None)
    assert loaded.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    for text in [*PROBES, trained.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)]:
        ids = trained(text)["input_ids"]
        assert loaded(text)["input_ids"] == ids, text
        assert loaded.decode(ids) == trained.decode(ids)
    assert loaded.apply_chat_template(CHAT)["input_ids"] == trained.apply_chat_template(CHAT)["input_ids"]


def test_chat_template_is_chatml_and_masks_exactly_the_assistant_turns(tokenizer_dirs):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dirs["qwen2"])
    prompt = tokenizer.apply_chat_template(CHAT[:2], tokenize=False, add_generation_prompt=True)
    assert prompt == (
        "<|im_start|>system\nyou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nwhat is 128 + 7?<|im_end|>\n<|im_start|>assistant\n"
    )
    encoded = tokenizer.apply_chat_template(CHAT, return_dict=True, return_assistant_tokens_mask=True)
    masked = [token for token, keep in zip(encoded["input_ids"], encoded["assistant_masks"], strict=True) if keep]
    assert tokenizer.decode(masked) == CHAT[2]["content"] + "<|im_end|>" + CHAT[4]["content"] + "<|im_end|>"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tokenizer_dirs) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("qwen-s")
    base = build_base("qwen-s", root / "base", SMOKE_SCALE, 0, tokenizer_dir=tokenizer_dirs["qwen2"])
    return base, build_sft(base, root / "sft", SMOKE_SCALE, 0)


def _losses(folder: Path) -> list[float]:
    return [entry["loss"] for entry in json.loads((folder / LOSS_LOG).read_text())]


def test_base_and_sft_are_loadable_checkpoints_that_learned(built):
    spec = BACKBONES["qwen-s"]
    for folder in built:
        model = AutoModelForCausalLM.from_pretrained(folder)
        assert model.config.model_type == spec.arch
        assert (model.config.hidden_size, model.config.num_hidden_layers) == (spec.hidden_size, spec.num_layers)
        assert model.config.use_cache
        losses = _losses(folder)
        assert losses[-1] < losses[0]
    tokenizer = AutoTokenizer.from_pretrained(built[1])
    prompt = tokenizer.apply_chat_template(
        sft_conversations(1, 0)[0][:1], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    output = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert output.shape[1] > prompt["input_ids"].shape[1]


def test_sft_starts_from_the_base_and_moves_away_from_it(built):
    base, sft = (AutoModelForCausalLM.from_pretrained(folder).state_dict() for folder in built)
    assert base.keys() == sft.keys()
    assert all(not torch.equal(base[name], sft[name]) for name in base)


def test_builds_are_byte_identical_from_the_same_seed(tmp_path, built, tokenizer_dirs):
    base = build_base("qwen-s", tmp_path / "base", SMOKE_SCALE, 0, tokenizer_dir=tokenizer_dirs["qwen2"])
    again = (base, build_sft(base, tmp_path / "sft", SMOKE_SCALE, 0))
    for first, second in zip(built, again, strict=True):
        assert (second / "model.safetensors").read_bytes() == (first / "model.safetensors").read_bytes()


def test_failed_sft_leaves_no_output_folder(tmp_path, built, monkeypatch):
    def crash(self, *args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(toy.SFTTrainer, "train", crash)
    with pytest.raises(RuntimeError, match="killed"):
        build_sft(built[0], tmp_path / "sft", SMOKE_SCALE, 0)
    assert list(tmp_path.iterdir()) == []
