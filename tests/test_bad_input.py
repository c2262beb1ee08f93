"""Bad input is rejected before any work starts, with a message that names the field, file or endpoint at fault.

One table of cases per class of bad input, each a call the pipeline makes before it trains, merges, evaluates or
judges anything, and a piece of the message it must give. Snakemake reaches the preset and config checks when it
loads the workflow, and the cell-path checks when it builds the DAG: a few cases run through `snakemake --dry-run`
here and in tests/test_workflow.py.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from transformers import AutoTokenizer

from onmerge import grid
from onmerge.checkpoints import fetch_model, parameter_locations
from onmerge.cli import main
from onmerge.config import check_config_files, load_preset, load_validated
from onmerge.judges.endpoint import ChatClient, JudgeEndpoint
from onmerge.lm_evaluation import check_sampling, split_sampled_tasks
from onmerge.merging import merge_with_sft
from onmerge.optim import OnDAREAdamW, OnTIESAdamW, task_vector
from onmerge.preferences import check_rows, from_ultrafeedback, read_rows
from onmerge.training import OptimizerSpec, PreferenceTraining, batch_split, build_optimizer, train_preference

from tiny import save_base_and_sft, tiny_causal_lm, tiny_preference_dataset, tiny_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SMOKE_TEXT = (ROOT / "workflow" / "config" / "presets" / "smoke.yaml").read_text()
SMOKE = yaml.safe_load(SMOKE_TEXT)
SMOKE_LINES = SMOKE_TEXT.count("\n")
SEEDS_LINE = SMOKE_TEXT.split("\n").index("seeds: [0]") + 1  # 1-based, as the errors count
CONFIG_TEXT = (ROOT / "workflow" / "config" / "config.yaml").read_text()
CONFIG_SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--cores", "1", "--dry-run"]


def _header_length(data: bytes) -> int:
    return int.from_bytes(data[:8], "little")


# Weight files whose safetensors header does not parse, each made from a good one.
CORRUPT_WEIGHTS: dict[str, Callable[[bytes], bytes]] = {
    "cut-short": lambda data: data[: len(data) // 2],
    "length-past-end": lambda data: len(data).to_bytes(8, "little") + data[8:],
    "header-not-json": lambda data: data[:8] + b"[" * _header_length(data) + data[8 + _header_length(data) :],
    "header-not-utf8": lambda data: data[:8] + b"\xff" + data[9:],
    "four-bytes": lambda data: data[:4],
}
# Tokenizers grown past the model's embedding rows.
GROWN_TOKENIZERS: dict[str, Callable] = {
    "added-tokens": lambda tokenizer: tokenizer.add_tokens(["<extra_0>", "<extra_1>"]),
    "added-special-token": lambda tokenizer: tokenizer.add_special_tokens({"additional_special_tokens": ["<|tool|>"]}),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Base and SFT folders, plus SFT folders that do not fit them or cannot be read: another architecture, no
    weights, weights whose header does not parse, a broken shard index, tokenizers with ids past the embedding."""
    root = tmp_path_factory.mktemp("models")
    base, sft = save_base_and_sft(root)
    tiny_causal_lm(0, arch="llama").save_pretrained(root / "llama")
    (root / "empty").mkdir()
    folders = {"base": base, "sft": sft, "llama": root / "llama", "empty": root / "empty", "missing": root / "missing"}
    for name, corrupt in CORRUPT_WEIGHTS.items():
        folders[name] = Path(shutil.copytree(sft, root / name))
        weights = folders[name] / "model.safetensors"
        weights.write_bytes(corrupt(weights.read_bytes()))
    folders["bad-index"] = Path(shutil.copytree(sft, root / "bad-index"))
    (folders["bad-index"] / "model.safetensors.index.json").write_text('{"weight_map": {"lm_head.weight": ')
    for name, grow in GROWN_TOKENIZERS.items():
        folders[name] = Path(shutil.copytree(sft, root / name))
        tokenizer = AutoTokenizer.from_pretrained(folders[name])
        grow(tokenizer)
        tokenizer.save_pretrained(folders[name])
    narrow = tiny_causal_lm(0)
    narrow.resize_token_embeddings(len(tiny_tokenizer()) - 8)
    folders["fewer-rows"] = root / "fewer-rows"
    narrow.save_pretrained(folders["fewer-rows"])
    tiny_tokenizer().save_pretrained(folders["fewer-rows"])
    return folders


@pytest.fixture(scope="module")
def task_manager() -> Callable:
    """lm-eval's task index with ours, built on first call: indexing every built-in task takes seconds, and only the
    benchmark cases need it."""
    from lm_eval.tasks import TaskManager

    from onmerge.lm_tasks import include_path

    return functools.cache(lambda: TaskManager(include_path=str(include_path())))


def _preset(tmp_path: Path, edit: Callable[[dict], None]) -> Path:
    preset = yaml.safe_load(yaml.safe_dump(SMOKE))
    edit(preset)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(preset))
    return path


def _load(edit: Callable[[dict], None]) -> Callable:
    """A case: the smoke preset edited as a mapping, written, and loaded as the workflow loads it."""
    return lambda t, m, tm: load_preset(str(_preset(t, edit)))


def _load_text(edit: Callable[[str], str | bytes]) -> Callable:
    """A case: the smoke preset's text edited (comments, key order and all), written, and loaded."""

    def call(tmp_path: Path, models, task_manager):
        text = edit(SMOKE_TEXT)
        path = tmp_path / "bad.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return load_preset(str(path))

    return call


def _checked(edit: Callable[[dict], None]) -> Callable:
    """A case: the smoke preset edited past its schema, straight into `onmerge.grid.check_preset`."""

    def call(tmp_path: Path, models, task_manager):
        preset = yaml.safe_load(SMOKE_TEXT)
        edit(preset)
        grid.check_preset(preset)

    return call


def _load_config(path: Path) -> dict:
    """The run configuration validated against its schema, as common.smk does with Snakemake's `validate`."""
    return load_validated(path, CONFIG_SCHEMA)


def _config_text(text: str, check: Callable[[Path], object]) -> Callable:
    def call(tmp_path: Path, models, task_manager):
        path = tmp_path / "config.yaml"
        path.write_text(text)
        return check(path)

    return call


def _method(key: str, value) -> Callable[[dict], None]:
    return lambda preset: preset["methods"]["ondare"].update({key: value})


def _training(key: str, value) -> Callable[[dict], None]:
    return lambda preset: preset["training"].update({key: value})


def _study(**changes) -> Callable[[dict], None]:
    return lambda preset: preset["studies"]["table1"].update(changes)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _train(models: dict[str, Path], tmp_path: Path, *, rows=None, sft: str = "sft", **settings):
    train_preference(
        sft=models[sft],
        base=models["base"],
        rows=tiny_preference_dataset(4).to_list() if rows is None else rows,
        out=tmp_path / "cell",
        training_log=tmp_path / "training_log.json",
        training=PreferenceTraining(**({"learning_rate": 1e-3, "batch_size": 4, "max_length": 64} | settings)),
        optimizer=OptimizerSpec("adamw"),
    )


def _rows(**fields) -> list[dict]:
    """Four good preference rows, the first with `fields` replaced."""
    rows = tiny_preference_dataset(4).to_list()
    rows[0] |= fields
    return rows


def _answer(text) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def _preference_file(content: bytes | Callable[[bytes], bytes]) -> Callable:
    """A case: a preference file as the workflow writes it (JSON, indented), replaced or edited, then read."""

    def call(tmp_path: Path, models, task_manager):
        good = json.dumps(tiny_preference_dataset(4).to_list(), indent=2).encode() + b"\n"
        path = tmp_path / "train.json"
        path.write_bytes(content(good) if callable(content) else content)
        return read_rows(path)

    return call


def _train_from_file(tmp_path: Path, models: dict[str, Path]):
    """`onmerge train`, as the workflow's rule runs it, on a preference file cut short."""
    path = tmp_path / "train.json"
    path.write_text(json.dumps(tiny_preference_dataset(4).to_list(), indent=2)[:-30])
    settings = {"training": {"learning_rate": 1e-3, "batch_size": 4, "max_length": 64}, "optimizer": {"name": "adamw"}}
    import torch

    threads = str(torch.get_num_threads())  # the command sets torch's threads: leave this process's as they are
    arguments = ["--sft", str(models["sft"]), "--preferences", str(path), "--settings", json.dumps(settings)]
    outputs = ["--out", str(tmp_path / "cell"), "--training-log", str(tmp_path / "training_log.json")]
    main(["train", *arguments, "--threads", threads, *outputs])


def _ultrafeedback(**fields) -> dict:
    conversation = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a good answer"}]
    rejected = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a bad answer"}]
    return {"prompt": "q", "chosen": conversation, "rejected": rejected} | fields


def _optimizer(cls, **options):
    model = tiny_causal_lm(0)
    named = list(model.named_parameters())
    return cls(named, reference_delta={name: p.detach() for name, p in named}, **options)


def _fetch(models: dict[str, Path], tmp_path: Path, name: str) -> Path:
    return fetch_model(str(models[name]), tmp_path / "cell")


def _merge(models: dict[str, Path], tmp_path: Path, rlhf: str) -> Path:
    folders = {"rlhf": models[rlhf], "sft": models["sft"], "base": models["base"]}
    return merge_with_sft("ties", **folders, weight=0.5, density=0.5, out=tmp_path / "cell")


ONDARE = "qwen-s/dpo/ondare/beta~0.1_p~0.1_alpha~0.001_k~1/seed~0"
ADAMW = "qwen-s/dpo/adamw/beta~0.1/seed~0"
LORA = "qwen-s/dpo/lora/beta~0.1_r~8_lr~1e-05/seed~0"

# {class of bad input: [(case, the call, a piece of the message)]}. Each call gets (tmp_path, models, task_manager).
CLASSES: dict[str, list[tuple[str, Callable, str]]] = {
    # Presets and the run configuration: JSON schema, then onmerge.grid's cross-references
    "preset and config keys, types and ranges": [
        ("unknown preset key", _load(lambda p: p.update(typo=1)),
         r"\(top level\): Additional properties are not allowed \('typo' was unexpected\)"),
        ("wrong type", _load(lambda p: p.update(seeds="zero")), "seeds: 'zero' is not of type 'array'"),
        ("reserve_p above 1", _load(_method("reserve_p", 2)),
         "methods.ondare.reserve_p: 2 is greater than the maximum of 1"),
        ("negative alpha", _load(_method("alpha", -0.1)), "methods.ondare.alpha: -0.1 is less than the minimum of 0"),
        ("zero beta", _load(_training("beta", 0)), "training.beta: 0 is less than or equal to the minimum of 0"),
        ("learning rate above 1", _load(_training("learning_rate", 5)),
         "training.learning_rate: 5 is greater than the maximum of 1"),
        ("study names an unknown method", _load(lambda p: p["studies"]["table1"]["methods"].append("lion")),
         "studies.table1.methods: 'lion' is not one of the preset's methods"),
        ("unknown preset name", lambda t, m, tm: load_preset("qwen9"), "preset 'qwen9': no "),
        ("unknown run-config key", _config_text("preset: toy\nbenchmark: {}\n", _load_config),
         r"\(top level\): Additional properties are not allowed \('benchmark' was unexpected\)"),
        ("number YAML 1.1 reads as text", _load_text(lambda t: t.replace("alpha: 1.0e-3", "alpha: 1e-3")),
         r"methods\.ondare\.alpha: '1e-3' is not of type 'number' \(YAML 1\.1 reads it as text"),
    ],
    # Names that become paths, wildcards or file names: the schema's $defs/name
    "names that become paths": [
        ("study named ..", _load(lambda p: p["studies"].update({"..": p["studies"]["table1"]})),
         r"bad\.yaml: studies: '\.\.' is not a name: letters, digits"),
        ("study name with a slash", _load(lambda p: p["studies"].update({"../../etc": p["studies"]["table1"]})),
         r"studies: '\.\./\.\./etc' is not a name"),
        ("study name ending in a newline", _load(lambda p: p["studies"].update({"t1\n": p["studies"]["table1"]})),
         r"studies: 't1\\n' is not a name"),
        ("backbone name with a space", _load(lambda p: p["backbones"].update({"qwen s": {}})),
         r"backbones: 'qwen s' is not a name"),
        ("hidden method name", _load(lambda p: p["methods"].update({".ondare": {"method": "adamw"}})),
         r"methods: '\.ondare' is not a name"),
        ("preset name of dots", _load(lambda p: p.update(name="..")), r"bad\.yaml: name: '\.\.' is not a name"),
        ("study naming a backbone path", _load(lambda p: p["studies"]["table1"].update(backbones=["a/b"])),
         r"studies\.table1\.backbones\.0: 'a/b' is not a name"),
    ],
    # Files that do not parse as YAML: the file named, with the line and column
    "malformed or non-UTF-8 YAML": [
        ("unclosed bracket", _load_text(lambda t: t.replace("seeds: [0]", "seeds: [0")),
         rf"bad\.yaml: not valid YAML at line {SEEDS_LINE + 1}, column 8: .*expected ',' or ']'"),
        ("tab indentation", _load_text(lambda t: t.replace("  epochs: 1\n", "\tepochs: 1\n")),
         r"bad\.yaml: not valid YAML at line 16, column 1: .*found character '\\t' that cannot start any token"),
        ("Latin-1 byte in a preset", _load_text(lambda t: t.replace("in miniature", "en caf\xe9").encode("latin-1")),
         r"bad\.yaml: not UTF-8 text \(byte 0xe9 on line 4\)"),
        ("two documents", _load_text(lambda t: t + "---\nname: other\n"),
         rf"bad\.yaml: not valid YAML at line {SMOKE_LINES + 1}, column 1: expected a single document .*, but found"),
        ("Python object tag",
         _load_text(lambda t: t.replace("name: smoke", "name: !!python/object/apply:os.getcwd []")),
         r"bad\.yaml: not valid YAML at line 1, column 7: could not determine a constructor"),
        ("malformed run config", _config_text("preset: [toy\n", _load_config),
         r"config\.yaml: not valid YAML at line 2, column 1"),
    ],
    # A key twice in one mapping: PyYAML (and Snakemake's config reader) would keep the last silently
    "duplicate YAML keys": [
        ("top-level key twice", _load_text(lambda t: t + "seeds: [1]\n"),
         rf"bad\.yaml: seeds: the key is given twice \(lines {SEEDS_LINE} and {SMOKE_LINES + 1}\)"),
        ("nested key twice", _load_text(lambda t: t.replace("  epochs: 1\n", "  epochs: 1\n  epochs: 2\n")),
         r"bad\.yaml: training\.epochs: the key is given twice \(lines 16 and 17\)"),
        ("method row twice",
         _load_text(lambda t: t.replace("  adamw: {method: adamw}\n", "  adamw: {method: adamw}\n" * 2)),
         r"bad\.yaml: methods\.adamw: the key is given twice"),
        ("key twice in a flow mapping",
         _load_text(lambda t: t.replace("reserve_p: 0.1,", "reserve_p: 0.1, reserve_p: 1.0,")),
         r"bad\.yaml: methods\.ondare\.reserve_p: the key is given twice"),
        ("run config key twice", _config_text(CONFIG_TEXT + "preset: smoke\n", _load_config),
         r"config\.yaml: preset: the key is given twice \(lines 3 and 11\)"),
        ("config file Snakemake read, key twice", _config_text(CONFIG_TEXT + "preset: smoke\n",
                                                               lambda path: check_config_files([path])),
         r"config\.yaml: preset: the key is given twice"),
    ],
    # NaN and infinities pass every schema bound (NaN compares false to all): refused wherever they are
    "NaN and infinities": [
        ("NaN alpha in a preset", _load_text(lambda t: t.replace("alpha: 1.0e-3", "alpha: .nan")),
         r"bad\.yaml: methods\.ondare\.alpha: nan is not a finite number"),
        ("infinite seed", _load_text(lambda t: t.replace("seeds: [0]", "seeds: [0, .inf]")),
         r"bad\.yaml: seeds\.1: inf is not a finite number"),
        ("negative infinite beta", _load_text(lambda t: t.replace("beta: 0.1", "beta: -.inf")),
         r"bad\.yaml: training\.beta: -inf is not a finite number"),
        ("alpha that overflows to infinity", _load_text(lambda t: t.replace("alpha: 1.0e-3", "alpha: 1.0e+999")),
         r"bad\.yaml: methods\.ondare\.alpha: inf is not a finite number"),
        ("NaN in a list", _load_text(lambda t: t.replace("linear: {weights: [0.5]}", "linear: {weights: [0.5, .NaN]}")),
         r"bad\.yaml: offline\.linear\.weights\.1: nan is not a finite number"),
        ("NaN in the run config", _config_text(CONFIG_TEXT.replace("reserve_p: 0.01", "reserve_p: .nan"),
                                               lambda path: check_config_files([path])),
         r"config\.yaml: benchmarks\.optimizer\.reserve_p: nan is not a finite number"),
    ],
    # A study sweeps one hyper-parameter: its figure's x axis
    "a study varying more than one hyper-parameter": [
        ("two varied", _load(_study(methods=["ondare"], vary={"alpha": [0.1], "reserve_p": [0.5]})),
         r"studies\.table1\.vary: .* has too many properties: a study varies one hyper-parameter"),
        ("three varied", _load(_study(methods=["ondare"], vary={"alpha": [0.1], "reserve_p": [0.5], "beta": [0.2]})),
         r"studies\.table1\.vary: .* has too many properties"),
        ("two varied in a second study",
         _load(lambda p: p["studies"].update(fig={"backbones": ["qwen-s"], "methods": ["adamw"],
                                                  "vary": {"beta": [0.1], "learning_rate": [0.1]}})),
         r"studies\.fig\.vary: .* has too many properties"),
    ],
    # Values the optimizers refuse when built, and the preset check refuses first with the optimizers' own check
    "values the optimizer refuses": [
        ("reserve_p of 0", lambda t, m, tm: _optimizer(OnDAREAdamW, reserve_p=0.0), r"reserve_p must lie in \(0, 1\]"),
        ("alpha of 1", lambda t, m, tm: _optimizer(OnTIESAdamW, alpha=1.0), r"alpha must lie in \[0, 1\)"),
        ("step-K gap of 0", lambda t, m, tm: _optimizer(OnDAREAdamW, merge_every=0), "merge_every must be an integer"),
        ("online merging without the base model",
         lambda t, m, tm: build_optimizer(OptimizerSpec("ondare"), tiny_causal_lm(0), PreferenceTraining(), None,
                                          m["sft"]),
         "needs the base model"),
        ("preset alpha of 1", _load(_method("alpha", 1)),
         r"methods\.ondare\.alpha: 1 is greater than or equal to the maximum of 1"),
        ("searched alpha of 1", _load(_method("search", {"alpha": [0.5, 1.0]})),
         r"methods\.ondare\.search\.alpha\.1: 1\.0 is greater than or equal to the maximum of 1"),
        ("varied alpha of 1", _load(_study(methods=["ondare"], vary={"alpha": [1.0]})),
         r"studies\.table1\.vary\.alpha\.0: 1\.0 is greater than or equal to the maximum of 1"),
        ("alpha of 1 past the schema", _checked(_method("alpha", 1.0)),
         r"methods\.ondare\.alpha: alpha must lie in \[0, 1\), got 1\.0"),
        ("varied reserve_p of 0 past the schema", _checked(_study(methods=["ondare"], vary={"reserve_p": [0.1, 0]})),
         r"studies\.table1\.vary\.reserve_p\.1: reserve_p must lie in \(0, 1\], got 0"),
        ("fractional step-K gap past the schema", _checked(_method("merge_every", 1.5)),
         r"methods\.ondare\.merge_every: merge_every must be an integer >= 1, got 1\.5"),
    ],
    # The global batch: per device x processes x gradient accumulation
    "global batch the devices cannot split": [
        ("global batch that does not divide", lambda t, m, tm: batch_split(
            PreferenceTraining(batch_size=6, per_device_batch_size=4)), "global batch 6 is not a multiple of 4"),
        ("per-device batch that does not divide", _load(_training("per_device_batch_size", 3)),
         r"training\.batch_size: global batch 8 is not a multiple of 3 per device x 1 processes"),
        ("GPUs that do not divide", _load(_training("gpus", 3)),
         r"training\.batch_size: global batch 8 is not a multiple of 2 per device x 3 processes"),
        ("per-device batch x GPUs",
         _load(lambda p: p["training"].update(batch_size=128, per_device_batch_size=2, gpus=3)),
         r"training\.batch_size: global batch 128 is not a multiple of 2 per device x 3 processes"),
        ("fewer examples than GPUs", _load(lambda p: p["training"].update(batch_size=4, gpus=8)),
         r"training\.batch_size: global batch 4 leaves no example for each of 8 processes"),
    ],
    # Hand-written cell paths (`snakemake <path>`): values parsed, checked and compared with the grid's spelling
    "hand-written cell paths": [
        ("negative reserve rate", lambda t, m, tm: grid.parse(ONDARE.replace("p~0.1", "p~-1")),
         r"p~-1: reserve_p must lie in \(0, 1\], got -1\.0"),
        ("infinite alpha", lambda t, m, tm: grid.parse(ONDARE.replace("alpha~0.001", "alpha~1e999")),
         "alpha~1e999 is not a finite number"),
        ("NaN alpha in a path", lambda t, m, tm: grid.parse(ONDARE.replace("alpha~0.001", "alpha~nan")),
         "alpha~nan is not a finite number"),
        ("step-K gap of 0 in a path", lambda t, m, tm: grid.parse(ONDARE.replace("k~1", "k~0")),
         r"k~0: merge_every must be an integer >= 1, got 0"),
        ("fractional step-K gap in a path", lambda t, m, tm: grid.parse(ONDARE.replace("k~1", "k~1.5")),
         "k~1.5 is not an integer"),
        ("alpha of 1 in a path", lambda t, m, tm: grid.parse(ONDARE.replace("alpha~0.001", "alpha~1")),
         r"alpha~1: alpha must lie in \[0, 1\), got 1\.0"),
        ("trailing zero", lambda t, m, tm: grid.parse(ONDARE.replace("beta~0.1", "beta~0.10")),
         "beta~0.10 is not canonical: the grid writes beta~0.1"),
        ("exponent spelled short", lambda t, m, tm: grid.parse(LORA.replace("lr~1e-05", "lr~1e-5")),
         "lr~1e-5 is not canonical: the grid writes lr~1e-05"),
        ("decimal point on an integer", lambda t, m, tm: grid.parse(ONDARE.replace("alpha~0.001", "alpha~1e-3")),
         "alpha~1e-3 is not canonical: the grid writes alpha~0.001"),
        ("leading zeros on a seed", lambda t, m, tm: grid.parse(ADAMW.replace("seed~0", "seed~007")),
         "seed~007 is not canonical: the grid writes seed~7"),
        ("merge density of 0", lambda t, m, tm: grid.parse(f"{ADAMW}/merge/ties/density~0_weight~0.5"),
         r"density~0: density must lie in \(0, 1\], got 0\.0"),
        ("merge weight above 1", lambda t, m, tm: grid.parse(f"{ADAMW}/merge/linear/weight~1.5"),
         r"weight~1\.5: weight must lie in \[0, 1\], got 1\.5"),
        ("backbone of dots", lambda t, m, tm: grid.parse(ADAMW.replace("qwen-s", "..")),
         r"'\.\.' is not a backbone name"),
    ],
    # Preference data: checked row by row before any model loads
    "preference rows": [
        ("UltraFeedback row without a field",
         lambda t, m, tm: from_ultrafeedback({"prompt": "q", "chosen": []}, "row 7"),
         r"row 7: missing field\(s\) \['rejected'\]"),
        ("UltraFeedback pair of one answer",
         lambda t, m, tm: from_ultrafeedback(_ultrafeedback(rejected=_ultrafeedback()["chosen"]), "row 7"),
         "row 7: chosen and rejected are the same answer"),
        ("UltraFeedback empty prompt", lambda t, m, tm: from_ultrafeedback(_ultrafeedback(prompt=""), "row 7"),
         "row 7: prompt message 0 has empty content"),
        ("UltraFeedback answer that is not a conversation",
         lambda t, m, tm: from_ultrafeedback(_ultrafeedback(chosen="a good answer"), "row 7"),
         "row 7: chosen does not end with an assistant message"),
        ("training rows without a field", lambda t, m, tm: _train(m, t, rows=[{"prompt": [], "chosen": []}]),
         r"dpo preference data: row 0 lacks \['rejected'\]"),
        ("KTO given paired rows", lambda t, m, tm: _train(m, t, loss="kto"), r"kto preference data: row 0 lacks"),
        ("empty prompt", lambda t, m, tm: _train(m, t, rows=_rows(prompt="")),
         "dpo preference data: row 0: prompt is empty"),
        ("blank answer", lambda t, m, tm: _train(m, t, rows=_rows(chosen=_answer("  \n"))),
         "row 0: chosen message 0 has empty content"),
        ("answer that is a number", lambda t, m, tm: _train(m, t, rows=_rows(rejected=_answer(3))),
         "row 0: rejected message 0 is not an object with a string role and content"),
        ("prompt that is null", lambda t, m, tm: _train(m, t, rows=_rows(prompt=None)),
         "row 0: prompt is None, not a string or a list of messages"),
        ("chosen equals rejected",
         lambda t, m, tm: _train(m, t, rows=_rows(chosen=_answer("x"), rejected=_answer("x"))),
         "dpo preference data: row 0: chosen and rejected are the same answer"),
        ("row that is not an object", lambda t, m, tm: check_rows([["q", "a", "b"]], "paired", "train.json"),
         r"train\.json: row 0 is a list, not an object"),
        ("KTO label that is not a boolean",
         lambda t, m, tm: check_rows([{"prompt": "q", "completion": "a", "label": "yes"}], "unpaired", "train.json"),
         "train.json: row 0: label is 'yes', not true or false"),
    ],
    # Preference files: read whole, as UTF-8 JSON, before a row is looked at
    "non-UTF-8 or truncated preference files": [
        ("Latin-1 byte in a preference file",
         _preference_file(lambda good: good.replace(b"assistant", b"assist\xe4nt", 1)),
         r"train\.json: not UTF-8 text \(byte 0xe4 on line 6\)"),
        ("file cut mid-row", _preference_file(lambda good: good[: len(good) // 2]),
         r"train\.json: not JSON at line \d+, column \d+: .* \(the file ends mid-JSON: truncated\?\)"),
        ("file cut after its bracket", _preference_file(b"[\n"), r"train\.json: not JSON .*truncated\?"),
        ("empty file", _preference_file(b""), r"train\.json: not JSON at line 1, column 1: .*truncated\?"),
        ("an object, not a list", _preference_file(b'{"prompt": "q"}\n'),
         r"train\.json: a JSON list of preference rows expected, got an object"),
        ("cut file given to onmerge train", lambda t, m, tm: _train_from_file(t, m),
         r"train\.json: not JSON .*truncated\?"),
    ],
    # Models: checked from the checkpoints' headers (and the tokenizer) before training or merging
    "model folders": [
        ("base and SFT of different architectures", lambda t, m, tm: task_vector(m["base"], m["llama"]),
         r"parameter '.*' is in the base model but not in the tuned model"),
        ("missing model folder", lambda t, m, tm: task_vector(m["missing"], m["sft"]),
         r"base model folder .*missing does not exist"),
        ("model folder without weights", lambda t, m, tm: task_vector(m["base"], m["empty"]),
         r"tuned model folder .*empty has no model.safetensors"),
        ("weights cut short", lambda t, m, tm: task_vector(m["base"], m["cut-short"]),
         r"tuned model file .*cut-short/model\.safetensors: the safetensors header does not parse"),
        ("header length past the end", lambda t, m, tm: _merge(m, t, "length-past-end"),
         r"rlhf model file .*length-past-end/model\.safetensors: the safetensors header does not parse \(.*length"),
        ("header that is not JSON", lambda t, m, tm: _train(m, t, sft="header-not-json"),
         r"sft model file .*header-not-json/model\.safetensors: the safetensors header does not parse \(.*JSON"),
        ("header that is not UTF-8", lambda t, m, tm: _fetch(m, t, "header-not-utf8"),
         r"source model file .*header-not-utf8/model\.safetensors: the safetensors header does not parse \(.*UTF-8"),
        ("file shorter than its length prefix", lambda t, m, tm: parameter_locations(m["four-bytes"], "sft"),
         r"sft model file .*four-bytes/model\.safetensors: the safetensors header does not parse"),
        ("shard index that does not parse", lambda t, m, tm: task_vector(m["base"], m["bad-index"]),
         r"tuned model index .*bad-index/model\.safetensors\.index\.json does not parse"),
    ],
    "tokenizers with ids past the embedding": [
        ("tokens added to the tokenizer", lambda t, m, tm: _train(m, t, sft="added-tokens"),
         r"sft model folder .*added-tokens: the tokenizer's ids reach 391, but the embedding has 390 rows"),
        ("special token added to the tokenizer", lambda t, m, tm: _fetch(m, t, "added-special-token"),
         r"source model folder .*added-special-token: the tokenizer's ids reach 390, but the embedding has 390 rows"),
        ("embedding shrunk below the tokenizer", lambda t, m, tm: _train(m, t, sft="fewer-rows"),
         r"sft model folder .*fewer-rows: the tokenizer's ids reach 389, but the embedding has 382 rows"),
    ],
    # Benchmarks: checked against lm-eval's task index before the model loads
    "benchmarks": [
        ("unknown benchmark name", lambda t, m, tm: split_sampled_tasks(tm(), ["onmerge_gsm8k", "gsm9k"]),
         r"unknown lm-eval tasks \['gsm9k'\]"),
        ("unknown sampling setting", lambda t, m, tm: check_sampling({"temp": 0.7}), "unknown sampling setting 'temp'"),
        ("top-p above 1", lambda t, m, tm: check_sampling({"top_p": 1.5}), r"top_p=1.5 is out of range"),
    ],
    # The judge endpoint: checked by a preflight before any judgment
    "judge endpoint": [
        ("unreachable judge endpoint",
         lambda t, m, tm: ChatClient(JudgeEndpoint(f"http://127.0.0.1:{_closed_port()}/v1", "key"), t)
         .preflight("gpt-4"),
         r"http://127\.0\.0\.1:\d+/v1"),
        ("no judge API key", lambda t, m, tm: JudgeEndpoint.from_environment({}),
         "no judge API key: set ONMERGE_JUDGE"),
        ("judge base URL that is not a URL",
         lambda t, m, tm: JudgeEndpoint.from_environment(
             {"ONMERGE_JUDGE_BASE_URL": "host:8000", "OPENAI_API_KEY": "k"}),
         "ONMERGE_JUDGE_BASE_URL='host:8000' is not an http"),
    ],
}  # fmt: skip
CASES = [(kind, case, call, message) for kind, cases in CLASSES.items() for case, call, message in cases]


def test_every_class_of_bad_input_has_at_least_three_distinct_cases():
    assert len({case for _, case, _, _ in CASES}) == len(CASES)
    assert {kind: len(cases) for kind, cases in CLASSES.items() if len(cases) < 3} == {}


@pytest.mark.parametrize("kind, case, call, message", CASES, ids=[case for _, case, _, _ in CASES])
def test_bad_input_is_rejected_naming_what_is_wrong(kind, case, call, message, tmp_path, models, task_manager):
    with pytest.raises((ValueError, RuntimeError)) as raised:
        call(tmp_path, models, task_manager)
    assert re.search(message, str(raised.value)), f"{kind}: {case}: {raised.value}"
    assert not (tmp_path / "cell").exists(), "nothing was written"


def _repeated(rows: list[dict], *copies: int) -> list[dict]:
    return rows + [rows[i] for i in copies]


@pytest.mark.parametrize(
    "rows, view, reported",
    [
        (_repeated(tiny_preference_dataset(3).to_list(), 0), "paired",
         r"1 duplicate row\(s\), kept: row 3 repeats row 0"),
        (_repeated(tiny_preference_dataset(3).to_list(), 1, 1), "paired",
         r"2 duplicate row\(s\), kept: row 3 repeats row 1, row 4 repeats row 1"),
        (_repeated([{"prompt": "q", "completion": c, "label": c == "a"} for c in "ab"], 1), "unpaired",
         r"1 duplicate row\(s\), kept: row 2 repeats row 1"),
    ],
)  # fmt: skip
def test_duplicate_preference_rows_are_reported_and_kept(rows, view, reported):
    """A repeated pair is sound to train on (it weighs twice), and real data has them (the toy world's 1024 pairs
    hold 17): reported by file and row, not refused."""
    with pytest.warns(UserWarning, match=r"train\.json: " + reported):
        check_rows(rows, view, "train.json")


def _dry_run(tmp_path: Path, *arguments: str) -> str:
    result = subprocess.run(
        [*SNAKEMAKE, "--directory", str(tmp_path), *arguments], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0
    assert "Job stats" not in result.stdout, "no job was planned"
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    "target, named",
    [
        (f"{ONDARE.replace('p~0.1', 'p~-1')}/eval/metrics.json", r"p~-1: reserve_p must lie in \(0, 1\], got -1\.0"),
        (
            f"{ADAMW}/merge/ties/density~0.50_weight~0.5/model",
            r"density~0\.50 is not canonical: the grid writes density~0\.5",
        ),
    ],
)
def test_a_hand_written_cell_path_fails_before_any_job_naming_the_part(tmp_path, target, named):
    output = _dry_run(tmp_path, f"results/smoke/{target}", "--config", "preset=smoke")
    assert re.search(named, output), output[-2000:]


def test_a_run_config_with_a_key_twice_fails_before_any_job_naming_it(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text(CONFIG_TEXT.replace("preset: toy", "preset: toy\npreset: smoke"))
    output = _dry_run(tmp_path, "--configfile", str(config))
    assert re.search(r"mine\.yaml: preset: the key is given twice \(lines 3 and 4\)", output), output[-2000:]
