r"""MT-Bench: 80 two-turn questions, each turn graded 1-10 by a judge model, as FastChat's `llm_judge` grades them.

Single-answer grading (FastChat's `gen_judgment.py --mode single`): turn 1 with `single-v1`, turn 2 with
`single-v1-multi-turn` (the whole conversation, judged on the second answer); math, reasoning and coding questions
with the reference-guided `single-math-v1` and `single-math-v1-multi-turn`. The judge is asked at temperature 0 with
up to 2048 tokens; the rating is read as FastChat's `run_judge_single` reads it: the first `[[x]]`
(`\[\[(\d+\.?\d*)\]\]`), else the first `[x]` (`\[(\d+\.?\d*)\]`), evaluated with `ast.literal_eval`. A judgment
is unscorable when it holds no such rating, when `literal_eval` rejects it (`[[08]]`: a leading zero; FastChat
crashes there), when the rating is outside 1..10 (FastChat would average it in; the scale is 1..10), when it was cut
short (`finish_reason` "length") or has null content. An unscorable judgment is never cached; it is asked again
(`ChatClient.scoring_attempts`, 3 by default) and then recorded as failed with the reason: left out of the means and
counted in the provenance, never scored 0 (FastChat drops its -1 the same way).

Reference answers: FastChat grades against GPT-4's answers in `reference_answer/gpt-4.jsonl` (`--references`);
without that file the questions' own `reference` field is used.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onmerge.atomic import write_json
from onmerge.judges.endpoint import (
    ChatClient,
    JudgeEndpoint,
    Unscorable,
    answer_text,
    failure_summary,
    finished_content,
    judge_model,
)
from onmerge.judges.sources import SourceText, full_set_or_subset, read_answers, read_records
from onmerge.progress import Progress

if TYPE_CHECKING:
    from onmerge.paired import MeanMeasure

JUDGE_MODEL = "gpt-4"  # the paper's MT-Bench judge (FastChat's default)
QUESTION_COUNT = 80
TURNS = 2
NEED_REFERENCE = frozenset({"math", "reasoning", "coding"})  # FastChat's NEED_REF_CATS
JUDGE_PARAMETERS = {"temperature": 0, "max_tokens": 2048, "n": 1}  # FastChat's chat_compeletion_openai
_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


@dataclasses.dataclass(frozen=True)
class JudgePrompt:
    system: str
    template: str


# FastChat's fastchat/llm_judge/data/judge_prompts.jsonl, the four single-answer grading prompts, verbatim.
JUDGE_PROMPTS: dict[str, JudgePrompt] = {
    "single-v1": JudgePrompt(
        system="You are a helpful assistant.",
        template=(
            "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response "
            "provided by an AI assistant to the user question displayed below. Your evaluation should "
            "consider factors such as the helpfulness, relevance, accuracy, depth, creativity, and level "
            "of detail of the response. Begin your evaluation by providing a short explanation. Be as "
            "objective as possible. After providing your explanation, you must rate the response on a "
            'scale of 1 to 10 by strictly following this format: "[[rating]]", for example: "Rating: '
            "[[5]]\".\n\n[Question]\n{question}\n\n[The Start of Assistant's Answer]\n{answer}\n[The End "
            "of Assistant's Answer]"
        ),
    ),
    "single-math-v1": JudgePrompt(
        system="You are a helpful assistant.",
        template=(
            "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response "
            "provided by an AI assistant to the user question displayed below. Your evaluation should "
            "consider correctness and helpfulness. You will be given a reference answer and the "
            "assistant's answer. Begin your evaluation by comparing the assistant's answer with the "
            "reference answer. Identify and correct any mistakes. Be as objective as possible. After "
            "providing your explanation, you must rate the response on a scale of 1 to 10 by strictly "
            'following this format: "[[rating]]", for example: "Rating: [[5]]".\n\n[Question]\n'
            "{question}\n\n[The Start of Reference Answer]\n{ref_answer_1}\n[The End of Reference "
            "Answer]\n\n[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"
        ),
    ),
    "single-v1-multi-turn": JudgePrompt(
        system=(
            "Please act as an impartial judge and evaluate the quality of the response provided by an AI "
            "assistant to the user question displayed below. Your evaluation should consider factors such "
            "as the helpfulness, relevance, accuracy, depth, creativity, and level of detail of the "
            "response. You evaluation should focus on the assistant's answer to the second user question. "
            "Begin your evaluation by providing a short explanation. Be as objective as possible. After "
            "providing your explanation, you must rate the response on a scale of 1 to 10 by strictly "
            'following this format: "[[rating]]", for example: "Rating: [[5]]".\n\n'
        ),
        template=(
            "<|The Start of Assistant A's Conversation with User|>\n\n### User:\n{question_1}\n\n### "
            "Assistant A:\n{answer_1}\n\n### User:\n{question_2}\n\n### Assistant A:\n{answer_2}\n\n<|The "
            "End of Assistant A's Conversation with User|>"
        ),
    ),
    "single-math-v1-multi-turn": JudgePrompt(
        system=(
            "Please act as an impartial judge and evaluate the quality of the response provided by an AI "
            "assistant to the user question. Your evaluation should consider correctness and helpfulness. "
            "You will be given a reference answer and the assistant's answer. You evaluation should focus "
            "on the assistant's answer to the second question. Begin your evaluation by comparing the "
            "assistant's answer with the reference answer. Identify and correct any mistakes. Be as "
            "objective as possible. After providing your explanation, you must rate the response on a "
            'scale of 1 to 10 by strictly following this format: "[[rating]]", for example: "Rating: '
            '[[5]]".\n\n'
        ),
        template=(
            "<|The Start of Reference Answer|>\n\n### User:\n{question_1}\n\n### Reference answer:\n"
            "{ref_answer_1}\n\n### User:\n{question_2}\n\n### Reference answer:\n{ref_answer_2}\n\n<|The "
            "End of Reference Answer|>\n\n\n<|The Start of Assistant A's Conversation with User|>\n\n### "
            "User:\n{question_1}\n\n### Assistant A:\n{answer_1}\n\n### User:\n{question_2}\n\n### "
            "Assistant A:\n{answer_2}\n\n<|The End of Assistant A's Conversation with User|>"
        ),
    ),
}
PROMPTS_SHA256 = hashlib.sha256(
    json.dumps({name: [prompt.system, prompt.template] for name, prompt in JUDGE_PROMPTS.items()}).encode()
).hexdigest()
PROMPT_VERSION = "FastChat llm_judge single-answer grading: single-v1, single-math-v1 and their -multi-turn"


@dataclasses.dataclass(frozen=True)
class Question:
    question_id: int | str
    category: str
    turns: tuple[str, ...]
    reference: tuple[str, ...] | None = None

    @property
    def needs_reference(self) -> bool:
        return self.category in NEED_REFERENCE


@dataclasses.dataclass(frozen=True)
class Judgment:
    """One turn's grading: the rating and the judge's text, or, when no attempt gave a rating, None and the reason."""

    question_id: int | str
    category: str
    turn: int
    prompt: str
    score: float | None
    judgment: str | None
    failed: bool = False
    reason: str | None = None


def parse_questions(records: Sequence[Mapping[str, Any]], where: str, limit: int | None = None) -> list[Question]:
    """Questions in FastChat's `question.jsonl` schema; exactly 80 with 2 turns, or the first `limit` of them."""
    questions = []
    for i, record in enumerate(records):
        row = f"{where} record {i}"
        question_id, category, turns = record.get("question_id"), record.get("category"), record.get("turns")
        if not isinstance(question_id, int | str) or isinstance(question_id, bool):
            raise ValueError(f"{row}: question_id must be an integer or a string, not {question_id!r}")
        if not isinstance(category, str) or not category:
            raise ValueError(f"{row} (question {question_id}): no category")
        if not _strings(turns, TURNS):
            raise ValueError(f"{row} (question {question_id}): turns must be {TURNS} strings")
        reference = record.get("reference")
        questions.append(Question(question_id, category, tuple(turns), _reference(reference)))
    ids = [question.question_id for question in questions]
    repeated = sorted({str(question_id) for question_id in ids if ids.count(question_id) > 1})
    if repeated:
        raise ValueError(f"{where}: question ids {repeated} appear more than once")
    return full_set_or_subset(questions, limit, QUESTION_COUNT, "questions", "MT-Bench", where)


def _strings(value: Any, count: int) -> bool:
    return isinstance(value, list) and len(value) == count and all(isinstance(item, str) for item in value)


def _reference(value: Any) -> tuple[str, ...] | None:
    """A reference usable for grading: both turns' reference answers as strings (FastChat reads both)."""
    return tuple(value) if _strings(value, TURNS) else None


def parse_references(records: Sequence[Mapping[str, Any]], where: str) -> dict[int | str, tuple[str, ...]]:
    """Reference answers in FastChat's model-answer schema (`reference_answer/gpt-4.jsonl`): question id -> turns."""
    references = {}
    for i, record in enumerate(records):
        try:
            turns = record["choices"][0]["turns"]
        except (KeyError, IndexError, TypeError):
            turns = None
        if "question_id" not in record or not _strings(turns, TURNS):
            raise ValueError(f"{where} record {i}: expected question_id and choices[0].turns ({TURNS} strings)")
        references[record["question_id"]] = tuple(turns)
    return references


def read_questions(source: str, limit: int | None = None) -> tuple[list[Question], SourceText]:
    """The questions of `source` (parse_questions) and the text read."""
    records, text = read_records(source)
    return parse_questions(records, text.source, limit), text


def load_questions(
    source: str, *, limit: int | None = None, references: str | None = None
) -> tuple[list[Question], dict[str, Any]]:
    """The questions (with the reference answers of math, reasoning and coding ones) and where they came from
    (sources named as SourceText names them: without credentials).

    ValueError names every question that needs a reference answer and has none.
    """
    questions, text = read_questions(source, limit)
    provenance: dict[str, Any] = {"questions": text.source, "questions_sha256": text.sha256}
    where = f"{text.source} (no --references given)"
    if references is not None:
        reference_records, reference_text = read_records(references)
        where = reference_text.source
        by_id = parse_references(reference_records, where)
        questions = [
            Question(q.question_id, q.category, q.turns, by_id.get(q.question_id)) if q.needs_reference else q
            for q in questions
        ]
        provenance |= {"references": where, "references_sha256": reference_text.sha256}
    else:
        provenance["references"] = "the questions' own reference field"
    lacking = [str(q.question_id) for q in questions if q.needs_reference and q.reference is None]
    if lacking:
        raise ValueError(
            f"questions {lacking} ({'/'.join(sorted(NEED_REFERENCE))}) need reference answers for both turns, "
            f"and {where} has none for them"
        )
    return questions, provenance


def answer_rows(questions: Sequence[Question], answers: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
    """The answers file's rows: each question's id, its turns (to check against at judging time), the answers."""
    return [
        {"question_id": q.question_id, "prompts": list(q.turns), "turns": list(turn_answers)}
        for q, turn_answers in zip(questions, answers, strict=True)
    ]


def answers_by_question(
    rows: Sequence[Mapping[str, Any]], questions: Sequence[Question], where: str
) -> dict[int | str, tuple[str, ...]]:
    """Question id -> the model's answers to both turns; ValueError if one is missing or was asked another question."""
    by_id = {row.get("question_id"): row for row in rows}
    missing = [str(q.question_id) for q in questions if q.question_id not in by_id]
    if missing:
        raise ValueError(f"{where} has no answers for questions {missing[:10]} (of {len(missing)} missing)")
    answers = {}
    for q in questions:
        row = by_id[q.question_id]
        if row.get("prompts") != list(q.turns):
            raise ValueError(f"{where}: the answers to question {q.question_id} were generated for other turns")
        if not _strings(row.get("turns"), TURNS):
            raise ValueError(f"{where}: question {q.question_id} needs {TURNS} answers as strings")
        answers[q.question_id] = tuple(row["turns"])
    return answers


def judge_request(question: Question, answers: Sequence[str], turn: int, model: str) -> tuple[str, dict[str, Any]]:
    """(FastChat prompt name, chat-completion request body) grading `turn` (1 or 2) of the model's answers."""
    multi_turn = "-multi-turn" if turn == 2 else ""
    name = ("single-math-v1" if question.needs_reference else "single-v1") + multi_turn
    if turn == 1:
        fields = {"question": question.turns[0], "answer": answers[0]}
    else:
        fields = {
            "question_1": question.turns[0],
            "question_2": question.turns[1],
            "answer_1": answers[0],
            "answer_2": answers[1],
        }
    if question.needs_reference:
        if question.reference is None:
            raise ValueError(f"question {question.question_id} ({question.category}) has no reference answers")
        fields |= {"ref_answer_1": question.reference[0], "ref_answer_2": question.reference[1]}
    prompt = JUDGE_PROMPTS[name]
    messages = [
        {"role": "system", "content": prompt.system},
        {"role": "user", "content": prompt.template.format(**fields)},
    ]
    return name, {"model": model, "messages": messages, **JUDGE_PARAMETERS}


def parse_rating(judgment: str) -> float:
    """The rating in `[[x]]` (else `[x]`), found and evaluated as FastChat finds and evaluates it; Unscorable when
    there is none, FastChat could not evaluate it, or it is outside the 1..10 scale."""
    match = _RATING.search(judgment) or _RATING_BACKUP.search(judgment)
    if match is None:
        raise Unscorable("no [[rating]] (nor [rating]) in the judgment")
    try:
        rating = float(ast.literal_eval(match.group(1)))
    except (SyntaxError, ValueError):
        raise Unscorable(f"the rating {match.group(0)} is no number FastChat reads (a leading zero?)") from None
    if not 1.0 <= rating <= 10.0:
        raise Unscorable(f"the rating {match.group(0)} is outside the 1..10 scale")
    return rating


def read_rating(response: Mapping[str, Any]) -> float:
    """The rating in a finished judgment (`parse_rating`); Unscorable when it was cut short or has no text."""
    return parse_rating(finished_content(response))


def grade(client: ChatClient, question: Question, answers: Sequence[str], turn: int, model: str) -> Judgment:
    """One turn graded (asked again while the judgment holds no rating, then recorded as failed)."""
    name, request = judge_request(question, answers, turn, model)
    judged = client.complete(request, read_rating)
    text = answer_text(judged.response)
    if judged.value is None:
        return Judgment(question.question_id, question.category, turn, name, None, text, True, judged.failure)
    return Judgment(question.question_id, question.category, turn, name, judged.value, text)


def judge_answers(
    client: ChatClient,
    questions: Sequence[Question],
    answers: Mapping[int | str, Sequence[str]],
    model: str,
    workers: int = 8,
) -> list[Judgment]:
    """Every turn of every question graded, `workers` requests at a time; the endpoint is checked first if any
    judgment is not cached yet, so a bad endpoint fails before any judging."""
    jobs = [(q, turn) for q in questions for turn in range(1, TURNS + 1)]
    requests = [judge_request(q, answers[q.question_id], turn, model)[1] for q, turn in jobs]
    if any(client.cached(request, read_rating) is None for request in requests):
        client.preflight(model)
    with Progress("judging", len(jobs), "turns") as progress, ThreadPoolExecutor(max_workers=workers) as pool:
        return list(
            pool.map(
                lambda job: progress.counted(grade(client, job[0], answers[job[0].question_id], job[1], model)), jobs
            )
        )


def mt_bench_metrics(judgments: Sequence[Judgment]) -> dict[str, dict[str, float]]:
    """`mt_bench` (mean of every rated turn; standard error clustered by question, as the two turns of a question
    are not independent) and `mt_bench_turn1`, `mt_bench_turn2` (plain standard errors), in the metrics layout."""
    rated = [j for j in judgments if not j.failed]
    if not rated:
        reasons = failure_summary([j.reason or "" for j in judgments])
        raise ValueError(f"every one of the {len(judgments)} judgments failed, so MT-Bench cannot be scored: {reasons}")
    mean = sum(j.score for j in rated) / len(rated)
    residuals: dict[int | str, float] = {}
    for j in rated:
        residuals[j.question_id] = residuals.get(j.question_id, 0.0) + j.score - mean
    clusters = len(residuals)
    clustered = (
        math.sqrt(clusters / (clusters - 1) * sum(r * r for r in residuals.values())) / len(rated)
        if clusters > 1
        else math.nan
    )
    metrics = {"mt_bench": {"value": mean, "stderr": clustered, "n": len(rated)}}
    for turn in range(1, TURNS + 1):
        scores = [j.score for j in rated if j.turn == turn]
        metrics[f"mt_bench_turn{turn}"] = _mean_with_stderr(scores)
    return metrics


def _mean_with_stderr(values: Sequence[float]) -> dict[str, float]:
    count = len(values)
    if count == 0:
        return {"value": math.nan, "stderr": math.nan, "n": 0}
    mean = sum(values) / count
    variance = sum((v - mean) ** 2 for v in values) / (count - 1) if count > 1 else math.nan
    return {"value": mean, "stderr": math.sqrt(variance / count), "n": count}


def score_mt_bench(
    client: ChatClient,
    questions: Sequence[Question],
    answers: Mapping[int | str, Sequence[str]],
    model: str,
    workers: int = 8,
) -> tuple[dict[str, dict[str, float]], dict[str, Any], list[dict[str, Any]]]:
    """(metrics, judging provenance, one record per judged turn)."""
    judgments = judge_answers(client, questions, answers, model, workers)
    provenance = {
        "judge_model": model,
        "judge_base_url_host": client.endpoint.host,
        "judge_parameters": JUDGE_PARAMETERS,
        "prompt_version": PROMPT_VERSION,
        "prompts_sha256": PROMPTS_SHA256,
        "questions_judged": len(questions),
        "turns_judged": len(judgments),
        "turns_failed": sum(j.failed for j in judgments),
        "scoring_attempts": client.scoring_attempts,
    }
    return mt_bench_metrics(judgments), provenance, [dataclasses.asdict(j) for j in judgments]


def judge_file(
    questions_source: str,
    answers_path: Path,
    cache_dir: Path,
    out: Path,
    *,
    references: str | None = None,
    limit: int | None = None,
    judge_model_choice: str | None = None,
    workers: int = 8,
    environ: Mapping[str, str] = os.environ,
    **client_options: Any,
) -> ChatClient:
    """MT-Bench of one answers file, written to `out` as `{"metrics", "provenance", "judgments"}`.

    Questions, answers and the endpoint's configuration are checked before any judging; returns the client (its
    cache hits and misses).
    """
    questions, provenance = load_questions(questions_source, limit=limit, references=references)
    answers_file, answers_record = read_answers(answers_path)
    answers = answers_by_question(answers_file.get("answers", []), questions, str(answers_path))
    model = judge_model(judge_model_choice, JUDGE_MODEL, environ)
    client = ChatClient(JudgeEndpoint.from_environment(environ), cache_dir, **client_options)
    metrics, judging, records = score_mt_bench(client, questions, answers, model, workers)
    provenance |= answers_record | {"limit": limit}
    write_json(out, {"metrics": metrics, "provenance": provenance | judging, "judgments": records})
    return client


def question_measure(judgments: Sequence[Mapping]) -> MeanMeasure:
    """One model's judgments as a paired measure (`onmerge.paired.Measure`, `onmerge.worlds.Judged`): one item per
    question, since its two turns are not independent, scored by the mean rating of its rated turns and weighted by
    their number, so that the items' weighted mean is MT-Bench's mean over rated turns."""
    import numpy as np

    from onmerge.items import Items
    from onmerge.paired import MeanMeasure

    ratings: dict[str, list[float]] = {}
    for judgment in judgments:
        if judgment["score"] is not None:
            ratings.setdefault(str(judgment["question_id"]), []).append(float(judgment["score"]))
    ids = tuple(sorted(ratings))
    scores = np.asarray([np.mean(ratings[item]) for item in ids])
    return MeanMeasure(Items(ids, scores, np.asarray([float(len(ratings[item])) for item in ids])))
