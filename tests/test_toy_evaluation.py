"""Toy benchmarks through lm-eval: suite files, one-load evaluation, chat templating, stopping and scoring.

Most tests swap the toy world for a stand-in with two small tasks (one generative with two columns, one multiple
choice) whose scorer records its calls, so they can check exactly what reaches `score`. The last tests run real
toy-world tasks end to end. Models are tiny random Qwen2s; nothing is fetched from a hub.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager

import onmerge.toyworld
from onmerge.items import check_against, read_items, read_samples, write_items, write_samples
from onmerge.toyworld import evaluation
from onmerge.toyworld import suite as toy_suite

from tiny import tiny_causal_lm, tiny_tokenizer


@dataclass(frozen=True)
class FakeSpec:
    name: str
    output_type: str
    columns: tuple[str, ...]
    max_gen_toks: int = 8


def _fake_docs(task: str, n: int, seed: int) -> list[dict[str, Any]]:
    if task == "fake_echo":
        # `extra` has different keys per doc: Arrow would hand them back as {"a": ..., "b": None}.
        return [
            {
                "id": f"e{i}",
                "prompt": f"tell me about the {i} cats.",
                "parity": i % 2,
                "extra": {"a": 1} if i % 2 else {"b": [seed]},
            }
            for i in range(n)
        ]
    choices = ["the sky is blue.", "the sky is loud.", "the sky is plaid."]
    return [{"id": f"c{i}", "prompt": "what color is the sky?", "choices": choices, "answer": i % 3} for i in range(n)]


@pytest.fixture
def fake_world(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """Install the stand-in as `onmerge.toyworld.suite` for the package, the generated utils.py and evaluation.py."""
    calls: list[tuple[str, dict[str, Any], str]] = []

    def score(task: str, doc: dict[str, Any], response: str) -> dict[str, float]:
        calls.append((task, doc, response))
        return {"fake_echo_even": float(doc["parity"] == 0), "fake_echo_len": min(len(response), 20) / 20}

    fake = types.ModuleType("onmerge.toyworld.suite")
    fake.TASKS = {
        "fake_echo": FakeSpec("fake_echo", "generate_until", ("fake_echo_even", "fake_echo_len")),
        "fake_choice": FakeSpec("fake_choice", "multiple_choice", ("fake_choice",)),
    }
    fake.docs = _fake_docs
    fake.score = score
    fake.extracted_answer = lambda task, doc, response: f"{task} read {len(response)} characters"
    fake.calls = calls
    monkeypatch.setitem(sys.modules, "onmerge.toyworld.suite", fake)
    monkeypatch.setattr(onmerge.toyworld, "suite", fake, raising=False)
    monkeypatch.setattr(evaluation, "suite", fake)
    return fake


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "qwen2"
    tiny_causal_lm(seed=0).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def test_suite_loads_through_lm_eval_with_docs_verbatim(tmp_path: Path):
    suite = evaluation.write_task_suite(tmp_path / "suite", n_per_task=3, seed=7)
    manager = TaskManager(include_path=str(suite), include_defaults=False)
    assert set(manager.all_subtasks) == set(toy_suite.TASKS)  # none of lm-eval's built-in tasks was indexed
    loaded = manager.load(list(toy_suite.TASKS))["tasks"]
    for name, spec in toy_suite.TASKS.items():
        task = loaded[name]
        docs = list(task.test_docs())
        assert spec.output_type == task.OUTPUT_TYPE
        expected = toy_suite.docs(name, 3, 7)
        assert [json.loads(doc["doc_json"]) for doc in docs] == expected
        assert [task.doc_to_text(doc) for doc in docs] == [doc["prompt"] for doc in expected]
        if spec.output_type == "multiple_choice":
            assert [task.doc_to_choice(doc) for doc in docs] == [doc["choices"] for doc in expected]
            assert [task.doc_to_target(doc) for doc in docs] == [doc["answer"] for doc in expected]
        else:
            kwargs = task.config.generation_kwargs
            assert kwargs["until"] == ["<|im_end|>"] and kwargs["do_sample"] is False
            assert kwargs["max_gen_toks"] == spec.max_gen_toks
            assert set(task.aggregation()) == set(spec.columns)
    assert evaluation.read_manifest(suite) == {"tasks": list(toy_suite.TASKS), "n_per_task": 3, "seed": 7}


def test_suite_is_replaced_whole(tmp_path: Path):
    out = tmp_path / "suite"
    evaluation.write_task_suite(out, n_per_task=2, seed=0, tasks=["toy_gsm8k", "toy_mmlu"])
    evaluation.write_task_suite(out, n_per_task=2, seed=0, tasks=["toy_drop"])
    assert sorted(path.name for path in out.iterdir()) == ["suite.json", "toy_drop.jsonl", "toy_drop.yaml", "utils.py"]
    with pytest.raises(ValueError, match="toy_nonsense"):
        evaluation.write_task_suite(out, n_per_task=2, seed=0, tasks=["toy_nonsense"])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["suite"]  # no staging folders left behind
    assert evaluation.read_manifest(out)["tasks"] == ["toy_drop"]


def test_evaluation_goes_through_chat_template_and_score(
    fake_world: types.SimpleNamespace, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    suite = evaluation.write_task_suite(tmp_path / "suite", n_per_task=8, seed=3)
    requests: dict[str, list[tuple]] = {"generate_until": [], "loglikelihood": []}
    for method in requests:
        original = getattr(HFLM, method)

        def spy(self, reqs, *args, _original=original, _method=method, **kwargs):
            requests[_method].extend(req.args for req in reqs)
            return _original(self, reqs, *args, **kwargs)

        monkeypatch.setattr(HFLM, method, spy)

    metrics, items, records = evaluation.evaluate_model(model_dir, suite, batch_size=4, limit=6)

    assert set(metrics) == {"fake_echo_even", "fake_echo_len", "fake_choice"}
    for entry in metrics.values():
        assert 0.0 <= entry["value"] <= 1.0 and entry["n"] == 6 and math.isfinite(entry["stderr"])
    # Parity alternates over the six docs: lm-eval's stderr of a mean is the sample standard deviation over sqrt(n).
    parity = [1.0, 0.0] * 3
    assert metrics["fake_echo_even"]["value"] == 0.5
    assert metrics["fake_echo_even"]["stderr"] == pytest.approx(statistics.stdev(parity) / math.sqrt(6))

    # process_results called score once per doc, with the task name, the doc exactly as written, and the generation.
    docs = _fake_docs("fake_echo", 6, 3)
    assert sorted((task, doc["id"]) for task, doc, _ in fake_world.calls) == [("fake_echo", d["id"]) for d in docs]
    assert sorted((doc for _, doc, _ in fake_world.calls), key=lambda d: d["id"]) == docs
    lengths = [min(len(response), 20) / 20 for _, _, response in fake_world.calls]
    assert metrics["fake_echo_len"]["value"] == pytest.approx(sum(lengths) / 6)
    # Each column's items are the docs' own scores, named by doc id, and their mean is the column's value.
    by_id = {doc["id"]: min(len(response), 20) / 20 for _, doc, response in fake_world.calls}
    by_response = {doc["id"]: response for _, doc, response in fake_world.calls}
    assert dict(zip(items["fake_echo_len"]["ids"], items["fake_echo_len"]["scores"], strict=True)) == by_id
    assert items["fake_echo_even"]["scores"] == parity and items["fake_choice"]["weights"] == [1.0] * 6
    check_against(items, metrics)
    # One record per scored doc: the templated prompt, the response, every column's score; a multiple-choice
    # response is the likeliest choice.
    assert [(record["task"], record["doc_id"]) for record in records] == sorted(
        (task, doc["id"]) for task in ("fake_choice", "fake_echo") for doc in _fake_docs(task, 6, 3)
    )
    echo = next(record for record in records if record["task"] == "fake_echo")
    assert echo["prompt"].startswith("<|im_start|>user\n") and set(echo["scores"]) == {
        "fake_echo_even",
        "fake_echo_len",
    }
    assert echo["response"] == by_response[echo["doc_id"]]
    assert echo["extracted"] == f"fake_echo read {len(echo['response'])} characters"
    choice = next(record for record in records if record["task"] == "fake_choice")
    assert choice["response"] in _fake_docs("fake_choice", 1, 0)[0]["choices"] and set(choice["scores"]) == {
        "fake_choice"
    }

    # The tokenizer's own chat template wraps the user message; generation is greedy and stops at <|im_end|>.
    tokenizer = tiny_tokenizer()
    chat = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": d["prompt"]}], tokenize=False, add_generation_prompt=True
        )
        for d in docs
    ]
    assert sorted(context for context, _ in requests["generate_until"]) == sorted(chat)
    assert all(text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n") for text in chat)
    for _, kwargs in requests["generate_until"]:
        assert kwargs["until"] == ["<|im_end|>"] and kwargs["do_sample"] is False and kwargs["max_gen_toks"] == 8
    # Multiple choice: each choice is scored as the assistant's reply, right after the templated prompt.
    question = tokenizer.apply_chat_template(
        [{"role": "user", "content": "what color is the sky?"}], tokenize=False, add_generation_prompt=True
    )
    choices = _fake_docs("fake_choice", 1, 0)[0]["choices"]
    assert sorted(requests["loglikelihood"]) == sorted((question, choice) for choice in choices * 6)


def test_unknown_task_fails_before_the_model_loads(
    fake_world: types.SimpleNamespace, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    suite = evaluation.write_task_suite(tmp_path / "suite", n_per_task=2, seed=0, tasks=["fake_choice"])

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(HFLM, "__init__", no_load)
    with pytest.raises(ValueError, match="'fake_nonsense'"):
        evaluation.evaluate_model(model_dir, suite, tasks=["fake_choice", "fake_nonsense"])
    with pytest.raises(ValueError, match=r"'fake_echo'.*suite"):  # a toy task, but not written into this suite
        evaluation.evaluate_model(model_dir, suite, tasks=["fake_echo"])
    with pytest.raises(ValueError, match="no tasks"):
        evaluation.evaluate_model(model_dir, suite, tasks=[])


def test_batched_generation_matches_one_at_a_time_when_eos_is_not_im_end(
    fake_world: types.SimpleNamespace, tmp_path: Path
):
    """Left padding must not change greedy outputs, and a row that ends early must not run on past <|im_end|>.

    The tokenizer's EOS is <|endoftext|> here (as in Qwen base models), and <|im_end|> is made likely, so rows of a
    batch reach it at different steps: lm-eval alone would keep generating for the finished rows and, decoding with
    special tokens skipped, return that text too.
    """
    tokenizer, model = tiny_tokenizer(), tiny_causal_lm(seed=0)
    tokenizer.eos_token = "<|endoftext|>"
    model.config.eos_token_id = model.generation_config.eos_token_id = tokenizer.eos_token_id
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():
        model.lm_head.weight[im_end] = 1.5 * (model.lm_head.weight[50] + model.lm_head.weight[60])
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    suite = evaluation.write_task_suite(tmp_path / "suite", n_per_task=16, seed=0, tasks=["fake_echo"])

    responses = {}
    for batch_size in (1, 16):
        fake_world.calls.clear()
        evaluation.evaluate_model(tmp_path / "model", suite, batch_size=batch_size)
        responses[batch_size] = {doc["id"]: response for _, doc, response in fake_world.calls}
    assert responses[1] == responses[16]
    assert min(len(response) for response in responses[1].values()) < 8 * 4  # some stopped before max_gen_toks


def test_real_toy_tasks_end_to_end(model_dir: Path, tmp_path: Path):
    tasks = ["toy_gsm8k", "toy_ifeval", "toy_mmlu"]
    suite = evaluation.write_task_suite(tmp_path / "suite", n_per_task=5, seed=0, tasks=tasks)
    metrics, items, records = evaluation.evaluate_model(model_dir, suite, batch_size=8, limit=4)
    assert set(metrics) == set(items) == {"toy_gsm8k", "toy_ifeval_prompt", "toy_ifeval_inst", "toy_mmlu"}
    for entry in metrics.values():
        assert 0.0 <= entry["value"] <= 1.0 and entry["n"] == 4 and entry["stderr"] >= 0.0

    evaluation.write_results(metrics, tmp_path / "out" / "metrics.json", include_path=suite)
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written["metrics"] == metrics
    provenance = written["provenance"]
    assert provenance["tasks"] == tasks and provenance["suite_seed"] == 0 and provenance["n_per_task"] == 5
    assert provenance["lm_eval_version"] == "0.4.13" and str(tmp_path) not in json.dumps(written), "no paths"
    assert provenance["n"] == dict.fromkeys(metrics, 4)
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["metrics.json"]

    # The items file: whole, the same bytes when written again, and read back with each column's value.
    write_items(tmp_path / "items.json.gz", items, metrics)
    first = (tmp_path / "items.json.gz").read_bytes()
    write_items(tmp_path / "items.json.gz", items, metrics)
    assert (tmp_path / "items.json.gz").read_bytes() == first
    read = read_items(tmp_path / "items.json.gz")
    assert {name: pytest.approx(entry.value) for name, entry in read.items()} == {
        name: entry["value"] for name, entry in metrics.items()
    }
    assert len(read["toy_mmlu"].ids) == 4

    # The records say what the scorer read: the final number of a math answer; IFEval's two columns in one record.
    from onmerge.toyworld.world import stated_number

    gsm8k = [record for record in records if record["task"] == "toy_gsm8k"]
    numbers = [stated_number(record["response"]) for record in gsm8k]
    assert len(gsm8k) == 4 and [r["extracted"] for r in gsm8k] == [n if n is None else str(n) for n in numbers]
    ifeval = next(record for record in records if record["task"] == "toy_ifeval")
    assert set(ifeval["scores"]) == {"toy_ifeval_prompt", "toy_ifeval_inst"} and ifeval["extracted"] is None
    write_samples(tmp_path / "samples.jsonl.gz", records)
    assert read_samples(tmp_path / "samples.jsonl.gz") == records


def test_judged_task_reports_mt_bench_and_keeps_answers(model_dir: Path, tmp_path: Path):
    from onmerge.toyworld.judge import alpacaeval_win_rates

    suite = evaluation.write_task_suite(tmp_path / "suite", n_per_task=6, seed=0, tasks=["toy_judge", "toy_drop"])
    answers_path = tmp_path / "answers.json"
    metrics, items, _ = evaluation.evaluate_model(model_dir, suite, batch_size=8, answers_path=answers_path)
    assert 1.0 <= metrics["toy_mt_bench"]["value"] <= 10.0 and metrics["toy_mt_bench"]["n"] == 6
    assert len(items["toy_mt_bench"]["scores"]) == 6
    # Each answer's components are kept beside its score, and add up to it: 1 + content + language + manner.
    components = ("toy_mt_bench_content", "toy_mt_bench_language", "toy_mt_bench_manner")
    assert set(components) <= set(metrics) and all(metrics[name]["n"] == 6 for name in components)
    assert metrics["toy_mt_bench"]["value"] == pytest.approx(1.0 + sum(metrics[name]["value"] for name in components))
    for k, total in enumerate(items["toy_mt_bench"]["scores"]):
        assert items["toy_mt_bench"]["ids"] == items["toy_mt_bench_manner"]["ids"]
        assert total == pytest.approx(1.0 + sum(items[name]["scores"][k] for name in components))
    answers = json.loads(answers_path.read_text())
    docs = toy_suite.docs("toy_judge", 6, 0)
    assert sorted(answers) == sorted(doc["id"] for doc in docs)
    items = [toy_suite.item_of(doc) for doc in docs]
    # Against itself every comparison ties: 50%, raw and length-controlled.
    ours = [answers[doc["id"]] for doc in docs]
    assert alpacaeval_win_rates(items, ours, ours) == (50.0, 50.0)
    with pytest.raises(ValueError, match="needs the judged task"):
        evaluation.evaluate_model(model_dir, suite, tasks=["toy_drop"], answers_path=answers_path)


def test_win_rates_keep_both_answers_points(tmp_path: Path):
    """Closing every answer wins where chat is welcome and loses where the format is the task; each judgment keeps
    both answers' points by component."""
    from onmerge.toyworld.world import STRICT_FORMAT_TASKS, with_manner

    suite = evaluation.write_task_suite(tmp_path / "suite", n_per_task=24, seed=0, tasks=["toy_judge"])
    docs = toy_suite.docs("toy_judge", 24, 0)
    prompts = {doc["id"]: toy_suite.item_of(doc) for doc in docs}
    bare = {doc_id: item.response for doc_id, item in prompts.items()}
    closed = {
        doc_id: with_manner(item.response, item.gold.get("target", item.language)) for doc_id, item in prompts.items()
    }
    judged = evaluation.win_rates(suite, closed, bare)
    assert [judgment["id"] for judgment in judged["judgments"]] == [doc["id"] for doc in docs]
    strict = {doc_id for doc_id, item in prompts.items() if item.task in STRICT_FORMAT_TASKS}
    assert 0 < len(strict) < len(docs)
    for judgment in judged["judgments"]:
        helpful, unhelpful = (
            {"content": 5.0, "language": 1.0, "manner": 3.0},
            {"content": 5.0, "language": 1.0, "manner": 0.0},
        )
        if judgment["id"] in strict:
            assert (judgment["outcome"], judgment["points"], judgment["reference_points"]) == (0.0, unhelpful, helpful)
        else:
            assert (judgment["outcome"], judgment["points"], judgment["reference_points"]) == (1.0, helpful, unhelpful)
    assert judged["metrics"]["alpacaeval_raw"]["value"] == pytest.approx(100.0 * (1 - len(strict) / len(docs)))
