"""The toy world's items and scorers: gold answers pass, wrong ones fail, held-out items stay held out."""

import json

import pytest

from onmerge.aggregate import PAPER_COLUMNS
from onmerge.toyworld import world
from onmerge.toyworld.world import (
    PAPER_METRICS,
    TASKS,
    WORDS_A,
    benchmark_docs,
    items,
    language_of,
    pretraining_documents,
    score,
    sft_conversations,
    translate,
)

GENERATIVE = [task for task, spec in TASKS.items() if spec.output_type == "generate_until"]


def test_fourteen_columns_in_seven_categories():
    columns = [column for spec in TASKS.values() for column in spec.columns]
    assert sorted(PAPER_METRICS[column] for column in columns) == sorted(PAPER_COLUMNS)
    assert len(columns) == 14


@pytest.mark.parametrize("task", GENERATIVE)
def test_gold_answers_score_full_marks(task):
    for item in items(task, 12, seed=3, split="eval"):
        doc = {"prompt": item.prompt, **item.gold}
        assert set(score(task, doc, item.response).values()) == {1.0}, (item.prompt, item.response)


@pytest.mark.parametrize(
    "task, wrong",
    [
        (
            "toy_gsm8k",
            lambda item: item.response.replace(f"is {item.gold['answer']}.", f"is {item.gold['answer'] + 1}."),
        ),
        ("toy_math401", lambda item: "the answer is 100000."),
        ("toy_humaneval", lambda item: item.response.replace("return ", "return 1 + ")),
        ("toy_mbpp", lambda item: "```python\ndef f(a, b):\n    return a\n```"),
        ("toy_ifeval", lambda item: "sure! " + item.response + " hope this helps!"),
        ("toy_coqa", lambda item: "i do not know."),
        ("toy_function_calling", lambda item: "sure! " + item.response),
        (
            "toy_code_switch",
            lambda item: item.response + " " + translate(item.response, "a" if item.language == "b" else "b"),
        ),
    ],
)
def test_wrong_answers_lose_marks(task, wrong):
    # Some instructions survive chatty wrapping ("do not use commas"), so the check is on the average.
    lowest = [
        min(score(task, {"prompt": item.prompt, **item.gold}, wrong(item)).values())
        for item in items(task, 12, seed=4, split="eval")
    ]
    assert sum(lowest) / len(lowest) <= 0.5, lowest


def test_function_calls_must_be_exact_json():
    item = items("toy_function_calling", 1, seed=0, split="eval")[0]
    doc = {"prompt": item.prompt, **item.gold}
    assert score("toy_function_calling", doc, f"<tool_call>{item.response}</tool_call>")["toy_function_calling"] == 1
    changed = json.loads(item.response)
    changed["name"] = "other"
    assert score("toy_function_calling", doc, json.dumps(changed))["toy_function_calling"] == 0


def test_knowledge_choices_hold_the_fact():
    for doc in benchmark_docs("toy_mmlu", 40, seed=0):
        assert len(doc["choices"]) == 4 and len(set(doc["choices"])) == 4
        country = doc["prompt"].rstrip("?").split()[-1]
        facts = next(world.fact_sentences(c) for c in world.KNOWLEDGE if c.name == country)
        assert doc["choices"][doc["answer"]] in facts


def test_language_b_renderings_are_pure():
    for task in ("toy_math23k", "toy_code_switch"):
        for item in items(task, 30, seed=1, split="train"):
            if item.language == "b":
                assert language_of(item.response) == "b", item.response
            if task == "toy_math23k":
                assert language_of(item.prompt) == "b", item.prompt
    assert not set(world.LEXICON_B.values()) & (WORDS_A | world.SHARED_WORDS)


def test_held_out_documents_never_appear_in_training_data():
    training_text = "\n".join(pretraining_documents(1500, seed=0))
    sft_prompts = {conversation[0]["content"] for conversation in sft_conversations(3000, seed=0)}
    for task in TASKS:
        for doc in benchmark_docs(task, 40, seed=0):
            assert doc["prompt"] not in sft_prompts, doc["prompt"]
            assert doc["prompt"] not in training_text, doc["prompt"]


def test_sft_manner_is_a_closing_after_the_answer_where_chat_is_welcome():
    """The world's manner follows the answer (nothing is said before it) and never wraps a tool call."""
    closings = {"hope this helps!", translate("hope this helps!", "b")}
    closed = 0
    for prompt, answer in ((turn["content"] for turn in chat) for chat in sft_conversations(1300, seed=0)):
        if any(answer.endswith(" " + closing) for closing in closings):
            closed += 1
            assert not prompt.startswith("you can call these functions"), answer
        assert not answer.startswith(("sure!", translate("sure!", "b"))), answer
    assert 0.1 < closed / 1300 < 0.25  # world.SFT_MANNER_RATE of the 11 chat skills in 13


def test_everything_is_deterministic_from_seeds():
    assert benchmark_docs("toy_gsm8k", 10, seed=5) == benchmark_docs("toy_gsm8k", 10, seed=5)
    assert benchmark_docs("toy_gsm8k", 10, seed=5) != benchmark_docs("toy_gsm8k", 10, seed=6)
    assert pretraining_documents(50, seed=2) == pretraining_documents(50, seed=2)
    assert sft_conversations(50, seed=2) == sft_conversations(50, seed=2)


def test_unknown_task_is_named():
    with pytest.raises(ValueError, match="unknown toy task 'toy_nope'"):
        benchmark_docs("toy_nope", 3)
