"""Bad input is rejected before any work starts, with a message that names the field, file or endpoint at fault.

One table of cases, each a call the pipeline makes before it trains, merges, evaluates or judges anything, and a
piece of the message it must give. Snakemake reaches the preset and config checks when it loads the workflow
(tests/test_workflow.py runs a few through `snakemake --dry-run`).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from onmerge.config import load_config, load_preset
from onmerge.judges.endpoint import ChatClient, JudgeEndpoint
from onmerge.lm_evaluation import check_sampling, split_sampled_tasks
from onmerge.optim import OnDAREAdamW, OnTIESAdamW, task_vector
from onmerge.preferences import from_ultrafeedback
from onmerge.training import OptimizerSpec, PreferenceTraining, batch_split, build_optimizer, train_preference

from tiny import save_base_and_sft, tiny_causal_lm, tiny_preference_dataset

ROOT = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((ROOT / "workflow" / "config" / "presets" / "smoke.yaml").read_text())


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Base and SFT folders, plus SFT folders that do not fit them: another architecture, no weights."""
    root = tmp_path_factory.mktemp("models")
    base, sft = save_base_and_sft(root)
    tiny_causal_lm(0, arch="llama").save_pretrained(root / "llama")
    (root / "empty").mkdir()
    return {"base": base, "sft": sft, "llama": root / "llama", "empty": root / "empty", "missing": root / "missing"}


@pytest.fixture(scope="module")
def task_manager():
    from lm_eval.tasks import TaskManager

    from onmerge.lm_tasks import include_path

    return TaskManager(include_path=str(include_path()))


def _preset(tmp_path: Path, edit: Callable[[dict], None]) -> Path:
    preset = yaml.safe_load(yaml.safe_dump(SMOKE))
    edit(preset)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(preset))
    return path


def _method(key: str, value) -> Callable[[dict], None]:
    return lambda preset: preset["methods"]["ondare"].update({key: value})


def _training(key: str, value) -> Callable[[dict], None]:
    return lambda preset: preset["training"].update({key: value})


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _train(models: dict[str, Path], tmp_path: Path, *, rows=None, **settings):
    train_preference(
        sft=models["sft"],
        base=models["base"],
        rows=tiny_preference_dataset(4).to_list() if rows is None else rows,
        out=tmp_path / "cell",
        training=PreferenceTraining(**({"learning_rate": 1e-3, "batch_size": 4, "max_length": 64} | settings)),
        optimizer=OptimizerSpec("adamw"),
    )


def _optimizer(cls, **options):
    model = tiny_causal_lm(0)
    named = list(model.named_parameters())
    return cls(named, reference_delta={name: p.detach() for name, p in named}, **options)


# (case, the call, a piece of the message). Each call gets (tmp_path, models, task_manager).
CASES = [
    # Presets and the run configuration: JSON schema, then onmerge.grid's cross-references
    ("unknown preset key", lambda t, m, tm: load_preset(str(_preset(t, lambda p: p.update(typo=1)))),
     r"\(top level\): Additional properties are not allowed \('typo' was unexpected\)"),
    ("wrong type", lambda t, m, tm: load_preset(str(_preset(t, lambda p: p.update(seeds="zero")))),
     "seeds: 'zero' is not of type 'array'"),
    ("reserve_p above 1", lambda t, m, tm: load_preset(str(_preset(t, _method("reserve_p", 2)))),
     "methods.ondare.reserve_p: 2 is greater than the maximum of 1"),
    ("negative alpha", lambda t, m, tm: load_preset(str(_preset(t, _method("alpha", -0.1)))),
     "methods.ondare.alpha: -0.1 is less than the minimum of 0"),
    ("zero beta", lambda t, m, tm: load_preset(str(_preset(t, _training("beta", 0)))),
     "training.beta: 0 is less than or equal to the minimum of 0"),
    ("learning rate above 1", lambda t, m, tm: load_preset(str(_preset(t, _training("learning_rate", 5)))),
     "training.learning_rate: 5 is greater than the maximum of 1"),
    ("study names an unknown method",
     lambda t, m, tm: load_preset(str(_preset(t, lambda p: p["studies"]["table1"]["methods"].append("lion")))),
     "studies.table1.methods: 'lion' is not one of the preset's methods"),
    ("unknown preset name", lambda t, m, tm: load_preset("qwen9"), "preset 'qwen9': no "),
    ("unknown run-config key", lambda t, m, tm: load_config(_write(t, "preset: toy\nbenchmark: {}\n")),
     r"\(top level\): Additional properties are not allowed \('benchmark' was unexpected\)"),
    # Optimizer hyper-parameters, checked when the optimizer is built (before the first step)
    ("reserve_p of 0", lambda t, m, tm: _optimizer(OnDAREAdamW, reserve_p=0.0), r"reserve_p must lie in \(0, 1\]"),
    ("alpha of 1", lambda t, m, tm: _optimizer(OnTIESAdamW, alpha=1.0), r"alpha must lie in \[0, 1\)"),
    ("step-K gap of 0", lambda t, m, tm: _optimizer(OnDAREAdamW, merge_every=0), "merge_every must be an integer"),
    ("global batch that does not divide", lambda t, m, tm: batch_split(
        PreferenceTraining(batch_size=6, per_device_batch_size=4)), "global batch 6 is not a multiple of 4"),
    # Models: checked from the checkpoints' headers before training or merging
    ("base and SFT of different architectures", lambda t, m, tm: task_vector(m["base"], m["llama"]),
     r"parameter '.*' is in the base model but not in the tuned model"),
    ("missing model folder", lambda t, m, tm: task_vector(m["missing"], m["sft"]),
     r"base model folder .*missing does not exist"),
    ("model folder without weights", lambda t, m, tm: task_vector(m["base"], m["empty"]),
     r"tuned model folder .*empty has no model.safetensors"),
    ("online merging without the base model",
     lambda t, m, tm: build_optimizer(OptimizerSpec("ondare"), tiny_causal_lm(0), PreferenceTraining(), None, m["sft"]),
     "needs the base model"),
    # Preference data: checked row by row before any model loads
    ("UltraFeedback row without a field", lambda t, m, tm: from_ultrafeedback({"prompt": "q", "chosen": []}, "row 7"),
     r"row 7: missing field\(s\) \['rejected'\]"),
    ("training rows without a field",
     lambda t, m, tm: _train(m, t, rows=[{"prompt": [], "chosen": []}]),
     r"dpo preference data: row 0 lacks \['rejected'\]"),
    ("KTO given paired rows", lambda t, m, tm: _train(m, t, loss="kto"), r"kto preference data: row 0 lacks"),
    # Benchmarks: checked against lm-eval's task index before the model loads
    ("unknown benchmark name", lambda t, m, tm: split_sampled_tasks(tm, ["onmerge_gsm8k", "gsm9k"]),
     r"unknown lm-eval tasks \['gsm9k'\]"),
    ("unknown sampling setting", lambda t, m, tm: check_sampling({"temp": 0.7}), "unknown sampling setting 'temp'"),
    ("top-p above 1", lambda t, m, tm: check_sampling({"top_p": 1.5}), r"top_p=1.5 is out of range"),
    # The judge endpoint: checked by a preflight before any judgment
    ("unreachable judge endpoint",
     lambda t, m, tm: ChatClient(JudgeEndpoint(f"http://127.0.0.1:{_closed_port()}/v1", "key"), t).preflight("gpt-4"),
     r"http://127\.0\.0\.1:\d+/v1"),
    ("no judge API key", lambda t, m, tm: JudgeEndpoint.from_environment({}), "no judge API key: set ONMERGE_JUDGE"),
    ("judge base URL that is not a URL",
     lambda t, m, tm: JudgeEndpoint.from_environment({"ONMERGE_JUDGE_BASE_URL": "host:8000", "OPENAI_API_KEY": "k"}),
     "ONMERGE_JUDGE_BASE_URL='host:8000' is not an http"),
]  # fmt: skip


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_the_table_has_at_least_twenty_distinct_cases():
    assert len({case for case, _, _ in CASES}) == len(CASES) >= 20


@pytest.mark.parametrize("case, call, message", CASES, ids=[case for case, _, _ in CASES])
def test_bad_input_is_rejected_naming_what_is_wrong(case, call, message, tmp_path, models, task_manager):
    with pytest.raises((ValueError, RuntimeError)) as raised:
        call(tmp_path, models, task_manager)
    assert re.search(message, str(raised.value)), f"{case}: {raised.value}"
    assert not (tmp_path / "cell").exists(), "nothing was written"
