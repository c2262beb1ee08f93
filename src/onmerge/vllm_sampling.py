"""transformers' decoding carried over to vLLM: the `SamplingParams` arguments that decode as `generate` would with a
model's generation config, and a clear error for whatever vLLM cannot do the same way.

Both backends start from the same settings: the model's `generation_config.json` (what `from_pretrained` gives a
model) under the caller's. Every setting is then passed to vLLM explicitly, because the two fill an unset one
differently: transformers samples from the top 50 tokens unless told otherwise, vLLM from all of them. Greedy decoding
keeps the model's repetition penalty in both. A setting that has no vLLM counterpart (beams, n-gram blocking, forced
or suppressed tokens, typical sampling, ...) is refused unless it is at the value that changes nothing, and so is
min-p beside top-k or top-p: transformers applies min-p after them, vLLM before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onmerge.lm_evaluation import CHAT_END

if TYPE_CHECKING:
    from transformers import GenerationConfig, PreTrainedTokenizerBase

# What transformers' `generate` uses for a sampling setting that neither the model nor the caller sets.
HF_DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "top_k": 50, "repetition_penalty": 1.0}
# transformers' settings without a vLLM counterpart, each with the values at which it changes nothing (None always).
_NOT_CARRIED = {
    "num_beams": (1,),
    "num_return_sequences": (1,),
    "guidance_scale": (1,),
    "sequence_bias": (),
    "no_repeat_ngram_size": (0,),
    "bad_words_ids": (),
    "min_length": (0,),
    "min_new_tokens": (0,),
    "forced_bos_token_id": (),
    "forced_eos_token_id": (),
    "exponential_decay_length_penalty": (),
    "suppress_tokens": (),
    "begin_suppress_tokens": (),
    "stop_strings": (),
    "watermarking_config": (),
    "dola_layers": (),
    "penalty_alpha": (),
}
# ... and those that act only when sampling.
_NOT_CARRIED_WHEN_SAMPLING = {"typical_p": (1,), "epsilon_cutoff": (0,), "eta_cutoff": (0,), "top_h": ()}


def load_generation_config(model_dir: Path) -> GenerationConfig:
    """The model folder's generation config, as `from_pretrained` gives it to a model (from `config.json` without
    one)."""
    from transformers import AutoConfig, GenerationConfig

    if (Path(model_dir) / "generation_config.json").is_file():
        return GenerationConfig.from_pretrained(model_dir)
    return GenerationConfig.from_model_config(AutoConfig.from_pretrained(model_dir))


def stop_token_ids(config: GenerationConfig, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Where an answer ends: the config's end-of-sequence ids, the tokenizer's, and the ChatML end of turn where it is
    a token."""
    configured = config.eos_token_id
    ids = [] if configured is None else [configured] if isinstance(configured, int) else list(configured)
    chat_end = tokenizer.convert_tokens_to_ids(CHAT_END)
    for candidate in (tokenizer.eos_token_id, chat_end):
        if isinstance(candidate, int) and candidate != tokenizer.unk_token_id and candidate not in ids:
            ids.append(candidate)
    return ids


def checkpoint_dtype(model_dir: Path) -> str:
    """The weights' dtype from `config.json`, named to vLLM: its "auto" makes float32 weights float16."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    dtype = config.get("dtype") or config.get("torch_dtype")
    if dtype not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"{model_dir}/config.json names no float dtype ({dtype!r}) for vLLM to load the weights in")
    return dtype


def _or_default(value: Any, default: Any) -> Any:
    return default if value is None else value


def sampling_arguments(config: GenerationConfig) -> dict[str, Any]:
    """vLLM `SamplingParams` arguments that decode as transformers does with `config` (its `eos_token_id` the stop
    ids), without `max_tokens` and `seed`; a ValueError names what cannot be carried over."""
    sampling = bool(config.do_sample)
    not_carried = _NOT_CARRIED | (_NOT_CARRIED_WHEN_SAMPLING if sampling else {})
    refused = {
        key: value
        for key, no_ops in not_carried.items()
        if (value := getattr(config, key, None)) is not None and value not in no_ops
    }
    if refused:
        raise ValueError(f"generation settings {refused} have no vLLM counterpart: generate with the hf backend")
    effective = {key: _or_default(getattr(config, key, None), default) for key, default in HF_DEFAULTS.items()}
    stop = config.eos_token_id
    arguments: dict[str, Any] = {
        "repetition_penalty": float(effective["repetition_penalty"]),
        "stop_token_ids": [] if stop is None else [stop] if isinstance(stop, int) else list(stop),
        "skip_special_tokens": True,  # transformers' answers are decoded without them
    }
    if not sampling:
        return {"temperature": 0.0, **arguments}
    if effective["temperature"] <= 0:
        raise ValueError("sampling at temperature 0: transformers refuses it, vLLM would decode greedily")
    top_k = -1 if effective["top_k"] == 0 else int(effective["top_k"])  # 0: no top-k in transformers, -1 in vLLM
    min_p = float(config.min_p or 0.0)
    if min_p and (top_k != -1 or effective["top_p"] < 1):
        raise ValueError("min_p with top_k or top_p: transformers applies min_p after them, vLLM before")
    return {
        "temperature": float(effective["temperature"]),
        "top_p": float(effective["top_p"]),
        "top_k": top_k,
        "min_p": min_p,
        **arguments,
    }
