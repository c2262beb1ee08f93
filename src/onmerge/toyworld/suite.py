"""What the toy evaluation runs through lm-eval: the 13 benchmark tasks (14 columns) and the judged task.

The judged task generates answers to held-out judge prompts; lm-eval reports the mean judge score (the toy
MT-Bench) and the mean of each of its components (content, language, manner points; `toy_mt_bench` is 1 plus their
sum) with standard errors, and the answers are kept so the length-controlled win rate against the SFT model's answers
(the toy AlpacaEval) can be computed once both exist.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from onmerge.toyworld import judge, world
from onmerge.toyworld.world import Item, TaskSpec

JUDGE_COLUMNS = ("toy_mt_bench", "toy_mt_bench_content", "toy_mt_bench_language", "toy_mt_bench_manner")
JUDGE_TASK = TaskSpec("toy_judge", "generate_until", JUDGE_COLUMNS, max_gen_toks=96)
TASKS: dict[str, TaskSpec] = {**world.TASKS, JUDGE_TASK.name: JUDGE_TASK}


def docs(task: str, n: int, seed: int) -> list[dict[str, Any]]:
    """Held-out documents of any suite task; judge documents carry their whole item for the judge."""
    if task != JUDGE_TASK.name:
        return world.benchmark_docs(task, n, seed)
    return [
        {"id": f"{task}-{index}", "task": task, "prompt": item.prompt, "item": asdict(item)}
        for index, item in enumerate(judge.judge_prompts(n, seed, "eval"))
    ]


def item_of(doc: dict[str, Any]) -> Item:
    return Item(**doc["item"])


def score(task: str, doc: dict[str, Any], response: str) -> dict[str, float]:
    """Column -> value for one generation: the world's scorer, or the judge's 1-10 score and its components."""
    if task == JUDGE_TASK.name:
        points = judge.judge_points(item_of(doc), response)
        total, content, language, manner = JUDGE_COLUMNS
        return {total: points.total, content: points.content, language: points.language, manner: points.manner}
    return world.score(task, doc, response)


def extracted_answer(task: str, doc: dict[str, Any], response: str) -> str | None:
    """What a column's scorer reads from a response, for the per-sample records (onmerge.items)."""
    if task == JUDGE_TASK.name or task not in world.TASKS or world.TASKS[task].output_type != "generate_until":
        return None  # the judge reads the whole answer; a multiple-choice answer is the choice itself
    return world.extracted_answer(task, json.loads(doc["doc_json"]), response)
