"""The paper's benchmark tasks (onmerge.lm_tasks): scorers on hand-made responses, doc sets, and every task config
as lm-eval reads it. No data is downloaded: docs are built from hand-made rows in each source's schema."""

# ruff: noqa: RUF001 (Chinese test responses use full-width punctuation)

import dataclasses
import json
import shutil
from fractions import Fraction
from pathlib import Path

import lm_eval
import pytest
import yaml
from datasets import Dataset
from lm_eval.config.group import GroupConfig
from lm_eval.config.task import TaskConfig
from lm_eval.tasks import TaskManager
from lm_eval.tasks._index import Kind
from lm_eval.tasks._yaml_loader import load_yaml

from onmerge.aggregate import PAPER_COLUMNS
from onmerge.config import PRESETS
from onmerge.lm_evaluation import PAPER_METRICS, split_sampled_tasks
from onmerge.lm_tasks import PAPER_TASKS, SAMPLED_TASKS, SUBSET_SEED, SUBSET_SIZES, include_path, scoring, utils

BUILT_IN = Path(lm_eval.__file__).parent / "tasks"
GROUP_FIELDS = {field.name for field in dataclasses.fields(GroupConfig)}
needs_cpp = pytest.mark.skipif(shutil.which("g++") is None, reason="CodeApex scoring compiles C++ with g++")

# ---------------------------------------------------------------------------------------------------------------
# Math


def test_final_number_prefers_the_last_box_and_reads_common_formats():
    assert scoring.final_number("first 3, then \\boxed{12} and finally \\boxed{\\frac{3}{4}}").value == Fraction(3, 4)
    assert scoring.final_number("The total is -1,234.50 dollars.").value == Fraction("-1234.5")
    assert scoring.final_number("x = \u22120.8531").value == Fraction("-0.8531")  # unicode minus
    assert scoring.final_number("10-4=6, so 7-3").value == 3  # a subtraction, not minus three
    assert scoring.final_number("cut off inside \\boxed{42").value == 42
    number = scoring.final_number("about 12.5% of them")
    assert (number.value, number.decimals, number.percent) == (Fraction(25, 2), 1, True)
    assert scoring.final_number("no digits at all") is None


def test_word_problems_are_exact_except_rounding_a_non_terminating_gold():
    assert scoring.word_problem_correct("So she has \\boxed{18} eggs.", "18")
    assert not scoring.word_problem_correct("\\boxed{17}", "18")
    assert scoring.word_problem_correct("答案是 66.67 千克", "(200)/(3)")  # 200/3 has no finite decimals
    assert not scoring.word_problem_correct("66.6", "(200)/(3)")  # rounded wrongly
    assert not scoring.word_problem_correct("12.3", "12.34")  # 12.34 could have been written exactly
    assert scoring.word_problem_correct("2.5", "2(1/2)")  # Math23K's mixed number
    assert scoring.word_problem_correct("50%", "0.5") and scoring.word_problem_correct("0.5", "50%")
    assert scoring.word_problem_correct("a 25% rise", "25")  # "what percent?" answered with the sign
    assert not scoring.word_problem_correct("nothing", "3")


@pytest.mark.parametrize(
    ("response", "value", "percent"),
    [
        ("\\boxed{25\\%}", Fraction(25), True),  # LaTeX percent
        ("\\boxed{12.5\\%}", Fraction(25, 2), True),
        ("\\boxed{\\frac{1}{5}\\%}", Fraction(1, 5), True),
        ("答案是25％", Fraction(25), True),  # full-width percent sign
        ("about 25 % of them", Fraction(25), True),
        ("\\boxed{40\\frac{1}{5}}", Fraction(201, 5), False),  # LaTeX mixed numbers
        ("\\boxed{40 \\frac{1}{5}}", Fraction(201, 5), False),
        ("\\boxed{2\\dfrac{1}{2}}", Fraction(5, 2), False),
        ("\\boxed{2\\tfrac12}", Fraction(5, 2), False),
        ("\\boxed{-2\\frac{1}{2}}", Fraction(-5, 2), False),
        ("\\boxed{-\\frac{3}{4}}", Fraction(-3, 4), False),
        ("\\boxed{33\\frac{1}{3}\\%}", Fraction(100, 3), True),
        ("She used 3 1/2 cups.", Fraction(7, 2), False),  # plain-text mixed numbers
        ("答案是2(1/2)千克", Fraction(5, 2), False),  # Math23K's own notation
        ("答案是2又1/2", Fraction(5, 2), False),
        ("\\boxed{1,234}", Fraction(1234), False),  # thousands separators, plain and LaTeX
        ("\\boxed{1{,}234.5}", Fraction(2469, 2), False),
        ("\\boxed{1\\,234}", Fraction(1234), False),
        ("答案是-3", Fraction(-3), False),  # after a Han character a minus is a sign, not a subtraction
        ("x2 1/2", Fraction(1, 2), False),  # `x2` is a name, not the whole part of a mixed number
    ],
)
def test_final_number_reads_latex_percents_mixed_numbers_and_separators(response, value, percent):
    number = scoring.final_number(response)
    assert (number.value, number.percent) == (value, percent)


@pytest.mark.parametrize(
    ("response", "gold", "correct"),
    [
        ("\\boxed{25\\%}", "25%", True),
        ("\\boxed{0.25}", "25%", True),
        ("\\boxed{26\\%}", "25%", False),
        ("\\boxed{12.5\\%}", "12.5%", True),
        ("\\boxed{40\\frac{1}{5}}", "40(1/5)", True),
        ("\\boxed{40 \\frac{1}{5}}", "40(1/5)", True),
        ("\\boxed{40.2}", "40(1/5)", True),
        ("\\boxed{\\frac{1}{5}}", "40(1/5)", False),  # the whole part is no longer dropped...
        ("\\boxed{401/5}", "40(1/5)", False),  # ...nor glued to the numerator
        ("\\boxed{33\\frac{1}{3}\\%}", "33(1/3)%", True),
        ("\\boxed{\\frac{1}{3}}", "33(1/3)%", True),
        ("\\boxed{\\frac{1}{5}\\%}", "(1/5)%", True),
        ("\\boxed{\\frac{1}{5}}", "(1/5)%", False),
    ],
)
def test_math23k_golds_with_percents_and_mixed_numbers_can_be_matched(response, gold, correct):
    assert scoring.word_problem_correct(response, gold) is correct


def test_math401_uses_its_absolute_tolerance():
    assert scoring.arithmetic_correct("16÷83 ≈ 0.19277", "0.1928")
    assert not scoring.arithmetic_correct("0.19", "0.1928")
    assert scoring.arithmetic_correct("1933406196413", "1933406196413")
    assert not scoring.arithmetic_correct("1933406196414", "1933406196413")
    assert scoring.arithmetic_correct("-2.2817", "-2.2817")


@pytest.mark.parametrize("gold", ["x+1", "__import__('os')", "2**3", ""])
def test_a_gold_that_is_not_plain_arithmetic_is_an_error(gold):
    with pytest.raises(ValueError, match="not an arithmetic expression"):
        scoring.exact_value(gold)


# ---------------------------------------------------------------------------------------------------------------
# Reading comprehension


def test_keyword_recall_gives_partial_credit_and_takes_the_best_gold():
    assert scoring.keyword_recall("It was a red barn.", ["the big red barn"]) == pytest.approx(2 / 3)
    assert scoring.keyword_recall("It was a red barn.", ["a house", "red barn"]) == 1.0
    assert scoring.keyword_recall("No idea.", ["Paris"]) == 0.0


def test_keywords_ignore_stopwords_and_case_and_canonicalise_numbers():
    assert scoring.answer_keywords("The Lord of the Rings") == {"lord", "rings"}
    assert scoring.answer_keywords("in the") == {"in", "the"}  # nothing but stopwords: keep them
    assert scoring.keyword_recall("they counted 1000 sheep and 2 dogs", ["1,000 sheep, two dogs"]) == 1.0
    assert scoring.keyword_recall("It cost 3.50.", ["3.5"]) == 1.0
    with pytest.raises(ValueError, match="no gold answer"):
        scoring.keyword_recall("anything", ["", "  "])


# ---------------------------------------------------------------------------------------------------------------
# Code, run in the sandbox


def test_code_block_takes_the_first_block_of_the_language():
    response = "Here:\n```bash\nls\n```\n```python\nx = 1\n```\n```python\ny = 2\n```"
    assert scoring.code_block(response, scoring.PYTHON) == "x = 1\n"
    assert scoring.code_block("```\nuntagged\n```", scoring.PYTHON) == "untagged\n"
    assert scoring.code_block("```python\ncut off", scoring.PYTHON) == "cut off"
    assert scoring.code_block("def f(): pass", scoring.PYTHON) == "def f(): pass"


HUMANEVAL_PROMPT = (
    "from typing import List\n\n\ndef square(x: int) -> int:\n    return x * x\n\n\n"
    'def total(xs: List[int]) -> int:\n    """Sum of the squares of xs."""\n'
)
HUMANEVAL_TEST = "def check(candidate):\n    assert candidate([1, 2, 3]) == 14\n    assert candidate([]) == 0\n"


def test_humaneval_and_mbpp_programs_pass_or_fail_in_the_sandbox():
    # The prompt's import and helper stay in scope whether the response restates the function or not.
    whole_function = "Sure!\n```python\ndef total(xs: List[int]) -> int:\n    return sum(map(square, xs))\n```"
    body_only = "    return sum(square(x) for x in xs)\n"
    wrong = "```python\ndef total(xs):\n    return sum(xs)\n```"
    programs = [
        scoring.humaneval_program(HUMANEVAL_PROMPT, "total", HUMANEVAL_TEST, response)
        for response in (whole_function, body_only, wrong)
    ]
    mbpp_tests = ["assert add_one(1) == 2", "assert add_one(-1) == 0"]
    programs += [
        scoring.mbpp_program("```python\ndef add_one(x):\n    return x + 1\n```", "", mbpp_tests),
        scoring.mbpp_program("```python\ndef add_one(x):\n    return x\n```", "", mbpp_tests),
        scoring.mbpp_program("I cannot do that.", "", mbpp_tests),
    ]
    assert scoring.sandbox_verdicts(programs, timeout=10, memory_mb=512) == [True, True, False, True, False, False]


def test_a_program_that_runs_too_long_fails():
    verdicts = scoring.sandbox_verdicts(["while True:\n    pass\n", "print('done')\n"], timeout=1, memory_mb=256)
    assert verdicts == [False, True]


DS1000_CONTEXT = '''
import numpy as np

exec_context = r"""
import numpy as np
a = test_input
[insert]
"""

def test_execution(solution: str):
    test_env = {"test_input": np.arange(4)}
    exec(exec_context.replace("[insert]", solution), test_env)
    assert np.array_equal(test_env["result"], np.arange(4) * 2)

def test_string(solution: str):
    assert "for" not in solution
'''


def test_ds1000_runs_its_own_test_program_with_the_data_science_libraries():
    responses = [
        "```python\nresult = a * 2\n```",  # a chat model's fenced answer
        "result = a * 2\n</code>\nEND SOLUTION\nsome trailing words",  # the original completion format
        "```python\nresult = a + 1\n```",  # wrong
        "```python\nresult = np.array([x * 2 for x in a])\n```",  # right values, but test_string forbids loops
    ]
    assert scoring.ds1000_code(responses[1]) == "result = a * 2\n"
    programs = [scoring.ds1000_program(DS1000_CONTEXT, response) for response in responses]
    assert scoring.sandbox_verdicts(programs, timeout=30, memory_mb=4096) == [True, True, False, False]


CODEAPEX_CONTEXT = (
    "#include <iostream>\nusing namespace std;\n\n// function start\n\n// function end\n\n"
    "int main() {\n    int a, b;\n    cin >> a >> b;\n"
    "    // calling start\n    cout << add(a, b);\n    // calling end\n}"
)
CODEAPEX_CASES = [{"input": "2 3", "output": "5"}, {"input": "-1 1\n", "output": "0\n"}]


def test_codeapex_writes_the_function_into_its_slot():
    source = scoring.codeapex_source(CODEAPEX_CONTEXT, "```cpp\nint add(int a, int b) { return a + b; }\n```")
    assert "// function start\nint add(int a, int b) { return a + b; }\n\n// function end" in source
    assert source.index("int add") < source.index("int main")
    with pytest.raises(ValueError, match="function start"):
        scoring.codeapex_source("int main() {}", "int add();")


@needs_cpp
def test_codeapex_compiles_and_checks_every_example():
    compiler = shutil.which("g++")
    responses = [
        "```cpp\nint add(int a, int b) {\n    return a + b;\n}\n```",
        "```cpp\nint add(int a, int b) { return a * b; }\n```",  # wrong on both examples
        "```cpp\nint add(int a, int b) { return a + b }\n```",  # does not compile
        "```cpp\nint add(int a, int b) { volatile int n = 0; while (true) { n++; } }\n```",  # too slow
    ]
    programs = [scoring.codeapex_program(CODEAPEX_CONTEXT, r, CODEAPEX_CASES, compiler, 0.5) for r in responses]
    assert scoring.sandbox_verdicts(programs, timeout=30, memory_mb=4096) == [True, False, False, False]


@needs_cpp
def test_codeapex_docs_refuse_a_problem_without_examples():
    row = {
        "id": 7,
        "problem_description": "Add.",
        "function_declaration": "int add(int a, int b)",
        "code_context": CODEAPEX_CONTEXT,
        "time_limit": 1000,
        "memory_limit": 256,
    }
    docs = utils.codeapex_docs([row | {"example": json.dumps(CODEAPEX_CASES)}])
    assert docs[0]["id"] == "codeapex-7" and json.loads(docs[0]["cases"]) == CODEAPEX_CASES
    assert "int add(int a, int b)" in docs[0]["prompt"] and "2 3\n->\n5" in docs[0]["prompt"]
    with pytest.raises(ValueError, match=r"problems \[7\] publish no example"):
        utils.codeapex_docs([row | {"example": "[]"}])


# ---------------------------------------------------------------------------------------------------------------
# Agent: NousResearch function calling and JSON mode

TOOLS = json.dumps(
    [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather of a city.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string"},
                        "days": {"type": "integer"},
                        "unit": {"type": "string", "enum": ["C", "F"]},
                    },
                    "required": ["city"],
                },
            },
        }
    ]
)
EXPECTED_CALL = json.dumps({"name": "get_weather", "arguments": {"city": "Paris", "days": 2}})


def call(arguments: dict, name: str = "get_weather") -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


def test_tool_calls_parse_json_or_python_literals_and_drop_the_rest():
    response = (
        call({"city": "Paris"}) + "<tool_call>{'name': 'x', 'arguments': {}}</tool_call><tool_call>{oops</tool_call>"
    )
    assert scoring.tool_calls(response) == [
        {"name": "get_weather", "arguments": {"city": "Paris"}},
        {"name": "x", "arguments": {}},
    ]


@pytest.mark.parametrize(
    ("response", "correct"),
    [
        (call({"city": "Paris", "days": 2}), True),
        (call({"days": 2, "city": "Paris", "unit": "C"}), True),  # an extra argument is allowed
        (call({"city": "Lyon", "days": 2}), False),  # wrong value
        (call({"city": "Paris", "days": "2"}), False),  # string for an integer
        (call({"city": "Paris", "days": 2, "unit": "K"}), False),  # not in the enum
        (call({"city": "Paris", "days": 2}, name="get_time"), False),  # unknown function
        (call({"city": "Paris", "days": 2}) * 2, False),  # one call too many
        ('{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}', False),  # no <tool_call> tags
    ],
)
def test_function_calls_are_judged_as_the_nous_evaluator_judges_them(response, correct):
    assert scoring.function_calls_correct(response, EXPECTED_CALL, TOOLS) is correct


def test_a_missing_required_argument_fails_even_when_not_expected():
    expected = json.dumps([{"name": "get_weather", "arguments": {"days": 2}}])
    assert not scoring.function_calls_correct(call({"days": 2}), expected, TOOLS)
    assert scoring.function_calls_correct(call({"days": 2, "city": "Rome"}), expected, TOOLS)


SCHEMA = json.dumps({"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]})


@pytest.mark.parametrize(
    ("response", "correct"),
    [
        ('{"age": 30}', True),
        ('```json\n{"age": 30}\n```', True),
        ('{"age": 31}', False),  # valid, but not the expected object
        ('{"age": "30"}', False),  # against the schema
        ('[{"age": 30}]', False),  # a list, not the object
        ("The age is 30.", False),
    ],
)
def test_json_mode_needs_the_expected_object_valid_under_the_schema(response, correct):
    assert scoring.json_mode_correct(response, '{"age": 30}', SCHEMA) is correct


def test_function_call_docs_put_the_tools_in_the_system_prompt():
    rows = [{"prompt": [{"role": "user", "content": "Weather in Paris?"}], "completion": EXPECTED_CALL, "tools": TOOLS}]
    doc = utils.function_call_docs(rows)[0]
    assert doc["user"] == "Weather in Paris?" and doc["id"] == "fc-0"
    assert f"<tools> {TOOLS} </tools>" in doc["system"] and "<tool_call>" in doc["system"]
    json_rows = [
        {
            "prompt": [{"role": "system", "content": "Follow the schema."}, {"role": "user", "content": "Age?"}],
            "completion": '{"age": 30}',
            "schema": SCHEMA,
        }
    ]
    doc = utils.json_mode_docs(json_rows)[0]
    assert (doc["system"], doc["user"], doc["id"]) == ("Follow the schema.", "Age?", "json-mode-0")


# ---------------------------------------------------------------------------------------------------------------
# Code-switching


@pytest.mark.parametrize(
    ("response", "language", "single"),
    [
        ("北京是中国的首都。", "zh", True),
        ("我用 Python 写了一个程序，CPU 占用很少。", "zh", True),  # names and acronyms are not a mix
        ("这个模型 uses a lot of memory 所以很慢。", "zh", False),  # an English phrase
        ("代码如下：\n```python\nprint('hello world from here')\n```\n运行即可。", "zh", True),  # code is ignored
        ("これは日本語です。中文。", "zh", False),  # kana
        ("Beijing is the capital of China.", "zh", False),  # all English: the wrong language
        ("Beijing is the capital of China.", "en", True),
        ("Beijing (北京) is the capital.", "en", False),
        ("See `变量` and https://example.com/中文 for 3.14 details.", "en", True),  # inline code and URLs ignored
        ("", "en", False),
        ("12345 !!!", "zh", False),  # no language at all
    ],
)
def test_single_language_is_judged_by_script(response, language, single):
    assert scoring.single_language(response, language) is single


@pytest.mark.parametrize(
    "response",
    [
        "美国国家航空航天局（National Aeronautics and Space Administration）周二宣布了新的登月计划。",
        "苏格兰皇家银行(Royal Bank of Scotland)公布了第三季度财报。",
        "据英国《每日电讯报》（The Daily Telegraph）报道，该计划已被搁置。",
        "经济合作与发展组织（Organisation for Economic Co-operation and Development）下调了增长预期。",
        "“一带一路”倡议（Belt and Road Initiative）于2013年提出。",
        "他曾先后在Goldman Sachs、Morgan Stanley和JP Morgan Chase任职。",  # names in a list
        "该项目由Bill and Melinda Gates Foundation资助。",  # a name with a connector, no parentheses
        "西班牙银行（Banco de España）发布了报告。",
        "检索增强生成（retrieval-augmented generation）是一种常用方法。",  # a term glossed in parentheses
        "大语言模型（large language model，LLM）可以用于翻译。",
        "常用的库有numpy、pandas、scikit-learn和matplotlib。",  # single terms in a list
        "这是一个state-of-the-art的模型。",  # one hyphenated word
    ],
)
def test_names_and_glosses_in_a_chinese_answer_are_not_a_switch_of_language(response):
    assert scoring.single_language(response, "zh")


@pytest.mark.parametrize(
    "response",
    [
        "这个模型很慢（because it uses a lot of memory）。",  # a clause, even in parentheses
        "这个模型很慢（uses a lot of memory）。",  # a phrase too long for a term
        "总之（in short, we should wait.）我们应该等待。",
        "他在推特上写道：“Great meeting with the President today!”",  # a quoted English sentence
        "Elon Musk said that Tesla will grow，但分析师并不认同。",  # names inside an English clause
        "我觉得this is a good idea，你怎么看？",
        "Sure, here is the translation: 北京是中国的首都。",
    ],
)
def test_an_english_sentence_or_clause_in_a_chinese_answer_is_a_switch(response):
    assert not scoring.single_language(response, "zh")


def test_an_unknown_language_is_an_error():
    with pytest.raises(ValueError, match="unknown response language"):
        scoring.single_language("hello", "fr")


# ---------------------------------------------------------------------------------------------------------------
# Doc sets and subsets


def test_seeded_subset_is_stable_in_source_order_and_sized():
    rows = list(range(1000))
    subset = utils.seeded_subset(rows, 101)
    assert subset == utils.seeded_subset(rows, 101) == sorted(subset)
    assert len(set(subset)) == 101 and subset != utils.seeded_subset(rows, 101, seed=SUBSET_SEED + 1)
    with pytest.raises(ValueError, match="cannot draw a subset of 1001 from 1000"):
        utils.seeded_subset(rows, 1001)


def test_math401_docs_are_101_source_rows_with_their_row_ids():
    rows = Dataset.from_list([{"query": f"{i}+1=", "response": str(i + 1)} for i in range(401)])
    docs = utils.math401_docs(rows)
    assert len(docs) == SUBSET_SIZES["onmerge_math401"] == 101
    assert list(docs) == list(utils.math401_docs(rows))
    for doc in docs:
        row = int(doc["id"].removeprefix("math401-"))
        assert doc["prompt"].startswith(f"{row}+1=") and doc["gold"] == str(row + 1)


def test_math23k_and_ds1000_docs_keep_the_source_ids():
    math23k = [{"id": str(1000 + i), "original_text": f"题{i}", "ans": "(3)/(2)"} for i in range(1000)]
    docs = utils.math23k_docs(math23k)
    assert len(docs) == 250 and all(doc["prompt"].startswith(f"题{int(doc['id'][8:]) - 1000}") for doc in docs)
    libraries = ["Numpy", "Pandas", "Tensorflow", "Pytorch"]
    ds1000 = [
        {"prompt": f"p{i}", "code_context": "", "metadata": {"problem_id": i, "library": libraries[i % 4]}}
        for i in range(1000)
    ]
    docs = utils.ds1000_docs(ds1000)
    assert len(docs) == 600 and "Tensorflow" not in set(docs["library"])
    assert all(doc["prompt"].startswith(f"p{doc['id'].removeprefix('ds1000-')}\n") for doc in docs)


def test_a_gold_answer_that_is_not_a_number_fails_at_load():
    rows = [{"id": str(i), "original_text": "题", "ans": "5" if i % 100 else "x=5"} for i in range(1000)]
    with pytest.raises(ValueError, match=r"not numbers, docs \['math23k-\d+'"):
        utils.math23k_docs(rows)
    gsm8k = utils.gsm8k_docs([{"question": "How many?", "answer": "Lots.\n#### 1,200"}])
    assert gsm8k[0]["gold"] == "1200" and gsm8k[0]["id"] == "gsm8k-test-0"


def test_code_switch_docs_mirror_the_papers_sizes():
    pairs = [{"translation": {"zh": f"句子{i}", "en": f"sentence {i}"}} for i in range(500)]
    docs = utils.code_switch_translation_docs(pairs)
    assert len(docs) == 113
    assert docs["language"][:4] == ["zh", "en", "zh", "en"]
    first_source = int(docs[0]["id"].split("-")[-3])
    assert f"sentence {first_source}" in docs[0]["prompt"] and docs[0]["id"].endswith("-en-zh")
    messages = Dataset.from_list(
        [
            {
                "message_id": f"m{i}",
                "parent_id": None if i % 3 else f"m{i - 1}",  # every third message is a reply
                "role": "prompter" if i % 7 else "assistant",
                "lang": ["zh", "en", "es"][(i // 2) % 3],
                "text": f"message {i}",
                "deleted": i % 11 == 0,
            }
            for i in range(4000)
        ]
    )
    docs = utils.code_switch_open_docs(messages)
    assert [doc["language"] for doc in docs].count("zh") == 66 and len(docs) == 131
    by_id = {row["message_id"]: row for row in messages}
    for doc in docs:
        source = by_id[doc["id"]]
        assert source["parent_id"] is None and source["role"] == "prompter" and not source["deleted"]
        assert source["lang"] == doc["language"] and source["text"] == doc["prompt"]


COQA_STORY = {
    "id": "story-a",
    "story": "Anna has a red bike.",
    "questions": {"input_text": ["Who has a bike?", "What color?"]},
    "answers": {"input_text": ["Anna", "red"]},
    "additional_answers": {"0": {"input_text": ["Anna does", "it is red"]}},
}


def test_coqa_docs_ask_every_turn_with_the_gold_history():
    docs = utils.coqa_docs([COQA_STORY])
    assert docs["id"] == ["story-a-0", "story-a-1"]
    assert docs[1]["prompt"].startswith("Anna has a red bike.\n\nQ: Who has a bike?\nA: Anna\n\nQ: What color?")
    assert docs[1]["answers"] == ["red", "it is red"]


def test_drop_docs_keep_the_last_question_of_each_passage():
    def row(section, query, number="", spans=(), validated_spans=()):
        no_date = {"day": "", "month": "", "year": ""}
        return {
            "section_id": section,
            "query_id": query,
            "passage": f"passage {section}",
            "question": f"question {query}",
            "answer": {"number": number, "date": no_date, "spans": list(spans)},
            "validated_answers": {
                "number": ["" for _ in validated_spans],
                "date": [no_date for _ in validated_spans],
                "spans": [list(spans) for spans in validated_spans],
            },
        }

    rows = [
        row("s1", "q1", number="3"),
        row("s2", "q2", spans=["Bob"]),
        row("s1", "q3", spans=["the", "Jets"], validated_spans=[["Jets"]]),
    ]
    rows.append(row("s2", "q4"))  # no gold answer: s2's last answerable question stays q2
    docs = utils.drop_docs(rows)
    assert docs["id"] == ["q2", "q3"]
    assert docs[1]["answers"] == ["the Jets", "Jets"] and "question q3" in docs[1]["prompt"]


# ---------------------------------------------------------------------------------------------------------------
# Task configs, as lm-eval reads them (no data is loaded)


@pytest.fixture(scope="module")
def task_manager() -> TaskManager:
    """Our tasks and the built-in ones we use; indexing all of lm-eval's built-ins would take seconds."""
    return TaskManager(
        include_path=[include_path(), BUILT_IN / "ifeval", BUILT_IN / "mmlu" / "default"], include_defaults=False
    )


def leaf_configs(task_manager: TaskManager, name: str) -> dict[str, TaskConfig]:
    """Every task under `name` as a TaskConfig. Our hooks are imported (they must resolve); built-in ones are not
    (IFEval's would download NLTK data on import)."""
    entry = task_manager.task_index[name]
    if entry.kind is Kind.TAG:
        return {leaf: c for child in sorted(entry.tags) for leaf, c in leaf_configs(task_manager, child).items()}
    config = load_yaml(entry.yaml_path, resolve_func=entry.yaml_path.parent == include_path())
    if entry.kind is Kind.GROUP:
        GroupConfig(**{key: value for key, value in config.items() if key in GROUP_FIELDS})
        return {leaf: c for child in config["task"] for leaf, c in leaf_configs(task_manager, child).items()}
    for structural in ("tag", "group", "task_list"):
        config.pop(structural, None)
    return {name: TaskConfig(**config)}


def test_every_yaml_of_ours_is_indexed(task_manager):
    # lm-eval skips a YAML it cannot parse without a word; each of ours must be in the index.
    indexed = {entry.yaml_path for entry in task_manager.task_index.values() if entry.yaml_path}
    assert set(include_path().glob("*.yaml")) <= indexed


def test_every_paper_task_parses_zero_shot_with_its_decoding(task_manager):
    for name in PAPER_TASKS:
        configs = leaf_configs(task_manager, name)
        assert configs, name
        for leaf, config in configs.items():
            assert (config.num_fewshot or 0) == 0, leaf
            assert config.metric_list, leaf
            if config.output_type == "generate_until":
                generation = config.generation_kwargs
                assert "until" in generation, f"{leaf}: lm-eval would stop at blank lines"
                assert generation["do_sample"] is (name in SAMPLED_TASKS), leaf
                assert "temperature" not in generation or name not in SAMPLED_TASKS  # from the preset
            else:
                assert name == "mmlu" and config.output_type == "multiple_choice"
            if leaf.startswith("onmerge_"):
                assert callable(config.process_docs) and callable(config.process_results), leaf
                assert config.doc_to_text in {"prompt", "user"}, leaf


def test_paper_metrics_name_a_reported_metric_of_each_column_once(task_manager):
    assert sorted(PAPER_METRICS.values()) == sorted(PAPER_COLUMNS)
    assert {key.partition("/")[0] for key in PAPER_METRICS} == set(PAPER_TASKS)
    for key in PAPER_METRICS:
        task, _, metric = key.partition("/")
        metric, _, filter_name = metric.partition(",")
        config = load_yaml(task_manager.task_index[task].yaml_path, resolve_func=False)
        listed = config.get("aggregate_metric_list") or config["metric_list"]
        assert metric in {entry["metric"] for entry in listed}, key
        filters = {entry["name"] for entry in config.get("filter_list", [])} or {"none"}
        assert (filter_name or "none") in filters, key


def test_the_subset_sizes_are_the_papers():
    assert (SUBSET_SIZES["onmerge_math401"], SUBSET_SIZES["onmerge_math23k"], SUBSET_SIZES["onmerge_ds1000"]) == (
        101,
        250,
        600,
    )
    assert SUBSET_SIZES["onmerge_cs_translation"] == 113
    assert SUBSET_SIZES["onmerge_cs_open_zh"] + SUBSET_SIZES["onmerge_cs_open_en"] == 131


@pytest.mark.parametrize("preset", ["qwen1.5-1.8b", "qwen1.5-7b", "llama-3-8b"])
def test_paper_presets_evaluate_every_column_and_sample_as_published(preset, task_manager):
    evaluation = yaml.safe_load((PRESETS / f"{preset}.yaml").read_text())["evaluation"]
    assert evaluation["tasks"] == list(PAPER_TASKS)
    assert split_sampled_tasks(task_manager, evaluation["tasks"])[1] == list(SAMPLED_TASKS)
    assert (evaluation["sampling"]["temperature"], evaluation["sampling"]["top_p"]) == (0.7, 0.8)
    if preset.startswith("qwen"):
        assert (evaluation["sampling"]["top_k"], evaluation["sampling"]["repetition_penalty"]) == (20, 1.05)
