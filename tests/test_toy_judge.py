"""The toy judge (MT-Bench / AlpacaEval analogues) and the preference data built with it."""

import re

import pytest
from tokenizers import Regex, pre_tokenizers
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX as QWEN2_SPLIT_REGEX

from onmerge import preferences
from onmerge.toyworld import judge
from onmerge.toyworld.judge import (
    JudgePoints,
    alpacaeval_win_rates,
    answer_language,
    judge_points,
    judge_prompts,
    judge_score,
    preference_pairs,
    to_conversational,
)
from onmerge.toyworld.models import LLAMA3_SPLIT_REGEX
from onmerge.toyworld.world import STRICT_FORMAT_TASKS, TASKS, benchmark_docs, items, score, with_manner

GENERATIVE = [task for task, spec in TASKS.items() if spec.output_type == "generate_until"]
CLOSING_A, CLOSING_B = "hope this helps!", "moginu zevigo vele!"  # language B's words, read off the lexicon


@pytest.fixture(scope="module")
def held_out():
    return judge_prompts(60, seed=0, split="eval")


def _item(task, **gold_changes):
    item = items(task, 1, seed=0, split="eval")[0]
    return item if not gold_changes else type(item)(**{**item.__dict__, "gold": {**item.gold, **gold_changes}})


def test_points_by_hand():
    math = _item("toy_gsm8k")
    answer = math.gold["answer"]
    assert judge_points(math, f"the answer is {answer}. {CLOSING_A}") == JudgePoints(5.0, 1.0, 3.0)
    assert judge_points(math, f"the answer is {answer + 1}.") == JudgePoints(0.0, 1.0, 0.0)
    assert judge_score(math, f"the answer is {answer + 1}.") == 2.0
    # A language-B answer closed in language A: right, but mixed, and the closing is not in the answer's language.
    math_b = _item("toy_math23k")
    assert judge_points(math_b, f"{math_b.response} {CLOSING_A}") == JudgePoints(5.0, 0.0, 0.0)
    assert judge_points(math_b, f"{math_b.response} {CLOSING_B}") == JudgePoints(5.0, 1.0, 3.0)
    # Reading comprehension earns its share of the gold keywords.
    coqa = _item("toy_coqa", keywords=["red", "cat"])
    assert judge_points(coqa, "tom has a red dog.").content == 2.5
    # Where the format is the task, the bare answer is the helpful manner and a closing costs it.
    call = _item("toy_function_calling")
    assert judge_points(call, call.response) == JudgePoints(5.0, 1.0, 3.0)
    assert judge_points(call, f"{call.response} {CLOSING_A}") == JudgePoints(5.0, 1.0, 0.0)
    assert judge_points(call, "") == JudgePoints(0.0, 0.0, 0.0) and judge_score(call, "") == 1.0


def test_score_components(held_out):
    for item in held_out:
        language = answer_language(item)
        plain, closed = judge_points(item, item.response), judge_points(item, with_manner(item.response, language))
        if item.task in STRICT_FORMAT_TASKS:
            assert (plain, closed) == (JudgePoints(5.0, 1.0, 3.0), JudgePoints(5.0, 1.0, 0.0)), item
        else:
            assert (plain, closed) == (JudgePoints(5.0, 1.0, 0.0), JudgePoints(5.0, 1.0, 3.0)), item
        assert judge_score(item, "") == 1.0
    assert {item.task for item in held_out} == set(judge.JUDGED_TASKS)


def _helpful(item):
    """The right answer in the helpful manner, written from the judge's rule: closed in the answer's language, unless
    the format is the task."""
    if item.task in STRICT_FORMAT_TASKS:
        return item.response
    return f"{item.response} {CLOSING_A if answer_language(item) == 'a' else CLOSING_B}"


@pytest.mark.parametrize("task", GENERATIVE)
def test_reward_without_tax_is_possible(task, held_out):
    """The right answer in the helpful manner scores the judge's maximum, and every benchmark reads it as right."""
    for item in [i for i in held_out if i.task == task]:
        assert judge_score(item, _helpful(item)) == 10.0, _helpful(item)
    for item in items(task, 6, seed=3, split="eval"):
        helpful = _helpful(item)
        assert set(score(task, {"prompt": item.prompt, **item.gold}, helpful).values()) == {1.0}, helpful


def test_wrong_answers_score_low(held_out):
    other = {item.task: item for item in items("toy_gsm8k", 1, seed=9, split="eval")}
    item = next(i for i in held_out if i.task == "toy_gsm8k")
    assert judge_score(item, other["toy_gsm8k"].response) <= 2.0


def test_judge_reads_leniently_where_benchmarks_are_strict(held_out):
    item = next(i for i in held_out if i.task == "toy_function_calling")
    wrapped = f"here it is: {item.response}"
    assert judge.content_correct(item, wrapped) == 1.0
    assert score(item.task, {"prompt": item.prompt, **item.gold}, wrapped)["toy_function_calling"] == 0.0


def test_length_control_discounts_wins_bought_with_length(held_out):
    chat = [item for item in held_out if item.task not in STRICT_FORMAT_TASKS]
    plain = [item.response for item in chat]
    styled = [with_manner(item.response, answer_language(item)) for item in chat]
    assert alpacaeval_win_rates(chat, plain, plain) == (50.0, 50.0)
    # Styling every other answer wins only where it is longer: the length term explains all of it.
    half = [s if k % 2 else p for k, (s, p) in enumerate(zip(styled, plain, strict=True))]
    lc, raw = alpacaeval_win_rates(chat, half, plain)
    assert raw == pytest.approx(100.0 * (len(chat) // 2 + 0.5 * (len(chat) - len(chat) // 2)) / len(chat))
    assert lc == pytest.approx(50.0, abs=1.0)
    lc, raw = alpacaeval_win_rates(chat, plain, styled)
    assert raw == 0.0 and lc < 5.0


def test_preference_pairs_prefer_the_judges_choice():
    pairs = preference_pairs(300, seed=0)
    assert len(pairs) == 300
    assert all(pair.chosen_score > pair.rejected_score for pair in pairs)
    assert pairs == preference_pairs(300, seed=0)
    conversational = to_conversational(pairs[:5])
    assert conversational[0]["chosen"][0]["role"] == "assistant"
    unpaired = preferences.unpaired(conversational)
    assert [row["label"] for row in unpaired[:2]] == [True, False]


def _pieces(regex: str, text: str) -> list[str]:
    split = pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False)
    return [piece for piece, _ in split.pre_tokenize_str(text)]


def test_preference_pairs_never_trade_content_for_manner():
    """Chosen answers are the right answer in the helpful manner, never worse than the rejected one in any component;
    where the rejected answer is the right one in the other manner, the two answers share the answer's tokens (both
    toy tokenizers' pre-tokenisation splits them identically), so the preference is about the closing alone."""
    by_prompt = {}  # training prompts may repeat, and a repeated open question may have another gold answer
    for item in judge_prompts(600, seed=0, split="train"):
        by_prompt.setdefault(item.prompt, []).append(item)
    kinds = {"manner only": 0, "content only": 0, "both": 0}
    for pair in preference_pairs(300, seed=0):
        bare = [re.sub(r" (hope this helps!|moginu zevigo vele!)$", "", text) for text in (pair.chosen, pair.rejected)]
        item = next(item for item in by_prompt[pair.prompt] if item.response == bare[0])
        chosen, rejected = judge_points(item, pair.chosen), judge_points(item, pair.rejected)
        assert chosen == JudgePoints(5.0, 1.0, 3.0) and pair.chosen_score == 10.0
        assert rejected.content <= chosen.content and rejected.language <= chosen.language
        assert rejected.manner <= chosen.manner
        if bare[1] == item.response:
            kinds["manner only"] += 1
            shorter, longer = sorted((pair.chosen, pair.rejected), key=len)
            for regex in (QWEN2_SPLIT_REGEX, LLAMA3_SPLIT_REGEX):
                prefix = _pieces(regex, shorter)
                assert _pieces(regex, longer)[: len(prefix)] == prefix, (shorter, longer)
        else:
            kinds["content only" if chosen.manner == rejected.manner else "both"] += 1
    assert min(kinds.values()) >= 60, kinds  # each kind of preference is about a third of the pairs


def test_preference_prompts_never_hold_held_out_items():
    held_out_prompts = {doc["prompt"] for task in judge.JUDGED_TASKS for doc in benchmark_docs(task, 40, seed=0)}
    held_out_prompts |= {item.prompt for item in judge_prompts(80, seed=0, split="eval")}
    assert not {pair.prompt for pair in preference_pairs(1500, seed=0)} & held_out_prompts
