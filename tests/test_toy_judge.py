"""The toy judge (MT-Bench / AlpacaEval analogues) and the preference data built with it."""

import pytest

from onmerge import preferences
from onmerge.toyworld import judge
from onmerge.toyworld.judge import (
    answer_language,
    judge_prompts,
    judge_score,
    length_controlled_win_rate,
    preference_pairs,
    to_conversational,
)
from onmerge.toyworld.world import benchmark_docs, items, with_manner


@pytest.fixture(scope="module")
def held_out():
    return judge_prompts(60, seed=0, split="eval")


def test_score_components(held_out):
    for item in held_out:
        language = answer_language(item)
        assert judge_score(item, item.response) == 7.0  # right, in language, plain
        assert judge_score(item, with_manner(item.response, language)) == 10.0
        assert judge_score(item, with_manner(item.response, language, closing=False)) == 8.5
        assert judge_score(item, "") == 1.0


def test_wrong_answers_score_low(held_out):
    other = {item.task: item for item in items("toy_gsm8k", 1, seed=9, split="eval")}
    item = next(i for i in held_out if i.task == "toy_gsm8k")
    assert judge_score(item, other["toy_gsm8k"].response) <= 2.0


def test_judge_reads_leniently_where_benchmarks_are_strict(held_out):
    item = next(i for i in held_out if i.task == "toy_function_calling")
    chatty = with_manner(item.response, "a")
    assert judge.content_correct(item, chatty) == 1.0
    from onmerge.toyworld.world import score

    assert score(item.task, {"prompt": item.prompt, **item.gold}, chatty)["toy_function_calling"] == 0.0


def test_length_control_discounts_wins_bought_with_length(held_out):
    plain = [item.response for item in held_out]
    styled = [with_manner(item.response, answer_language(item)) for item in held_out]
    assert length_controlled_win_rate(held_out, plain, plain) == (50.0, 50.0)
    # Styling every other answer wins only where it is longer: the length term explains all of it.
    half = [s if k % 2 else p for k, (s, p) in enumerate(zip(styled, plain, strict=True))]
    lc, raw = length_controlled_win_rate(held_out, half, plain)
    assert raw == 75.0 and lc == pytest.approx(50.0, abs=1.0)
    lc, raw = length_controlled_win_rate(held_out, plain, styled)
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


def test_preference_prompts_never_hold_held_out_items():
    held_out_prompts = {doc["prompt"] for task in judge.JUDGED_TASKS for doc in benchmark_docs(task, 40, seed=0)}
    held_out_prompts |= {item.prompt for item in judge_prompts(80, seed=0, split="eval")}
    assert not {pair.prompt for pair in preference_pairs(1500, seed=0)} & held_out_prompts
