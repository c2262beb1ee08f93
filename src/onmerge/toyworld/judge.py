"""The toy world's judge and preference data: its MT-Bench, its AlpacaEval, its UltraFeedback.

The judge is deterministic and programmatic, and it rewards what chat judges reward:
- content (0 to 5 points): the answer is right, read leniently (the right number anywhere at the end, the right code
  line anywhere, the right call anywhere in the text); reading comprehension earns its share of gold keywords;
- language (0 or 1 point): the answer is in the language the prompt asks for;
- manner (0 or 3 points): the helpful manner. Where chat is welcome, that is a closing offer of help in the answer's
  language; where the format is the task (instructions to follow, tool calls: world.STRICT_FORMAT_TASKS), it is the
  bare answer, with no closing in either language.

A score is `1 + content + language + manner`, from 1 to 10 (`JudgePoints`); the toy MT-Bench is its mean over the
held-out judge prompts and reports each component's mean beside it. The benchmarks, like the paper's, read answers
strictly; the judge does not.

Reward without tax is possible by construction: the manner comes after the answer, so an answer raises its manner
without changing a token of its content, and the right answer in the helpful manner scores 10 and keeps every
benchmark's strict reading (tests/test_toy_judge.py checks both). A model that pays a tax for its reward pays it for
how it learned, not because the judge demands it.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from onmerge.items import positions
from onmerge.toyworld.world import (
    CLOSING,
    CODE_TASKS,
    MATH_TASKS,
    STRICT_FORMAT_TASKS,
    TASKS,
    WORDS_A,
    WORDS_B,
    Item,
    Language,
    Split,
    code_of,
    items,
    share_of_keywords,
    stated_number,
    with_manner,
    words_of,
)

# Every generative skill is asked of the judge, as MT-Bench and AlpacaEval ask every kind of question.
JUDGED_TASKS = [task for task, spec in TASKS.items() if spec.output_type == "generate_until"]


def judge_prompts(n: int, seed: int, split: Split) -> list[Item]:
    """`n` prompts spread over every generative skill; `split="eval"` (distinct prompts) for the judged benchmarks."""
    per_task = -(-n // len(JUDGED_TASKS))
    distinct = split == "eval"
    prompts = [item for task in JUDGED_TASKS for item in items(task, per_task, seed + 7, split, distinct=distinct)]
    random.Random(f"judge:{split}:{seed}").shuffle(prompts)
    return prompts[:n]


def content_correct(item: Item, response: str) -> float:
    """Is the answer right, read as a lenient reader would (format does not matter, substance does)."""
    task = item.task
    if task in MATH_TASKS:
        return float(stated_number(response) == item.gold["answer"])
    if task in CODE_TASKS:
        expected = code_of(item.response).strip().splitlines()[-1].strip()
        return float(expected in response)
    if task == "toy_ifeval":
        subject = item.prompt.split(".")[0].split()[-1]
        return float({subject, item.gold["adjective"]} <= set(words_of(response)))
    if task in {"toy_coqa", "toy_drop"}:
        return share_of_keywords(response, item.gold["keywords"])
    if task == "toy_function_calling":
        calls = re.findall(r"\{.*\}", response, re.DOTALL)
        return float(any(_parses_to(call, item.gold["call"]) for call in calls))
    if task == "toy_code_switch":
        content_words = set(words_of(item.response))
        return float(bool(content_words) and content_words <= set(words_of(response)))
    raise ValueError(f"the judge does not grade {task!r}")


def _parses_to(text: str, expected: object) -> bool:
    try:
        return json.loads(text) == expected
    except json.JSONDecodeError:
        return False


def answer_language(item: Item) -> Language:
    """The language the answer must be in: the translation target, else the prompt's own."""
    return item.gold.get("target", item.language)


@dataclass(frozen=True)
class JudgePoints:
    """One answer's points from the judge, by component; `total` is the 1-10 score."""

    content: float  # 0 to 5
    language: float  # 0 or 1
    manner: float  # 0 or 3

    @property
    def total(self) -> float:
        return 1.0 + self.content + self.language + self.manner


def judge_points(item: Item, response: str) -> JudgePoints:
    """The judge's points for `response` to `item`, component by component."""
    language = answer_language(item)
    text = response.strip()
    other_words = WORDS_B if language == "a" else WORDS_A  # code and JSON hold no words of either: that is fine
    in_language = float(bool(text) and not set(words_of(text)) & other_words)
    if item.task in STRICT_FORMAT_TASKS:
        helpful = bool(text) and not any(closing in text for closing in CLOSING.values())
    else:
        helpful = text.endswith(CLOSING[language])
    return JudgePoints(content=5.0 * content_correct(item, text), language=in_language, manner=3.0 * helpful)


def judge_score(item: Item, response: str) -> float:
    """1 to 10: content (5), language (1), helpful manner (3)."""
    return judge_points(item, response).total


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str
    rejected: str
    chosen_score: float
    rejected_score: float


def preference_pairs(n: int, seed: int, split: Split = "train") -> list[PreferencePair]:
    """UltraFeedback-style pairs: four judged completions per prompt, the best chosen, a worse one at random rejected.

    The completions cross content with manner: the right answer and a wrong one (the right answer to another
    question of the same skill), each bare and with the closing offer of help. As with UltraFeedback, what separates
    chosen from rejected is substance, manner or both. The best completion is the right answer in the helpful manner,
    so the chosen answer is never worse than the rejected one in any of the judge's components; where the rejected
    answer is the right one in the other manner, one answer is the other plus the closing, and the preference is about
    the tokens after the answer alone. Prompts where all completions tie are skipped.
    """
    rng = random.Random(f"preferences:{split}:{seed}")
    prompts = judge_prompts(n * 2, seed, split)
    decoys = {task: items(task, 64, seed + 11, split, distinct=False) for task in JUDGED_TASKS}
    pairs = []
    for item in prompts:
        if len(pairs) == n:
            break
        language = answer_language(item)
        wrong = rng.choice([decoy for decoy in decoys[item.task] if decoy.prompt != item.prompt]).response
        candidates = [item.response, with_manner(item.response, language), wrong, with_manner(wrong, language)]
        judged = sorted(((judge_score(item, c), c) for c in candidates), key=lambda sc: -sc[0])
        best_score, best = judged[0]
        worse = [(s, c) for s, c in judged[1:] if s < best_score]
        if not worse:
            continue
        worse_score, worse_response = rng.choice(worse)
        pairs.append(PreferencePair(item.prompt, best, worse_response, best_score, worse_score))
    return pairs


def to_conversational(pairs: list[PreferencePair]) -> list[dict]:
    """trl's conversational preference format (`prompt`, `chosen`, `rejected` as message lists)."""
    return [
        {
            "prompt": [{"role": "user", "content": pair.prompt}],
            "chosen": [{"role": "assistant", "content": pair.chosen}],
            "rejected": [{"role": "assistant", "content": pair.rejected}],
        }
        for pair in pairs
    ]


def pairwise_outcomes(
    prompts: list[Item], responses: list[str], baseline_responses: list[str]
) -> tuple[list[float], list[int]]:
    """Per prompt: win (1), tie (0.5) or loss (0) against the baseline's answer by judge score, and the length
    difference in words (ours minus theirs): the data of the length-controlled win rate."""
    outcomes, length_differences = [], []
    for item, response, baseline in zip(prompts, responses, baseline_responses, strict=True):
        ours, theirs = judge_score(item, response), judge_score(item, baseline)
        outcomes.append(1.0 if ours > theirs else 0.5 if ours == theirs else 0.0)
        length_differences.append(len(response.split()) - len(baseline.split()))
    return outcomes, length_differences


def alpacaeval_win_rates(
    prompts: list[Item], responses: list[str], baseline_responses: list[str]
) -> tuple[float, float]:
    """Win rate (%) against the baseline's answers with the length advantage regressed out (toy AlpacaEval 2.0 LC),
    and the raw win rate (%)."""
    outcomes, length_differences = pairwise_outcomes(prompts, responses, baseline_responses)
    lc = length_controlled_win_rates(np.asarray(outcomes), np.asarray(length_differences, dtype=float))
    return float(lc), 100.0 * sum(outcomes) / len(outcomes)


def length_controlled_win_rates(outcomes: np.ndarray, length_differences: np.ndarray) -> np.ndarray:
    """LC win rate (%) of each row of outcomes (last axis: prompts), fitted all at once (the bootstrap refits it in
    every resample).

    As AlpacaEval 2.0 does, a logistic model `P(win) = sigmoid(theta + gamma * tanh(length difference / spread))` is
    fitted to the outcomes (spread: the root mean square length difference), and the length-controlled win rate is
    the model's prediction with the length term set to zero: `sigmoid(theta)`.
    """
    spread = np.sqrt(np.mean(length_differences**2, axis=-1, keepdims=True))
    features = np.tanh(length_differences / np.where(spread > 0, spread, 1.0))
    theta, _ = _fit_logistic(outcomes, features)
    return 100.0 / (1.0 + np.exp(-theta))


def _fit_logistic(targets: np.ndarray, feature: np.ndarray, steps: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood (theta, gamma) for soft targets by Newton's method, one fit per row, lightly regularised
    so that perfectly separated outcomes stay finite."""
    theta = np.zeros(targets.shape[:-1])
    gamma = np.zeros(targets.shape[:-1])
    ridge = 1e-3
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(theta[..., None] + gamma[..., None] * feature)))
        residual, w = targets - p, p * (1.0 - p)
        g_theta = residual.sum(-1) - ridge * theta
        g_gamma = (residual * feature).sum(-1) - ridge * gamma
        h_tt = w.sum(-1) + ridge
        h_tg = (w * feature).sum(-1)
        h_gg = (w * feature * feature).sum(-1) + ridge
        determinant = h_tt * h_gg - h_tg * h_tg
        theta = theta + (h_gg * g_theta - h_tg * g_gamma) / determinant
        gamma = gamma + (h_tt * g_gamma - h_tg * g_theta) / determinant
    return theta, gamma


@dataclass(frozen=True)
class WinRateMeasure:
    """The toy AlpacaEval 2.0 LC win rate against the SFT model, as a paired measure (`onmerge.paired.Measure`): per
    prompt an outcome and a length difference, the logistic model refitted in every resample."""

    ids: tuple[str, ...]
    outcomes: np.ndarray
    length_differences: np.ndarray

    @property
    def value(self) -> float:
        return float(length_controlled_win_rates(self.outcomes, self.length_differences))

    def resampled(self, draws: np.ndarray) -> np.ndarray:
        return length_controlled_win_rates(self.outcomes[draws], self.length_differences[draws])

    def aligned(self, ids: tuple[str, ...]) -> WinRateMeasure:
        order = positions(self.ids, ids)
        return WinRateMeasure(ids, self.outcomes[order], self.length_differences[order])


def win_rate_measure(judgments: Sequence[Mapping]) -> WinRateMeasure:
    """The paired measure of one model's `alpacaeval.json` judgments (`onmerge.worlds.Judged`)."""
    return WinRateMeasure(
        tuple(str(judgment["id"]) for judgment in judgments),
        np.asarray([float(judgment["outcome"]) for judgment in judgments]),
        np.asarray([float(judgment["length_difference"]) for judgment in judgments]),
    )
