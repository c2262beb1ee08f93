"""lm-eval for the paper presets: reading results into the metrics JSON, doc ids, the split into greedy and sampled
calls, and one end-to-end run of our task configs on a tiny model with local data (nothing fetched)."""

import functools
import json
import math
from pathlib import Path

import lm_eval.evaluator
import pytest
from lm_eval.tasks import TaskManager

from onmerge import lm_evaluation
from onmerge.cli import build_parser, main
from onmerge.items import read_items, read_samples
from onmerge.lm_evaluation import (
    PAPER_METRICS,
    check_sampling,
    evaluated_doc_ids,
    merge_results,
    run_lm_eval,
    runs_unsafe_code,
    split_sampled_tasks,
    task_metrics,
)
from onmerge.lm_tasks import SUBSET_SEED, include_path, scoring, utils

from tiny import tiny_causal_lm, tiny_tokenizer


def test_every_metric_keeps_its_stderr_and_filter():
    results = {
        "results": {
            "gsm8k": {
                "alias": "gsm8k",
                "exact_match,strict-match": 0.5,
                "exact_match_stderr,strict-match": 0.1,
                "exact_match,flexible-extract": 0.6,
                "exact_match_stderr,flexible-extract": 0.2,
            },
            "ifeval": {"prompt_level_strict_acc,none": 0.25, "prompt_level_strict_acc_stderr,none": "N/A"},
        },
        "n-samples": {"gsm8k": {"effective": 10, "original": 10}, "ifeval": {"effective": 4, "original": 4}},
    }
    metrics = task_metrics(results)
    assert set(metrics) == {
        "gsm8k/exact_match,strict-match",
        "gsm8k/exact_match,flexible-extract",
        "ifeval/prompt_level_strict_acc",
    }
    assert metrics["gsm8k/exact_match,strict-match"] == {"value": 0.5, "stderr": 0.1, "n": 10}
    strict = metrics["ifeval/prompt_level_strict_acc"]
    assert (strict["value"], strict["n"]) == (0.25, 4) and math.isnan(strict["stderr"])


def test_a_groups_n_is_the_sum_over_its_tasks():
    results = {
        "results": {
            "group": {"acc,none": 0.5, "acc_stderr,none": 0.1},
            "subgroup": {"acc,none": 0.4, "acc_stderr,none": 0.1},
            "leaf_a": {"acc,none": 0.4, "acc_stderr,none": 0.1},
            "leaf_b": {"acc,none": 1.0, "acc_stderr,none": 0.0},
        },
        "group_subtasks": {"group": ["subgroup", "leaf_b"], "subgroup": ["leaf_a"], "leaf_a": [], "leaf_b": []},
        "n-samples": {"leaf_a": {"effective": 5, "original": 5}, "leaf_b": {"effective": 2, "original": 2}},
    }
    metrics = task_metrics(results)
    assert (metrics["group/acc"]["n"], metrics["subgroup/acc"]["n"], metrics["leaf_b/acc"]["n"]) == (7, 5, 2)


def test_doc_ids_come_from_the_logged_samples_once_per_doc():
    def sample(doc_id, doc, filter_name):
        return {"doc_id": doc_id, "doc": doc, "filter": filter_name}

    results = {
        "samples": {
            "ours": [sample(1, {"id": "b"}, "x"), sample(0, {"id": "a"}, "x"), sample(0, {"id": "a"}, "y")],
            "built_in": [sample(0, {"question": "q"}, "none"), sample(1, {"question": "r"}, "none")],
        }
    }
    assert evaluated_doc_ids(results) == {"ours": ["a", "b"], "built_in": [0, 1]}
    with pytest.raises(ValueError, match="log_samples"):
        evaluated_doc_ids({"results": {}})


def test_merged_results_join_the_per_task_parts():
    first = {"results": {"a": {"acc,none": 1.0}}, "n-samples": {"a": {"effective": 1}}, "config": {"model": "m"}}
    second = {"results": {"b": {"acc,none": 0.0}}, "n-samples": {"b": {"effective": 2}}, "config": {"model": "m"}}
    merged = merge_results([first, second])
    assert set(merged["results"]) == set(merged["n-samples"]) == {"a", "b"} and merged["config"] == {"model": "m"}


def test_sampling_settings_are_checked_by_name_and_range():
    assert check_sampling({"temperature": 0.7, "top_p": 0.8, "top_k": 20.0, "repetition_penalty": 1.05}) == {
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
        "repetition_penalty": 1.05,
    }
    for bad, message in [
        ({"temprature": 0.7}, "unknown sampling setting 'temprature'"),
        ({"top_p": 1.5}, r"top_p=1.5 is out of range"),
        ({"temperature": 0}, "out of range"),
        ({"top_k": 2.5}, "not an integer"),
        ({"top_p": "0.8"}, "not a number"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_sampling(bad)


def _task_folder(folder: Path, tasks: dict[str, dict]) -> Path:
    folder.mkdir()
    for name, config in tasks.items():
        (folder / f"{name}.yaml").write_text(json.dumps(config))
    return folder


def _generative(name: str, do_sample: bool) -> dict:
    return {
        "task": name,
        "dataset_path": "json",
        "test_split": "test",
        "doc_to_text": "q",
        "doc_to_target": "a",
        "generation_kwargs": {"until": [], "do_sample": do_sample},
        "metric_list": [{"metric": "exact_match"}],
    }


def test_tasks_are_split_by_their_own_sampling_and_checked_before_any_model_loads(tmp_path: Path):
    folder = _task_folder(
        tmp_path / "tasks",
        {
            "greedy": _generative("greedy", False),
            "sampled": _generative("sampled", True),
            "sampled_group": {"group": "sampled_group", "task": ["sampled"]},
            "mixed_group": {"group": "mixed_group", "task": ["greedy", "sampled"]},
        },
    )
    task_manager = TaskManager(include_path=str(folder), include_defaults=False)
    assert split_sampled_tasks(task_manager, ["sampled_group", "greedy", "sampled"]) == (
        ["greedy"],
        ["sampled_group", "sampled"],
    )
    with pytest.raises(ValueError, match="mixes sampled and greedy"):
        split_sampled_tasks(task_manager, ["mixed_group"])
    missing_model = tmp_path / "no-model-here"  # never reached: each error comes first
    with pytest.raises(ValueError, match=r"unknown lm-eval tasks \['gsm8k_typo'\]"):
        run_lm_eval(missing_model, ["greedy", "gsm8k_typo"], include_path=folder, include_defaults=False)
    with pytest.raises(ValueError, match=r"tasks \['sampled'\] sample their answers"):
        run_lm_eval(missing_model, ["greedy", "sampled"], include_path=folder, include_defaults=False)


CODE_TASKS = ("onmerge_humaneval", "onmerge_mbpp", "onmerge_ds1000", "onmerge_codeapex")


def test_code_tasks_are_unsafe_and_only_their_call_confirms_it(tmp_path: Path, monkeypatch):
    """lm-eval refuses a task marked `unsafe_code` unless simple_evaluate gets confirm_run_unsafe_code=True."""
    folder = _task_folder(tmp_path / "tasks", {"code_group": {"group": "code_group", "task": ["onmerge_mbpp"]}})
    task_manager = TaskManager(include_path=[str(include_path()), str(folder)], include_defaults=False)
    assert all(runs_unsafe_code(task_manager, name) for name in (*CODE_TASKS, "code_group"))
    assert not any(runs_unsafe_code(task_manager, name) for name in ("onmerge_gsm8k", "onmerge_function_calling"))
    assert all(task_manager.task_index[name].cfg["unsafe_code"] is True for name in CODE_TASKS)

    calls = []
    monkeypatch.setattr("lm_eval.simple_evaluate", lambda **kwargs: calls.append(kwargs) or {"results": {}})
    monkeypatch.setattr("lm_eval.models.huggingface.HFLM", lambda **kwargs: None)
    monkeypatch.setattr(lm_evaluation, "_stop_at_chat_end", lambda lm: None)
    run_lm_eval(
        tmp_path / "model",
        ["onmerge_gsm8k", "onmerge_math401", "onmerge_humaneval"],
        include_path=include_path(),
        include_defaults=False,
        sampling={"temperature": 0.7},
    )
    confirmed = {tuple(call["tasks"]): call["confirm_run_unsafe_code"] for call in calls}
    assert confirmed == {("onmerge_gsm8k", "onmerge_humaneval"): True, ("onmerge_math401",): False}


FUNCTION_CALL_ROWS = [
    {
        "prompt": [{"role": "user", "content": "weather?"}],
        "completion": '{"name": "w", "arguments": {}}',
        "tools": '[{"type": "function", "function": {"name": "w", "parameters": {}}}]',
    }
] * 2
JSON_MODE_ROWS = [
    {
        "prompt": [{"role": "system", "content": "json"}, {"role": "user", "content": "age?"}],
        "completion": '{"age": 1}',
        "schema": '{"type": "object"}',
    }
] * 2
SOURCES = {  # task file -> (split, rows in the source's schema)
    "gsm8k": (
        "test",
        [{"question": f"what is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"} for i in range(3)],
    ),
    "math401": ("test", [{"query": f"{i}+1=", "response": str(i + 1)} for i in range(401)]),
    "mbpp": (
        "test",
        [
            {"task_id": i, "text": "Add one.", "test_list": ["assert f(1) == 2"], "test_setup_code": ""}
            for i in range(2)
        ],
    ),
    "fc_json_mode": ("train", JSON_MODE_ROWS),
    "fc_singleturn": ("train", FUNCTION_CALL_ROWS),
    "fc_glaive": ("train", FUNCTION_CALL_ROWS),
    "fc_eval": ("train", FUNCTION_CALL_ROWS),
}


def test_paper_tasks_run_end_to_end_on_a_tiny_model_through_the_cli(tmp_path: Path, monkeypatch):
    """Our task YAMLs, each included with local rows in its source's schema instead of the hub data and a short
    generation: greedy tasks, a sampled one, a sandboxed code task and a group, in one model load."""
    # Indexing lm-eval's thousands of built-in tasks takes seconds and none is used here.
    monkeypatch.setattr(lm_evaluation, "run_lm_eval", functools.partial(run_lm_eval, include_defaults=False))
    environment_reports = []  # torch's collect_env: a dozen subprocesses per call, skipped (lm_evaluation docstring)
    monkeypatch.setattr("torch.utils.collect_env.get_pretty_env_info", lambda: environment_reports.append(1))
    report = lm_eval.evaluator.add_env_info
    model = tmp_path / "model"
    tiny_causal_lm(seed=0).save_pretrained(model)
    tiny_tokenizer().save_pretrained(model)
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for name, (split, rows) in SOURCES.items():
        data = tmp_path / f"{name}.jsonl"
        data.write_text("".join(json.dumps(row) + "\n" for row in rows))
        override = {
            "include": str(include_path() / f"{name}.yaml"),
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": {split: str(data)}},
            "generation_kwargs": {"until": [], "do_sample": name == "math401", "max_gen_toks": 4},
        }
        (tasks / f"{name}.yaml").write_text(json.dumps(override))
    (tasks / "function_calling.yaml").write_text((include_path() / "function_calling.yaml").read_text())
    metrics_path = tmp_path / "metrics.json"
    items_path = tmp_path / "items.json.gz"
    arguments = ["--model", str(model), "--include-path", str(tasks), "--metrics", str(metrics_path)]
    arguments += ["--items", str(items_path), "--samples", str(tmp_path / "samples.jsonl.gz")]
    tasks_to_run = ["onmerge_gsm8k", "onmerge_math401", "onmerge_mbpp", "onmerge_function_calling"]
    sampling = ["temperature=0.7", "top_p=0.8", "top_k=20", "repetition_penalty=1.05"]
    main(["evaluate", "lm-eval", *arguments, "--tasks", *tasks_to_run, "--batch-size", "64", "--sampling", *sampling])
    assert environment_reports == [] and lm_eval.evaluator.add_env_info is report
    written = json.loads(metrics_path.read_text())
    metrics, provenance = written["metrics"], written["provenance"]
    assert {"onmerge_gsm8k/acc", "onmerge_math401/acc", "onmerge_mbpp/pass_at_1,sandbox"} <= set(metrics)
    assert metrics["onmerge_function_calling/acc"]["n"] == 8
    assert metrics["onmerge_math401/acc"]["n"] == 101 and metrics["onmerge_gsm8k/acc"]["n"] == 3
    doc_ids = provenance["doc_ids"]
    assert doc_ids["onmerge_gsm8k"] == ["gsm8k-test-0", "gsm8k-test-1", "gsm8k-test-2"]
    assert doc_ids["onmerge_fc_glaive"] == ["fc-0", "fc-1"] and doc_ids["onmerge_mbpp"] == ["mbpp-0", "mbpp-1"]
    assert doc_ids["onmerge_math401"] == utils.math401_docs(SOURCES["math401"][1])["id"]
    assert provenance["sampling"] == {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05}
    assert provenance["subset_seed"] == SUBSET_SEED
    record = json.loads((tmp_path / "metrics.provenance.json").read_text())  # the step's record, beside the result
    assert record["step"] == "evaluate" and record["settings"]["tasks"] == tasks_to_run and record["seconds"] > 0
    assert set(record["inputs"]) == {"model", "include_path"}
    assert "model.safetensors" in record["inputs"]["model"]["sha256"]
    # The paper columns' items: named as the metrics are, ids from the docs, each mean the reported value.
    items = read_items(items_path)
    assert set(items) == {name for name in PAPER_METRICS if name in metrics}
    assert items["onmerge_gsm8k/acc"].ids == tuple(doc_ids["onmerge_gsm8k"])
    assert len(items["onmerge_function_calling/acc"].ids) == 8  # the group pools its four tasks' docs
    assert items["onmerge_function_calling/acc"].ids[0].startswith("onmerge_fc_")
    for name, entry in items.items():
        assert entry.value == pytest.approx(metrics[name]["value"])
    # Every scored sample's record, with what its scorer read: the number, the program that ran, the calls.
    records = {(record["task"], record["doc_id"]): record for record in read_samples(tmp_path / "samples.jsonl.gz")}
    assert len(records) == 3 + 101 + 2 + 8
    gsm8k = records[("onmerge_gsm8k", "gsm8k-test-0")]
    assert gsm8k["prompt"].endswith("<|im_start|>assistant\n") and "what is 0 + 1?" in gsm8k["prompt"]
    number = scoring.final_number(gsm8k["response"])
    assert gsm8k["extracted"] == (None if number is None else str(number.value))
    assert set(gsm8k["scores"]) == {"onmerge_gsm8k/acc"}
    mbpp = records[("onmerge_mbpp", "mbpp-0")]
    assert mbpp["filter"] == "sandbox" and "assert f(1) == 2" in mbpp["extracted"]
    assert set(mbpp["scores"]) == {"onmerge_mbpp/pass_at_1,sandbox"}
    assert isinstance(json.loads(records[("onmerge_fc_glaive", "fc-0")]["extracted"]), list)


def test_a_malformed_sampling_setting_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            [
                "evaluate",
                "lm-eval",
                "--model",
                "m",
                "--tasks",
                "t",
                "--metrics",
                "x",
                "--items",
                "y",
                "--sampling",
                "top_p",
            ]
        )
    assert "is not KEY=NUMBER" in capsys.readouterr().err
