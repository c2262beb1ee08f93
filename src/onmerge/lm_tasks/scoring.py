"""The custom benchmarks' scorers: pure functions from a model's response (and the gold answer) to a score.

Kept apart from `utils.py` (the lm-eval hooks) so that they can be read and tested without lm-eval or any data.
Generated code is never executed here, only turned into a program that `sandbox_verdicts` runs through
`onmerge.sandbox.run_python`.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sysconfig
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import jsonschema

from onmerge.sandbox import run_python

# ---------------------------------------------------------------------------------------------------------------
# Math: the final number of a response against an exact gold value.


@dataclass(frozen=True)
class Number:
    """A number as a response wrote it: exact value, digits after the decimal point (None for a fraction), percent."""

    value: Fraction
    decimals: int | None
    percent: bool

    def readings(self) -> Iterator[tuple[Fraction, int | None]]:
        """(value, decimals) under each reading: `25%` may mean 0.25 or, answering "what percent", 25."""
        yield self.value, self.decimals
        if self.percent:
            yield self.value / 100, None if self.decimals is None else self.decimals + 2


# Where a number may start: not inside an ASCII word or expression (`x2`, `1.5`, `x^2`). After a Han character it may
# (`是2又1/2`), which Python's Unicode `\w` would not allow.
_NUMBER_START = r"(?<![A-Za-z0-9_.^])"
# A number token: optional sign; a mixed number (`2 1/2`) or digits with optional thousands separators, decimals and
# a `/denominator`; a percent sign.
_NUMBER = re.compile(
    rf"-?(?:{_NUMBER_START}\d+[ \t]+\d+/\d+"
    r"|(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+(?:\.\d+)?)?|\.\d+)(?:[ \t]*%)?"
)
# `\frac{a}{b}` (also `\dfrac`, `\tfrac`, `\frac12`), with the whole part of a mixed number before it (`2\frac{1}{2}`).
_LATEX_FRACTION = re.compile(
    r"(?:" + _NUMBER_START + r"(?P<whole>\d+)[ \t]*)?"
    r"\\[dt]?frac\s*(?:\{(?P<numerator>[^{}]*)\}|(?P<numerator_digit>\d))"
    r"\s*(?:\{(?P<denominator>[^{}]*)\}|(?P<denominator_digit>\d))"
)
# Math23K's mixed number `2(1/2)` and Chinese `2又1/2`: a whole number, then a fraction in parentheses or after 又.
_WRITTEN_MIXED_NUMBER = re.compile(rf"{_NUMBER_START}(\d+)(?:\((\d+/\d+)\)|\s*\u53c8\s*(\d+/\d+))")
# LaTeX thousands separators: `1{,}234` and the thin space of `1\,234`.
_LATEX_THOUSANDS = re.compile(r"(?<=\d)(?:\{,\}|\\,)(?=\d{3}(?!\d))")


def parse_number(token: str) -> Number | None:
    """One `_NUMBER` token (`-1,234.5`, `3/4`, `-2 1/2`, `12.5%`) as a Number; None when it is not one (`1/0`)."""
    token = token.replace(",", "")
    percent = token.endswith("%")
    negative = token.startswith("-")
    *whole, fraction = token.rstrip("%").lstrip("-").split()  # `2 1/2`: a whole part, then a fraction
    numerator, _, denominator = fraction.partition("/")
    try:
        value = Fraction(numerator) / Fraction(denominator) if denominator else Fraction(numerator)
    except (ValueError, ZeroDivisionError):
        return None
    if whole:
        value += Fraction(whole[0])
    decimals = None if denominator else len(numerator.partition(".")[2])
    return Number(-value if negative else value, decimals, percent)


def _plain_numbers(text: str) -> str:
    """Numbers as plain text: LaTeX fractions (mixed ones too), `\\%`, LaTeX thousands separators, `2(1/2)`.

    A whole number written before a fraction makes a mixed number (`2\\frac{1}{2}` -> `2 1/2`), as in Math23K's
    `2(1/2)`; a fraction's own parentheses go, so that `(3)/(4)` and `\\frac{3}{4}` both read as `3/4`.
    """
    text = text.replace("\u2212", "-").replace("\uff0c", ",").replace("\uff05", "%")  # unicode minus, full-width , %
    text = _LATEX_THOUSANDS.sub(",", text.replace("\\%", "%"))
    text = _LATEX_FRACTION.sub(_plain_fraction, text)
    text = _WRITTEN_MIXED_NUMBER.sub(lambda match: f"{match[1]} {match[2] or match[3]}", text)
    return text.replace("(", "").replace(")", "")


def _plain_fraction(match: re.Match[str]) -> str:
    numerator = match["numerator"] if match["numerator"] is not None else match["numerator_digit"]
    denominator = match["denominator"] if match["denominator"] is not None else match["denominator_digit"]
    whole = f"{match['whole']} " if match["whole"] else ""
    return f"{whole}({numerator})/({denominator})"


def final_number(response: str) -> Number | None:
    """The answer a response gives: the last number inside its last `\\boxed{}`, else its last number."""
    boxed = _last_boxed(response)
    text = _plain_numbers(boxed if boxed is not None else response)
    for match in reversed(list(_NUMBER.finditer(text))):
        token = match.group()
        if token.startswith("-") and match.start() > 0 and re.fullmatch(r"[A-Za-z0-9_]", text[match.start() - 1]):
            token = token[1:]  # `5-3`: a subtraction, not a negative three (but `是-3` is minus three)
        number = parse_number(token)
        if number is not None:
            return number
    return None


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for index in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth < 0:
            return text[begin:index]
    return text[begin:]  # unclosed: the response was cut off inside the box


def exact_value(expression: str) -> Fraction:
    """A gold answer as an exact rational: `76`, `0.7400`, `(3)/(2)`, `50%`, Math23K's mixed `2(1/2)`, `33(1/3)%`."""
    # `2(1/2)` is two and a half: one number, so that a percent sign after it applies to all of it.
    text = re.sub(r"(\d+(?:\.\d+)?)\(((?:[^()]|\([^()]*\))*)\)", r"(\1+(\2))", str(expression).strip())
    text = text.replace("%", "*(1/100)")  # binds to the number or parenthesis before it, as a product does
    try:
        tree = ast.parse(text, mode="eval")
        return _evaluate(tree.body)
    except (SyntaxError, ValueError, ZeroDivisionError) as error:
        raise ValueError(f"gold answer {expression!r} is not an arithmetic expression: {error}") from None


def _evaluate(node: ast.AST) -> Fraction:
    """Exact arithmetic over a parsed expression: numbers, + - * / and unary signs only."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _evaluate(node.operand)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
        left, right = _evaluate(node.left), _evaluate(node.right)
        operations = {ast.Add: left.__add__, ast.Sub: left.__sub__, ast.Mult: left.__mul__, ast.Div: left.__truediv__}
        return operations[type(node.op)](right)
    raise ValueError(f"unsupported element {ast.dump(node)}")


def arithmetic_correct(response: str, gold: str) -> bool:
    """Math401's rule (Yuan et al. 2023): correct when the answer is within 1e-3 of the target."""
    number = final_number(response)
    target = exact_value(gold)
    return number is not None and any(abs(value - target) < Fraction(1, 1000) for value, _ in number.readings())


def word_problem_correct(response: str, gold: str) -> bool:
    """GSM8K and Math23K: the answer equals the gold value, or rounds it where the gold has no finite decimals.

    `66.67` answers 200/3; `12.3` does not answer 12.34, whose exact decimals could have been written.
    """
    number = final_number(response)
    if number is None:
        return False
    target = exact_value(gold)
    for value, decimals in number.readings():
        if value == target:
            return True
        if decimals and not _terminates(target) and abs(value - target) <= Fraction(1, 2 * 10**decimals):
            return True
    return False


def _terminates(value: Fraction) -> bool:
    """Whether `value` has a finite decimal expansion (its denominator has no prime factor but 2 and 5)."""
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    return denominator == 1


# ---------------------------------------------------------------------------------------------------------------
# Reading comprehension: recall of the gold answer's keywords.

# Words that carry no answer content; "yes", "no", pronouns and numbers are kept, they are answers in CoQA.
STOPWORDS = frozenset(
    ["a", "an", "the", "of", "to", "in", "on", "at", "for", "by", "with", "and", "or", "is", "are", "was", "were", "be"]
)
_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        (
            *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
            *("eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"),
            "twenty",
        )
    )
}
_WORD = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+")


def words(text: str) -> list[str]:
    """Lower-cased words and canonical numbers (`1,000` -> 1000, `3.50` -> 3.5, `two` -> 2), punctuation dropped."""
    return [_NUMBER_WORDS.get(token, token) for token in map(_canonical_number, _WORD.findall(text.lower()))]


def _canonical_number(token: str) -> str:
    if not token[0].isdigit():
        return token
    try:
        value = Fraction(token.replace(",", ""))
    except ValueError:
        return token  # `1.2.3`: a version or a date, kept as written
    return str(value.numerator) if value.denominator == 1 else format(float(value), "g")


def answer_keywords(answer: str) -> set[str]:
    """The words of a gold answer that recall is measured on: all but stopwords (all, if only stopwords)."""
    every = set(words(answer))
    return (every - STOPWORDS) or every


def keyword_recall(response: str, gold_answers: Sequence[str]) -> float:
    """Fraction of a gold answer's keywords found among the response's words; the best over the gold answers."""
    keyword_sets = [keywords for keywords in (answer_keywords(answer) for answer in gold_answers) if keywords]
    if not keyword_sets:
        raise ValueError(f"no gold answer with words to recall among {list(gold_answers)!r}")
    found = set(words(response))
    return max(len(keywords & found) / len(keywords) for keywords in keyword_sets)


# ---------------------------------------------------------------------------------------------------------------
# Code: programs built from a response, run in the sandbox.

_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def code_block(response: str, languages: Sequence[str]) -> str:
    """The first fenced block tagged with one of `languages` (or untagged); the whole response if none is fenced.

    An unclosed fence (generation cut off) counts up to the end of the response.
    """
    for match in _FENCE.finditer(response):
        if match.group(1).lower() in {"", *languages}:
            return match.group(2)
    return response


PYTHON = ("python", "python3", "py")
CPP = ("cpp", "c++", "cc", "cxx", "c")


def humaneval_program(prompt: str, entry_point: str, test: str, response: str) -> str:
    """The completed function plus HumanEval's tests.

    A chat model usually restates the whole function: it then follows the prompt (whose imports and helper functions
    it may use, and whose docstring-only stub it redefines). A bare body continues the prompt, as a completion would.
    """
    code = code_block(response, PYTHON)
    defines_entry_point = re.search(rf"^def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE)
    solution = f"{prompt}\n{code}" if defines_entry_point else prompt + code
    return f"{solution}\n\n{test}\n\ncheck({entry_point})\n"


def mbpp_program(response: str, setup: str, tests: Sequence[str]) -> str:
    """The response's code, MBPP's setup code, then its assert statements."""
    return "\n".join([code_block(response, PYTHON), setup, *tests]) + "\n"


def ds1000_code(response: str) -> str:
    """DS-1000's official postprocessing (its test_ds1000.py), after taking the fenced block a chat model writes."""
    code = code_block(response, PYTHON)
    code = code.split("</code>")[0].replace("```python", "").split("```")[0]
    return code.split("\nEND SOLUTION")[0].replace("<code>", "")


def ds1000_program(code_context: str, response: str) -> str:
    """DS-1000's own test program: its `code_context`, the code as a string, `test_execution` (and `test_string`).

    The sandbox's interpreter runs isolated from site-packages; DS-1000 tests NumPy, pandas, SciPy, scikit-learn,
    PyTorch and Matplotlib, so this program alone puts this environment's library folders on its path.
    """
    library_paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    lines = [
        "import sys",
        f"sys.path.extend({library_paths!r})",
        code_context,
        f"code = {ds1000_code(response)!r}",
        "test_execution(code)",
    ]
    if "test_string(" in code_context:
        lines.append("test_string(code)")
    return "\n".join(lines) + "\n"


_FUNCTION_SLOT = re.compile(r"//\s*function start\s*\n(.*?)//\s*function end", re.DOTALL | re.IGNORECASE)


def codeapex_source(code_context: str, response: str) -> str:
    """CodeApex's C++ program with the response's function written between `// function start` and `// end`."""
    if not _FUNCTION_SLOT.search(code_context):
        raise ValueError("CodeApex code_context has no '// function start' ... '// function end' slot")
    code = code_block(response, CPP)
    return _FUNCTION_SLOT.sub(lambda _: f"// function start\n{code}\n// function end", code_context, count=1)


def codeapex_program(
    code_context: str, response: str, cases: Sequence[dict[str, str]], compiler: str, case_timeout: float
) -> str:
    """A Python program that compiles the C++ solution and checks each example: output equal up to trailing space.

    The compiler and the solution run as children of the sandboxed interpreter, under its time, CPU, memory and
    scratch-folder limits and its network block: on Linux a seccomp filter, which the kernel applies to them too.
    """
    source = codeapex_source(code_context, response)
    return f"""\
import subprocess, sys
open("main.cpp", "w").write({source!r})
build = subprocess.run([{compiler!r}, "-O2", "-std=c++17", "main.cpp", "-o", "main"], capture_output=True, text=True)
if build.returncode != 0:
    sys.exit("compile error: " + build.stderr[-1000:])
def lines(text):
    return [line.rstrip() for line in text.rstrip().splitlines()]
for number, case in enumerate({list(cases)!r}):
    run = subprocess.run(["./main"], input=case["input"], capture_output=True, text=True, timeout={case_timeout!r})
    if run.returncode != 0 or lines(run.stdout) != lines(case["output"]):
        sys.exit(f"example {{number}}: wrong answer or runtime error")
"""


def sandbox_verdicts(programs: Sequence[str], timeout: float, memory_mb: int) -> list[bool]:
    """Whether each program passes (runs to its end in time) in its own sandbox; run concurrently, one per core."""
    workers = max(1, min(len(programs), len(os.sched_getaffinity(0))))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda program: run_python(program, timeout, memory_mb).passed, programs))


# ---------------------------------------------------------------------------------------------------------------
# Agent: NousResearch function calling and JSON mode, judged as their own evaluator does
# (interstellarninja/function-calling-eval, the code behind the NousResearch eval sets).

_TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "number": (int, float),
    "integer": int,
    "boolean": bool,
    "array": list,
    "object": dict,
    "null": type(None),
}


def _load_json(text: str) -> Any:
    """JSON, falling back to a Python literal (single quotes, True/False) as the Nous evaluator does."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        try:
            return ast.literal_eval(text)
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
            return None


def tool_calls(response: str) -> list[Any]:
    """Every `<tool_call>...</tool_call>` of a response that parses (unparsable ones are dropped, as by Nous)."""
    calls = (_load_json(body.strip()) for body in _TOOL_CALL.findall(response))
    return [call for call in calls if call is not None]


def _call_fits_signature(call: Any, tools: Sequence[dict[str, Any]]) -> bool:
    """Nous's schema check: a known function, each given argument of its declared type (and enum), none missing."""
    if (
        not isinstance(call, dict)
        or not isinstance(call.get("name"), str)
        or not isinstance(call.get("arguments"), dict)
    ):
        return False
    for tool in tools:
        function = tool.get("function", tool)
        if function.get("name") != call["name"]:
            continue
        parameters = function.get("parameters") or {}
        for name, schema in (parameters.get("properties") or {}).items():
            value = call["arguments"].get(name)
            if not value:
                continue  # Nous skips absent and falsy values
            if "type" in schema:
                if schema["type"] not in _JSON_TYPES or not isinstance(value, _JSON_TYPES[schema["type"]]):
                    return False
                enum = schema.get("enum") if schema["type"] == "string" else None
                if enum and None not in enum and value not in enum:
                    return False
        return all(name in call["arguments"] for name in parameters.get("required", []))
    return False


def function_calls_correct(response: str, expected: str, tools: str) -> bool:
    """The response makes exactly the expected calls: each by name, with every expected argument value.

    Every call must also fit its function's signature. Extra arguments are allowed, as in the Nous evaluator.
    """
    calls = tool_calls(response)
    wanted = json.loads(expected)
    wanted = wanted if isinstance(wanted, list) else [wanted]
    signatures = json.loads(tools)
    if not calls or len(calls) != len(wanted) or not all(_call_fits_signature(call, signatures) for call in calls):
        return False
    for expected_call in wanted:
        match = next((call for call in calls if call["name"] == expected_call["name"]), None)
        if match is None:
            return False
        if any(match["arguments"].get(key) != value for key, value in expected_call["arguments"].items()):
            return False
    return True


def json_mode_correct(response: str, expected: str, schema: str) -> bool:
    """The response is one JSON object, valid under the schema and equal to the expected object.

    A surrounding ``` fence is tolerated (the Nous evaluator, written for Hermes, parses the bare message).
    """
    answer = _load_json(code_block(response, ("json",)).strip())
    if not isinstance(answer, dict):
        return False
    try:
        jsonschema.validate(answer, json.loads(schema))
    except (jsonschema.ValidationError, jsonschema.SchemaError):
        return False
    return answer == json.loads(expected)


# ---------------------------------------------------------------------------------------------------------------
# Code-switching: is a response written in the expected language only, judged by script.

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_KANA_HANGUL = "\u3040-\u30ff\u31f0-\u31ff\uac00-\ud7af\u1100-\u11ff"
_CJK = re.compile(f"[{_HAN}{_KANA_HANGUL}]")
_HAN_CHARACTER = re.compile(f"[{_HAN}]")
_KANA_OR_HANGUL = re.compile(f"[{_KANA_HANGUL}]")
_IGNORED = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`|https?://\S+|\S+@\S+\.\w+|\$[^$\n]*\$", re.DOTALL)
# A Latin-script word; hyphens and apostrophes join one (state-of-the-art, scikit-learn, O'Brien, McDonald's).
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+(?:['\u2019-][A-Za-z\u00c0-\u024f]+)*")
# A stretch of text with no Han character and no CJK punctuation (the full-width comma, colon, parentheses, the
# enumeration comma, title marks...): Chinese text around it ends an English phrase, so `numpy、pandas、scikit-learn`
# is three terms in a list, not one phrase.
_NON_CHINESE_STRETCH = re.compile(f"[^{_HAN}\u3000-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]+")
# Parenthesised text, in ASCII or full-width parentheses.
_PARENTHESISED = re.compile(r"[(\uff08]([^()\uff08\uff09]*)[)\uff09]")
# In a Chinese response, this many Latin words in a row (no Han character or CJK punctuation between) make an
# English phrase: a mix. Fewer are names, acronyms, units or technical terms (Python, GPU, CPU 占用率), which Chinese
# text uses freely; longer proper names and parenthesised glosses are no mix either (`_is_name`, `_is_gloss`).
FOREIGN_PHRASE_WORDS = 3
# Lower-case words inside a proper name or title (Bank of Scotland, Belt and Road, Council on Foreign Relations, The
# Hitchhiker's Guide to the Galaxy, Gone with the Wind, Banco de España, Ludwig van Beethoven).
NAME_CONNECTORS = frozenset(
    (
        *("of", "and", "the", "for", "on", "in", "at", "to", "from", "by", "with", "or", "as", "a", "an", "upon"),
        *("de", "del", "della", "des", "du", "da", "di", "la", "le", "van", "von", "der", "den", "y", "und"),
    )
)
# A parenthesised gloss that is not a name glosses a term (large language model, return on investment): longer, or
# with a clause word in it, it reads as a phrase of its own.
GLOSS_TERM_WORDS = 4
# Words that make a clause rather than a term: pronouns, forms of be / have / do, modals, negation, subordinators.
CLAUSE_WORDS = frozenset(
    (
        *("i", "you", "he", "she", "it", "we", "they", "this", "that", "these", "those", "there"),
        *("is", "are", "was", "were", "am", "be", "been", "being", "has", "have", "had", "do", "does", "did"),
        *("can", "could", "will", "would", "shall", "should", "may", "might", "must"),
        *("not", "because", "if", "when", "which", "who", "please"),
    )
)


def _is_name(words: Sequence[str]) -> bool:
    """Whether Latin words read as one proper name: capitalised words (or acronyms, `iPhone`), connectors between.

    Royal Bank of Scotland, National Aeronautics and Space Administration, the Daily Telegraph, IBM.
    """
    named = all(_capitalised(word) or word in NAME_CONNECTORS for word in words)
    return bool(words) and named and _capitalised(words[-1])


def _capitalised(word: str) -> bool:
    return any(character.isupper() for character in word)


def _is_gloss(text: str) -> bool:
    """Whether parenthesised text is a Latin-script gloss: words that name a thing, not words that say something.

    A name, or a term (`large language model`): at most `GLOSS_TERM_WORDS` words, no clause word, no sentence end.
    """
    words = _LATIN_WORD.findall(text)
    if not words or _HAN_CHARACTER.search(text):
        return False
    says_something = text.rstrip().endswith((".", "!", "?")) or any(word.lower() in CLAUSE_WORDS for word in words)
    return _is_name(words) or (len(words) <= GLOSS_TERM_WORDS and not says_something)


def single_language(response: str, language: str) -> bool:
    """Whether `response` is in `language` ("zh" or "en") only: no language mixing, judged by script.

    Code (fenced or inline), URLs, e-mail addresses, inline math, numbers and punctuation are ignored. English:
    Latin words and no CJK character at all. Chinese: Han characters, no kana or Hangul, and no English phrase: a
    run of `FOREIGN_PHRASE_WORDS` Latin words with no Han character or CJK punctuation between, unless the run is
    a proper name or a parenthesised gloss (`苏格兰皇家银行 (Royal Bank of Scotland)`, full-width parentheses too). A
    translation keeps such names; an English sentence or clause inside a Chinese answer is a switch of language.
    """
    text = _IGNORED.sub(" ", response)
    if language == "en":
        return bool(_LATIN_WORD.search(text)) and not _CJK.search(text)
    if language == "zh":
        if not _HAN_CHARACTER.search(text) or _KANA_OR_HANGUL.search(text):
            return False
        # A gloss is set aside as an enumeration comma would be: it ends the stretch around it.
        text = _PARENTHESISED.sub(lambda match: "\u3001" if _is_gloss(match[1]) else match[0], text)
        for stretch in _NON_CHINESE_STRETCH.findall(text):
            words = _LATIN_WORD.findall(stretch)
            if len(words) >= FOREIGN_PHRASE_WORDS and not _is_name(words):
                return False
        return True
    raise ValueError(f"unknown response language {language!r} (expected 'zh' or 'en')")
