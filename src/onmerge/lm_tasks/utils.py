"""The hooks the task YAMLs beside this file call (`!function utils.<name>`): docs, results and sandbox filters.

`*_docs` turn a source split into the docs a task scores: each carries `id` (its id in the source, or its row
number there), the `prompt` the model sees and the gold fields its scorer needs, as a `datasets.Dataset` (lm-eval
reads the column names from it). Subsets are drawn by `seeded_subset`. `*_verdicts` are lm-eval filters that run
every response's program in the sandbox, concurrently, before `code_results` reads the verdicts.
"""

from __future__ import annotations

import functools
import json
import random
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from datasets import Dataset

from onmerge.lm_tasks import SUBSET_SEED, SUBSET_SIZES, scoring

Doc = dict[str, Any]
T = TypeVar("T")

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
MATH_INSTRUCTION_ZH = "请一步步推理，并把最终答案写在 \\boxed{} 中。"  # noqa: RUF001 (Chinese punctuation)
# Seconds and MiB per program. DS-1000's own harness allows 120 s; its programs import pandas, SciPy or PyTorch.
PYTHON_TIMEOUT, PYTHON_MEMORY_MB = 20.0, 1024
DS1000_TIMEOUT, DS1000_MEMORY_MB = 120.0, 16384  # address space: importing PyTorch maps several GiB
CODEAPEX_TIMEOUT, CODEAPEX_MEMORY_MB = 60.0, 4096  # compiling, then every example
CODEAPEX_CASE_TIME_FACTOR = 2  # each example may take twice the problem's own limit: this is not its judge machine


def seeded_subset(rows: Sequence[T], size: int, seed: int = SUBSET_SEED) -> list[T]:
    """`size` rows drawn without replacement by `random.Random(seed)`, kept in their source order."""
    if not 0 < size <= len(rows):
        raise ValueError(f"cannot draw a subset of {size} from {len(rows)} rows")
    return [rows[index] for index in sorted(random.Random(seed).sample(range(len(rows)), size))]


def _dataset(docs: Iterable[Doc]) -> Dataset:
    docs = list(docs)
    if not docs:
        raise ValueError("a task's document set is empty")
    return Dataset.from_list(docs)


def _math_docs(docs: Iterable[Doc]) -> Dataset:
    """Docs whose `gold` must read as a number: checked at load, before any generation, naming the bad ones."""
    docs = list(docs)
    unreadable = []
    for doc in docs:
        try:
            scoring.exact_value(doc["gold"])
        except ValueError:
            unreadable.append(doc["id"])
    if unreadable:
        raise ValueError(f"gold answers that are not numbers, docs {unreadable[:10]} ({len(unreadable)} in all)")
    return _dataset(docs)


def _numbered(dataset: Iterable[Doc], prefix: str) -> list[Doc]:
    """Rows with an `id`: the source's own where it has one, else `<prefix>-<row number>`."""
    return [{**row, "id": str(row.get("id") or f"{prefix}-{index}")} for index, row in enumerate(dataset)]


# ---------------------------------------------------------------------------------------------------------------
# Math


def gsm8k_docs(dataset: Iterable[Doc]) -> Dataset:
    """All of GSM8K's test set; the gold is the number after `####` in the reference solution."""
    return _math_docs(
        {
            "id": row["id"],
            "prompt": f"{row['question']}\n{MATH_INSTRUCTION}",
            "gold": row["answer"].split("####")[-1].strip().replace(",", ""),
        }
        for row in _numbered(dataset, "gsm8k-test")
    )


def math401_docs(dataset: Iterable[Doc]) -> Dataset:
    """Math401's 101-problem sample: the expression as asked (`12*34=`), the target as the source writes it."""
    rows = seeded_subset(_numbered(dataset, "math401"), SUBSET_SIZES["onmerge_math401"])
    return _math_docs(
        {"id": row["id"], "prompt": f"{row['query'].strip()}\n{MATH_INSTRUCTION}", "gold": row["response"]}
        for row in rows
    )


def math23k_docs(dataset: Iterable[Doc]) -> Dataset:
    """Math23K's 250-problem sample of its 1,000 test problems (Chinese), keyed by the source's problem id."""
    rows = seeded_subset(list(dataset), SUBSET_SIZES["onmerge_math23k"])
    return _math_docs(
        {
            "id": f"math23k-{row['id']}",
            "prompt": f"{row['original_text'].strip()}\n{MATH_INSTRUCTION_ZH}",
            "gold": str(row["ans"]),
        }
        for row in rows
    )


def gsm8k_results(doc: Doc, results: list[str]) -> dict[str, float]:
    return {"acc": float(scoring.word_problem_correct(results[0], doc["gold"]))}


def math23k_results(doc: Doc, results: list[str]) -> dict[str, float]:
    return {"acc": float(scoring.word_problem_correct(results[0], doc["gold"]))}


def math401_results(doc: Doc, results: list[str]) -> dict[str, float]:
    return {"acc": float(scoring.arithmetic_correct(results[0], doc["gold"]))}


# ---------------------------------------------------------------------------------------------------------------
# Code


def humaneval_docs(dataset: Iterable[Doc]) -> Dataset:
    return _dataset(
        {
            "id": row["task_id"],
            "prompt": (
                "Complete the following Python function. Reply with the whole function in a ```python code block."
                f"\n\n```python\n{row['prompt']}```"
            ),
            "source_prompt": row["prompt"],
            "entry_point": row["entry_point"],
            "test": row["test"],
        }
        for row in dataset
    )


def mbpp_docs(dataset: Iterable[Doc]) -> Dataset:
    """MBPP's test problems, zero-shot: the task, its tests (they name the function), a request for a code block."""
    return _dataset(
        {
            "id": f"mbpp-{row['task_id']}",
            "prompt": (
                f"You are an expert Python programmer, and here is your task: {row['text']} "
                "Your code should pass these tests:\n\n" + "\n".join(row["test_list"]) + "\n\n"
                "Reply with your code in a ```python code block."
            ),
            "setup": row["test_setup_code"],
            "tests": list(row["test_list"]),
        }
        for row in dataset
    )


DS1000_EXCLUDED_LIBRARIES = frozenset({"Tensorflow"})  # not installed with the pipeline (see the task's YAML)


def ds1000_docs(dataset: Iterable[Doc]) -> Dataset:
    """600 of DS-1000's problems, drawn from those whose library the pipeline installs, keyed by problem_id."""
    eligible = [row for row in dataset if row["metadata"]["library"] not in DS1000_EXCLUDED_LIBRARIES]
    return _dataset(
        {
            "id": f"ds1000-{row['metadata']['problem_id']}",
            "prompt": (
                f"{row['prompt'].rstrip()}\n\nWrite the code that completes the solution above, "
                "in a ```python code block and without repeating the given code."
            ),
            "library": row["metadata"]["library"],
            "code_context": row["code_context"],
        }
        for row in seeded_subset(eligible, SUBSET_SIZES["onmerge_ds1000"])
    )


def cpp_compiler() -> str:
    """The C++ compiler CodeApex's programs are built with; an error before any generation if there is none."""
    compiler = shutil.which("g++")
    if compiler is None:
        raise RuntimeError("CodeApex needs a C++ compiler: no `g++` on PATH (install g++, e.g. apt-get install g++)")
    return compiler


def codeapex_docs(dataset: Iterable[Doc]) -> Dataset:
    """CodeApex's C++ code-generation problems; each is tested on the examples its source publishes."""
    cpp_compiler()
    rows = list(dataset)
    untested = [row["id"] for row in rows if not json.loads(row["example"])]
    if untested:
        raise ValueError(f"CodeApex problems {untested} publish no example to test a solution on")
    return _dataset(
        {
            "id": f"codeapex-{row['id']}",
            "prompt": (
                f"{row['problem_description'].strip()}\n\nImplement this C++ function:\n"
                f"{row['function_declaration'].strip()}\n\nIt is called by the following program, where "
                "'// function start' marks the place of your function:\n"
                f"```cpp\n{row['code_context']}\n```\n\nExamples (input, then expected output):\n"
                + "\n".join(f"{case['input']}\n->\n{case['output']}\n" for case in json.loads(row["example"]))
                + "\nReply with the function (and any #include it needs), without a main function, "
                "in a ```cpp code block."
            ),
            "code_context": row["code_context"],
            "cases": row["example"],  # JSON text: [{"input", "output"}, ...]
            "time_limit_ms": int(row["time_limit"]),
        }
        for row in rows
    )


def _verdicts(
    resps: Sequence[Sequence[str]], docs: Sequence[Doc], program: Callable[[Doc, str], str], timeout: float, memory: int
) -> list[list[bool]]:
    """The filter's output: per doc, whether each of its responses' programs passed."""
    programs = [program(doc, response) for doc, responses in zip(docs, resps, strict=True) for response in responses]
    verdicts = iter(scoring.sandbox_verdicts(programs, timeout, memory))
    return [[next(verdicts) for _ in responses] for responses in resps]


def humaneval_program(doc: Doc, response: str) -> str:
    return scoring.humaneval_program(doc["source_prompt"], doc["entry_point"], doc["test"], response)


def mbpp_program(doc: Doc, response: str) -> str:
    return scoring.mbpp_program(response, doc["setup"], doc["tests"])


def ds1000_program(doc: Doc, response: str) -> str:
    return scoring.ds1000_program(doc["code_context"], response)


def codeapex_program(doc: Doc, response: str, compiler: str) -> str:
    time_limit = CODEAPEX_CASE_TIME_FACTOR * doc["time_limit_ms"] / 1000
    return scoring.codeapex_program(doc["code_context"], response, json.loads(doc["cases"]), compiler, time_limit)


def humaneval_verdicts(resps: Sequence[Sequence[str]], docs: Sequence[Doc]) -> list[list[bool]]:
    return _verdicts(resps, docs, humaneval_program, PYTHON_TIMEOUT, PYTHON_MEMORY_MB)


def mbpp_verdicts(resps: Sequence[Sequence[str]], docs: Sequence[Doc]) -> list[list[bool]]:
    return _verdicts(resps, docs, mbpp_program, PYTHON_TIMEOUT, PYTHON_MEMORY_MB)


def ds1000_verdicts(resps: Sequence[Sequence[str]], docs: Sequence[Doc]) -> list[list[bool]]:
    return _verdicts(resps, docs, ds1000_program, DS1000_TIMEOUT, DS1000_MEMORY_MB)


def codeapex_verdicts(resps: Sequence[Sequence[str]], docs: Sequence[Doc]) -> list[list[bool]]:
    compiler = cpp_compiler()
    program = functools.partial(codeapex_program, compiler=compiler)
    return _verdicts(resps, docs, program, CODEAPEX_TIMEOUT, CODEAPEX_MEMORY_MB)


def code_results(doc: Doc, results: list[bool]) -> dict[str, float]:
    """pass@1 from the sandbox filter's verdict on the (single, greedy) response."""
    return {"pass_at_1": float(results[0])}


# ---------------------------------------------------------------------------------------------------------------
# Reading comprehension


def _answerable(answers: Iterable[str]) -> list[str]:
    """The distinct gold answers that have words to recall (an empty or blank annotation has none)."""
    return [answer for answer in dict.fromkeys(answers) if scoring.answer_keywords(answer)]


def coqa_docs(dataset: Iterable[Doc]) -> Dataset:
    """Every turn of every CoQA validation story: the story, the conversation so far with gold answers, a question.

    The gold answers of a turn are the main answer and the additional annotators' answers.
    """
    docs = []
    for story_number, story in enumerate(dataset):
        questions, answers = story["questions"]["input_text"], story["answers"]["input_text"]
        alternatives = story.get("additional_answers") or {}
        story_id = story.get("id") or f"coqa-{story_number}"
        for turn, question in enumerate(questions):
            history = "".join(f"Q: {q}\nA: {a}\n\n" for q, a in zip(questions[:turn], answers[:turn], strict=True))
            golds = [answers[turn]]
            golds += [alt["input_text"][turn] for alt in alternatives.values() if alt and turn < len(alt["input_text"])]
            docs.append(
                {
                    "id": f"{story_id}-{turn}",
                    "prompt": (
                        f"{story['story'].strip()}\n\n{history}Q: {question}\n\n"
                        "Answer the last question about the text above."
                    ),
                    "answers": _answerable(golds),
                }
            )
    return _dataset(doc for doc in docs if doc["answers"])


def _drop_answer(answer: Mapping[str, Any]) -> str:
    """A DROP answer as text: its number, else its spans, else its date."""
    if answer["number"]:
        return str(answer["number"])
    if answer["spans"]:
        return " ".join(answer["spans"])
    date = answer["date"]
    return " ".join(part for part in (date["day"], date["month"], date["year"]) if part)


def _drop_answers(row: Doc) -> list[str]:
    """A DROP question's gold answers: the answer and its validated alternatives."""
    validated = row["validated_answers"]
    alternatives = [
        {"number": number, "spans": spans, "date": date}
        for number, spans, date in zip(validated["number"], validated["spans"], validated["date"], strict=True)
    ]
    return _answerable(_drop_answer(answer) for answer in [row["answer"], *alternatives])


def drop_docs(dataset: Iterable[Doc]) -> Dataset:
    """DROP validation, the last question asked of each passage (rows in source order, grouped by section_id).

    A question without a gold answer is passed over for the one before it.
    """
    last_of_passage: dict[str, tuple[Doc, list[str]]] = {}
    for row in dataset:
        answers = _drop_answers(row)
        if answers:
            last_of_passage.pop(row["section_id"], None)  # re-inserted: the order is the passages' last appearance
            last_of_passage[row["section_id"]] = row, answers
    return _dataset(
        {
            "id": row["query_id"],
            "prompt": f"{row['passage'].strip()}\n\nQuestion: {row['question']}\nAnswer the question.",
            "answers": answers,
        }
        for row, answers in last_of_passage.values()
    )


def reading_results(doc: Doc, results: list[str]) -> dict[str, float]:
    return {"keyword_recall": scoring.keyword_recall(results[0], doc["answers"])}


# ---------------------------------------------------------------------------------------------------------------
# Agent: NousResearch function calling. The system prompt is, verbatim, the one NousResearch's evaluator
# (github.com/interstellarninja/function-calling-eval) built from a sample's tools from 2024-01-31 to 2024-06-24, so
# when the paper was written: tool_eval/prompt_assets/sys_prompt.yml's Role, Objective, Tools and Schema fields, each
# formatted and its newlines turned into spaces, then its Instructions (tool_eval/prompter.py, format_yaml_prompt; no
# few-shot examples by default). Its schema is `json.loads(FunctionCall.schema_json())` of the evaluator's pydantic
# model (tool_eval/schema.py: `arguments: dict`, `name: str`) formatted as a Python dict, in pydantic 1's key order;
# the evaluator's own logs (tool_eval/eval_logs, 2024-02-02) show this very prompt. {tools} is the sample's tools as
# str() writes them, newlines turned into spaces (function_call_docs).

FUNCTION_CALLING_SYSTEM = (
    "You are a function calling AI model. You are provided with function signatures within <tools></tools> XML "
    "tags. You may call one or more functions to assist with the user query. Don't make assumptions about what "
    "values to plug into functions. Here are the available tools: <tools> {tools} </tools> Use the following "
    "pydantic model json schema for each tool call you will make: {{'title': 'FunctionCall', 'type': 'object', "
    "'properties': {{'arguments': {{'title': 'Arguments', 'type': 'object'}}, 'name': {{'title': 'Name', 'type': "
    "'string'}}}}, 'required': ['arguments', 'name']}} For each function call return a json object with function "
    "name and arguments within <tool_call></tool_call> XML tags as follows:\n<tool_call>\n{{'arguments': "
    "<args-dict>, 'name': <function-name>}}\n</tool_call>"
)


def _messages(prompt: Sequence[Mapping[str, str]]) -> tuple[str, str]:
    """A conversation as (system text, user text); several non-system turns become one transcript."""
    turns = [
        (message.get("role") or message.get("from", ""), message.get("content") or message.get("value") or "")
        for message in prompt
    ]
    system = "\n\n".join(content for role, content in turns if role == "system")
    rest = [(role, content) for role, content in turns if role != "system"]
    if len(rest) == 1:
        return system, rest[0][1]
    return system, "\n\n".join(f"{role}: {content}" for role, content in rest)


def function_call_docs(dataset: Iterable[Doc]) -> Dataset:
    """A function-calling set: the tools in the system prompt, the user's request, the expected call(s)."""
    docs = []
    for row in _numbered(dataset, "fc"):
        system, user = _messages(row["prompt"])
        docs.append(
            {
                "id": row["id"],
                "system": "\n\n".join(
                    part
                    for part in (FUNCTION_CALLING_SYSTEM.format(tools=str(row["tools"]).replace("\n", " ")), system)
                    if part
                ),
                "user": user,
                "completion": row["completion"],
                "tools": row["tools"],
            }
        )
    return _dataset(docs)


def json_mode_docs(dataset: Iterable[Doc]) -> Dataset:
    """json-mode-eval: its own system prompt (with the schema) and user turn, the expected object, the schema."""
    docs = []
    for row in _numbered(dataset, "json-mode"):
        system, user = _messages(row["prompt"])
        docs.append(
            {"id": row["id"], "system": system, "user": user, "completion": row["completion"], "schema": row["schema"]}
        )
    return _dataset(docs)


def function_call_results(doc: Doc, results: list[str]) -> dict[str, float]:
    return {"acc": float(scoring.function_calls_correct(results[0], doc["completion"], doc["tools"]))}


def json_mode_results(doc: Doc, results: list[str]) -> dict[str, float]:
    return {"acc": float(scoring.json_mode_correct(results[0], doc["completion"], doc["schema"]))}


# ---------------------------------------------------------------------------------------------------------------
# Code-switching substitute (see the package docstring)

TRANSLATION_REQUEST = {
    "en-zh": "Translate the following text into Chinese. Reply with the translation only.\n\n{text}",
    "zh-en": "请把下面这段中文翻译成英文，只回复译文。\n\n{text}",  # noqa: RUF001 (Chinese punctuation)
}


def code_switch_translation_docs(dataset: Iterable[Doc]) -> Dataset:
    """113 WMT19 zh-en sentence pairs as translation requests, alternately into Chinese and into English."""
    pairs = seeded_subset(_numbered(dataset, "wmt19-zh-en-validation"), SUBSET_SIZES["onmerge_cs_translation"])
    docs = []
    for number, row in enumerate(pairs):
        direction = ("en-zh", "zh-en")[number % 2]
        source, target = direction.split("-")
        docs.append(
            {
                "id": f"{row['id']}-{direction}",
                "prompt": TRANSLATION_REQUEST[direction].format(text=row["translation"][source].strip()),
                "language": target,
            }
        )
    return _dataset(docs)


def code_switch_open_docs(dataset: Dataset) -> Dataset:
    """131 first user turns of OpenAssistant conversations: 66 in Chinese, 65 in English, each answered in kind."""
    messages = dataset.select_columns(["message_id", "parent_id", "role", "lang", "text", "deleted"])
    roots = [row for row in messages if row["parent_id"] is None and row["role"] == "prompter" and not row["deleted"]]
    docs = []
    for language in ("zh", "en"):
        written = [row for row in roots if row["lang"].split("-")[0] == language]
        for row in seeded_subset(written, SUBSET_SIZES[f"onmerge_cs_open_{language}"]):
            docs.append({"id": row["message_id"], "prompt": row["text"].strip(), "language": language})
    return _dataset(docs)


def code_switch_results(doc: Doc, results: list[str]) -> dict[str, float]:
    return {"no_mixing": float(scoring.single_language(results[0], doc["language"]))}


# ---------------------------------------------------------------------------------------------------------------
# What each task's scorer reads from a response, for the per-sample records (onmerge.items)


def _final_number(doc: Doc, response: str) -> str | None:
    number = scoring.final_number(response)
    return None if number is None else str(number.value)


def _recalled_keywords(doc: Doc, response: str) -> str:
    """The gold answers' keywords the response holds (what keyword recall counts)."""
    found = set(scoring.words(response))
    return " ".join(sorted(set().union(*(scoring.answer_keywords(answer) for answer in doc["answers"])) & found))


def _calls(doc: Doc, response: str) -> str:
    return json.dumps(scoring.tool_calls(response), ensure_ascii=False)


def _json_object(doc: Doc, response: str) -> str:
    return scoring.code_block(response, ("json",)).strip()


READERS: dict[str, Callable[[Doc, str], str | None]] = {
    "onmerge_gsm8k": _final_number,
    "onmerge_math401": _final_number,
    "onmerge_math23k": _final_number,
    "onmerge_humaneval": humaneval_program,
    "onmerge_mbpp": mbpp_program,
    "onmerge_ds1000": ds1000_program,
    "onmerge_codeapex": lambda doc, response: scoring.codeapex_source(doc["code_context"], response),
    "onmerge_coqa": _recalled_keywords,
    "onmerge_drop": _recalled_keywords,
    "onmerge_fc_singleturn": _calls,
    "onmerge_fc_glaive": _calls,
    "onmerge_fc_eval": _calls,
    "onmerge_fc_json_mode": _json_object,
}


def extracted_answer(task: str, doc: Doc, response: str) -> str | None:
    """What a task's scorer reads from a response: the final number, the program that runs (CodeApex: the source
    it compiles), the keywords recalled, the tool calls or JSON object; None where the scorer reads the whole response
    (IFEval, code-switching) or the response is a multiple-choice pick (MMLU)."""
    reader = READERS.get(task)
    return None if reader is None else reader(doc, response)
