"""Generation through vLLM, without a GPU or vLLM: transformers' settings carried to `SamplingParams` (or refused),
the judged answers through a stand-in `vllm` module that decodes with transformers (the answers file is the HF
path's, byte for byte), the arguments lm-eval's vLLM model gets, the workflow's commands with `backend: vllm`, and
`onmerge bench gpu`'s arguments and its message where it cannot run. The real vllm is never imported."""

import json
import shlex
import subprocess
import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from onmerge import bench, lm_evaluation
from onmerge.cli import build_parser, main
from onmerge.judges.answers import write_mt_bench_answers
from onmerge.lm_evaluation import EVAL_SEED, run_lm_eval
from onmerge.lm_tasks import include_path
from onmerge.shell import job_prologue
from onmerge.vllm_sampling import HF_DEFAULTS, checkpoint_dtype, sampling_arguments

from tiny import save_base_and_sft

ROOT = Path(__file__).resolve().parents[1]
CHAT_END_ID = 3  # tests/tiny.py's <|im_end|>: the tokenizer's EOS and the ChatML end of turn
QWEN_MODEL_CONFIG = {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.3}


def _config(**settings) -> GenerationConfig:
    return GenerationConfig(eos_token_id=[CHAT_END_ID], **settings)


# --- transformers' settings as vLLM's -------------------------------------------------------------------------------


def test_the_backbones_sampling_reaches_vllm_exactly_with_transformers_defaults_spelled_out():
    qwen = sampling_arguments(_config(**QWEN_MODEL_CONFIG))
    assert qwen == {
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
        "min_p": 0.0,
        "repetition_penalty": 1.3,
        "stop_token_ids": [CHAT_END_ID],
        "skip_special_tokens": True,
    }
    llama = sampling_arguments(_config(do_sample=True, temperature=0.7, top_p=0.8))  # no top_k: transformers' 50
    assert (llama["top_k"], llama["repetition_penalty"]) == (50, 1.0)
    assert sampling_arguments(_config(do_sample=True, top_k=0))["top_k"] == -1  # no top-k: 0 there, -1 in vLLM
    # greedy: no sampling settings, but the model's repetition penalty applies, as in `generate`
    assert sampling_arguments(_config(**QWEN_MODEL_CONFIG | {"do_sample": False})) == {
        "temperature": 0.0,
        "repetition_penalty": 1.3,
        "stop_token_ids": [CHAT_END_ID],
        "skip_special_tokens": True,
    }


def test_hf_defaults_are_the_installed_transformers_defaults():
    defaults = GenerationConfig._get_default_generation_params()
    assert {key: defaults[key] for key in HF_DEFAULTS} == HF_DEFAULTS


@pytest.mark.parametrize(
    "settings, named",
    [
        ({"num_beams": 2}, "num_beams"),
        ({"no_repeat_ngram_size": 3}, "no_repeat_ngram_size"),
        ({"suppress_tokens": [5]}, "suppress_tokens"),
        ({"do_sample": True, "typical_p": 0.9}, "typical_p"),
        ({"do_sample": True, "min_p": 0.05}, "min_p with top_k or top_p"),
        ({"do_sample": True, "temperature": 0.0}, "temperature 0"),
    ],
)
def test_what_vllm_cannot_do_the_same_way_is_refused_naming_it(settings, named):
    with pytest.raises(ValueError, match=named):
        sampling_arguments(_config(**settings))


def test_settings_at_the_value_that_changes_nothing_pass():
    greedy = _config(num_beams=1, no_repeat_ngram_size=0, typical_p=0.5)  # typical_p only acts when sampling
    assert sampling_arguments(greedy)["temperature"] == 0.0
    assert sampling_arguments(_config(do_sample=True, min_p=0.05, top_k=0, top_p=1.0))["min_p"] == 0.05


def test_the_weights_dtype_is_named_to_vllm(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"dtype": "float32"}))
    assert checkpoint_dtype(tmp_path) == "float32"  # vLLM's "auto" would load float16
    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "bfloat16"}))
    assert checkpoint_dtype(tmp_path) == "bfloat16"
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="names no float dtype"):
        checkpoint_dtype(tmp_path)


# --- the judged answers through a stand-in vllm ----------------------------------------------------------------------


class FakeSamplingParams:
    """vllm.SamplingParams: keeps its arguments."""

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs


class FakeLLM:
    """vllm.LLM that records what it is given and decodes greedily with transformers, one prompt at a time (sampled
    requests get a canned answer)."""

    instances: ClassVar[list["FakeLLM"]] = []

    def __init__(self, model: str, **kwargs) -> None:
        self.arguments = {"model": model, **kwargs}
        self.model = AutoModelForCausalLM.from_pretrained(model)
        self.requests: list[tuple[list[int], dict]] = []
        FakeLLM.instances.append(self)

    def generate(self, prompts, sampling_params, use_tqdm=True):
        outputs = []
        for prompt, params in zip(prompts, sampling_params, strict=True):
            settings = params.kwargs
            self.requests.append((prompt["prompt_token_ids"], settings))
            tokens = torch.tensor([prompt["prompt_token_ids"]])
            if settings["temperature"] == 0:
                generated = self.model.generate(
                    tokens,
                    attention_mask=torch.ones_like(tokens),
                    do_sample=False,
                    max_new_tokens=settings["max_tokens"],
                    repetition_penalty=settings["repetition_penalty"],
                    eos_token_id=settings["stop_token_ids"],
                )[0, tokens.shape[1] :].tolist()
            else:
                generated = [5, 6, CHAT_END_ID, 7]
            outputs.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(token_ids=generated)]))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = FakeLLM, FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    FakeLLM.instances = []
    return FakeLLM.instances


@pytest.fixture
def chat_model(tmp_path) -> Path:
    """A tiny model whose generation config is shaped like Qwen1.5-Chat's (sampling, top-k, repetition penalty)."""
    _, model_dir = save_base_and_sft(tmp_path)
    GenerationConfig(bos_token_id=1, eos_token_id=CHAT_END_ID, pad_token_id=0, **QWEN_MODEL_CONFIG).save_pretrained(
        model_dir
    )
    return model_dir


QUESTIONS = [
    {"question_id": 81, "category": "writing", "turns": ["what color is the sky?", "tell me about the sea."]},
    {"question_id": 82, "category": "writing", "turns": ["describe the cat please.", "what color is the dog?"]},
]


def test_mt_bench_answers_through_vllm_are_the_transformers_answers_file(tmp_path, chat_model, fake_vllm):
    questions = tmp_path / "question.jsonl"
    questions.write_text("".join(json.dumps(row) + "\n" for row in QUESTIONS))
    greedy = json.dumps({"do_sample": False, "max_new_tokens": 8})
    files = {backend: tmp_path / f"{backend}.json" for backend in ("hf", "vllm")}
    for backend, out in files.items():  # batches of one: the stand-in decodes one prompt at a time
        write_mt_bench_answers(chat_model, str(questions), greedy, out, limit=2, seed=7, batch_size=1, backend=backend)

    assert files["vllm"].read_bytes() == files["hf"].read_bytes()
    written = json.loads(files["vllm"].read_text())
    assert written["generation"]["repetition_penalty"] == 1.3 and written["generation"]["do_sample"] is False
    assert any(turn for row in written["answers"] for turn in row["turns"])

    (llm,) = fake_vllm
    assert llm.arguments == {"model": str(chat_model), "dtype": "float32", "seed": 7}
    prompts, settings = zip(*llm.requests, strict=True)
    tokenizer = AutoTokenizer.from_pretrained(chat_model)
    first_turns = [[{"role": "user", "content": question["turns"][0]}] for question in QUESTIONS]
    assert list(prompts[:2]) == [
        tokenizer.apply_chat_template(turn, add_generation_prompt=True, return_dict=False) for turn in first_turns
    ]
    assert [request["seed"] for request in settings] == [7, 8, 9, 10]  # first turns, then second turns
    assert {json.dumps({k: v for k, v in request.items() if k != "seed"}) for request in settings} == {
        json.dumps(
            {
                "temperature": 0.0,
                "repetition_penalty": 1.3,
                "stop_token_ids": [CHAT_END_ID],
                "skip_special_tokens": True,
                "max_tokens": 8,
            }
        )
    }


def test_alpacaeval_outputs_through_vllm_from_the_command_line(tmp_path, chat_model, fake_vllm):
    instructions = tmp_path / "alpaca_eval.json"
    rows = [{"instruction": f"describe the {thing} please.", "output": "ref", "generator": "gpt4"} for thing in "ab"]
    instructions.write_text(json.dumps(rows))
    sampled = {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05}
    out = tmp_path / "outputs.json"
    command = ["answers", "alpacaeval", "--model", str(chat_model), "--instructions", str(instructions)]
    main([*command, "--generation", json.dumps(sampled), "--out", str(out), "--limit", "2", "--backend", "vllm"])

    written = json.loads(out.read_text())
    canned = AutoTokenizer.from_pretrained(chat_model).decode([5, 6], skip_special_tokens=True).strip()
    assert [row["output"] for row in written["outputs"]] == [canned, canned]  # cut at the stop token, then decoded
    keys = ["benchmark", "generation", "instructions", "instructions_sha256", "model", "outputs", "seed"]
    assert sorted(written) == keys  # as the transformers path writes it
    requests = [dict(settings) for _, settings in fake_vllm[0].requests]
    assert [request.pop("seed") for request in requests] == [EVAL_SEED, EVAL_SEED + 1]
    assert requests == 2 * [
        {
            "temperature": 0.7,
            "top_p": 0.8,
            "top_k": 20,
            "min_p": 0.0,
            "repetition_penalty": 1.05,
            "stop_token_ids": [CHAT_END_ID],
            "skip_special_tokens": True,
            "max_tokens": 2048,
        }
    ]
    record = json.loads((tmp_path / "outputs.provenance.json").read_text())
    assert record["settings"]["backend"] == "vllm"


# --- lm-eval's vLLM model ---------------------------------------------------------------------------------------------


def test_lm_eval_gets_its_vllm_model_with_what_hflm_would_decode_with(tmp_path, chat_model, monkeypatch):
    made, calls = [], []
    fake_module = types.ModuleType("lm_eval.models.vllm_causallms")
    fake_module.VLLM = lambda **kwargs: made.append(("vllm", kwargs)) or "vllm model"
    monkeypatch.setitem(sys.modules, "lm_eval.models.vllm_causallms", fake_module)
    monkeypatch.setattr("lm_eval.models.huggingface.HFLM", lambda **kwargs: made.append(("hf", kwargs)) or "hf model")
    monkeypatch.setattr(lm_evaluation, "_stop_at_chat_end", lambda lm: None)
    monkeypatch.setattr("lm_eval.simple_evaluate", lambda **kwargs: calls.append(kwargs) or {"results": {}})
    tasks, llama_sampling = ["onmerge_gsm8k", "onmerge_math401"], {"temperature": 0.7, "top_p": 0.8}
    for backend in ("vllm", "hf"):
        run_lm_eval(
            chat_model,
            tasks,
            include_path=include_path(),
            include_defaults=False,
            sampling=llama_sampling,
            backend=backend,
        )

    assert made == [
        ("vllm", {"pretrained": str(chat_model), "dtype": "float32", "seed": EVAL_SEED, "batch_size": "auto"}),
        ("hf", {"pretrained": str(chat_model), "batch_size": 16, "device": "cpu"}),
    ]
    vllm_calls, hf_calls = calls[:2], calls[2:]
    assert [call["model"] for call in calls] == ["vllm model"] * 2 + ["hf model"] * 2
    assert [call["tasks"] for call in vllm_calls] == [call["tasks"] for call in hf_calls] == [tasks[:1], tasks[1:]]
    assert all(call["apply_chat_template"] and call["torch_random_seed"] == EVAL_SEED for call in calls)
    assert [call["gen_kwargs"] for call in hf_calls] == [None, {"do_sample": True, **llama_sampling}]
    stop = {"stop_token_ids": [CHAT_END_ID], "skip_special_tokens": True}
    assert [call["gen_kwargs"] for call in vllm_calls] == [
        {"do_sample": False, "temperature": 0.0, "repetition_penalty": 1.3} | stop,  # the model's penalty, as HF's
        {"do_sample": True, **llama_sampling, "top_k": 20, "min_p": 0.0, "repetition_penalty": 1.3} | stop,
    ]


def test_lm_eval_settings_vllm_cannot_carry_stop_it_before_the_model_loads(tmp_path, chat_model, monkeypatch):
    GenerationConfig(eos_token_id=CHAT_END_ID, no_repeat_ngram_size=3).save_pretrained(chat_model)
    monkeypatch.setitem(sys.modules, "lm_eval.models.vllm_causallms", None)  # importing it would fail
    with pytest.raises(ValueError, match="no_repeat_ngram_size"):
        run_lm_eval(chat_model, ["onmerge_gsm8k"], include_path=include_path(), include_defaults=False, backend="vllm")
    with pytest.raises(ValueError, match="unknown generation backend 'tgi'"):
        run_lm_eval(chat_model, ["onmerge_gsm8k"], include_path=include_path(), include_defaults=False, backend="tgi")


# --- the workflow ----------------------------------------------------------------------------------------------------


def _dry_run_commands(preset: Path, workdir: Path) -> list[str]:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--cores", "1"]
    command += ["--directory", str(workdir), "--dry-run", "--printshellcmds", "--config", f"preset={preset}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return [line.removeprefix("Shell command: ") for line in result.stdout.splitlines() if "onmerge.cli" in line]


@pytest.mark.parametrize("preset", ["qwen1.5-1.8b", "qwen1.5-7b", "llama-3-8b"])
def test_every_paper_preset_dry_runs_its_generation_through_vllm(tmp_path, preset):
    loaded = yaml.safe_load((ROOT / "workflow" / "config" / "presets" / f"{preset}.yaml").read_text())
    loaded["evaluation"]["backend"] = "vllm"
    path = tmp_path / "vllm.yaml"
    path.write_text(yaml.safe_dump(loaded))
    commands = _dry_run_commands(path, tmp_path)

    generating = [c for c in commands if " onmerge.cli evaluate lm-eval " in c or " onmerge.cli answers " in c]
    assert generating and all(c.startswith('"$ONMERGE_VLLM_PYTHON" -m onmerge.cli ') for c in generating)
    assert all(" --backend vllm " in c for c in generating)
    judging = [c for c in commands if " onmerge.cli judge " in c]
    assert judging and all(c.startswith("python -m onmerge.cli judge ") for c in judging)  # the API: .venv

    # The job prologue names the vLLM environment's interpreter, which gets the arguments the CLI reads.
    recorder = tmp_path / "python"
    recorder.write_text('#!/bin/sh\nprintf "%s\\0" "$@" > "$(dirname "$0")/argv"\n')
    recorder.chmod(0o755)
    for command in (next(c for c in generating if " evaluate " in c), next(c for c in generating if " answers " in c)):
        log = Path(shlex.split(command.rsplit(" > ", 1)[1])[0])
        (tmp_path / log).parent.mkdir(parents=True, exist_ok=True)
        prologue = job_prologue(None, ROOT)
        env = {"PATH": "/usr/bin:/bin", "ONMERGE_VLLM_PYTHON": str(recorder)}
        subprocess.run(["bash", "-c", prologue + command], cwd=tmp_path, env=env, check=True, timeout=60)
        argv = (tmp_path / "argv").read_text().split("\0")[:-1]
        assert argv[:2] == ["-m", "onmerge.cli"] and build_parser().parse_args(argv[2:]).backend == "vllm"


def test_the_default_backend_is_transformers_in_the_venv(tmp_path):
    commands = _dry_run_commands(ROOT / "workflow" / "config" / "presets" / "qwen1.5-7b.yaml", tmp_path)
    generating = [c for c in commands if " onmerge.cli evaluate lm-eval " in c or " onmerge.cli answers " in c]
    assert generating and all(c.startswith("python -m onmerge.cli ") and " --backend hf " in c for c in generating)


# --- onmerge bench gpu -----------------------------------------------------------------------------------------------


def test_bench_gpu_arguments():
    args = build_parser().parse_args(["bench", "gpu", "--model", "m"])
    assert (args.model, args.prompts, args.max_new_tokens, args.batch_size) == (Path("m"), 64, 256, 16)
    args = build_parser().parse_args(["bench", "gpu", "--model", "m", "--prompts", "8", "--max-new-tokens", "32"])
    assert (args.prompts, args.max_new_tokens) == (8, 32)
    for bad in (["--prompts", "0"], ["--batch-size", "-1"], ["--max-new-tokens", "x"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["bench", "gpu", "--model", "m", *bad])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "gpu"])  # --model is required
    prompts = bench.bench_prompts(40)
    assert len(set(prompts)) == 40


def test_bench_gpu_says_why_it_cannot_run_without_cuda_or_vllm(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="onmerge bench gpu: it needs a CUDA GPU, and torch sees none"):
        main(["bench", "gpu", "--model", str(tmp_path)])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed: find_spec says None
    with pytest.raises(SystemExit, match=r"it needs vLLM.*\.venv-vllm/bin/onmerge bench gpu"):
        main(["bench", "gpu", "--model", str(tmp_path)])
