"""The toy world: two synthetic languages, seven skill families, and 14 benchmark columns that mirror the paper's.

Everything a toy model learns or is tested on comes from the item generators here, so that pre-training text, SFT
conversations, preference prompts and held-out benchmark items share one definition of each skill:

| category | columns (paper analogue) | what is asked |
|---|---|---|
| math | toy_gsm8k, toy_math401, toy_math23k | two-step word problems, arithmetic, word problems in language B |
| code | toy_humaneval, toy_mbpp, toy_ds1000, toy_codeapex | small python functions, run against tests in a sandbox |
| instruction following | toy_ifeval_prompt, toy_ifeval_inst | a request plus verifiable format instructions |
| reading comprehension | toy_coqa, toy_drop | a passage and a question; gold-keyword recall |
| knowledge | toy_mmlu | multiple choice over facts seen only in pre-training |
| agent | toy_function_calling | a request answered by one JSON function call |
| code-switching | toy_code_switch | answer without mixing the two languages |

Held-out items never appear in training data: every item has an identity (its prompt), and a stable hash of the
identity puts it either in the evaluation partition or in the training partition, never both.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from onmerge.sandbox import run_python

WORLD_SEED = 20240528  # fixes the lexicon and the knowledge base: one world for every run
EVAL_PARTITION = 5  # one identity in EVAL_PARTITION belongs to held-out evaluation

Split = Literal["train", "eval"]
Language = Literal["a", "b"]

# ---------------------------------------------------------------------------------------------------------------
# Vocabulary. Language A uses these words; language B replaces each by a synthetic word (same word order).
# Proper nouns (people, places, countries) and code are shared by both languages.

PEOPLE = ["tom", "ana", "li", "sam", "eva", "max", "ida", "ben", "zoe", "raj"]
ITEMS = ["apples", "books", "coins", "pens", "cups", "stones", "shells", "cards"]
CITIES = ["melka", "torvi", "zanpo", "kirune", "olsa", "vemba", "dorun", "pellis", "qatra", "fenwo", "sulam", "brisk"]
COLORS = ["red", "blue", "green", "yellow", "white", "black", "orange", "purple"]
ANIMALS = ["cat", "dog", "horse", "bird", "fish", "fox", "bear", "wolf"]
FOODS = ["bread", "rice", "soup", "cake", "fruit", "cheese", "beans", "honey"]
TEAMS = ["lions", "eagles", "sharks", "tigers", "owls", "bulls"]
ADJECTIVES = ["small", "big", "old", "new", "quiet", "bright", "warm", "heavy"]

# Every word of a template that can be rendered in language B (tests check none is missing).
_FUNCTION_WORDS = [
    "the",
    "a",
    "an",
    "is",
    "are",
    "has",
    "have",
    "gets",
    "gives",
    "away",
    "more",
    "how",
    "many",
    "does",
    "do",
    "now",
    "what",
    "of",
    "in",
    "and",
    "to",
    "with",
    "be",
    "plus",
    "minus",
    "times",
    "answer",
    "say",
    "first",
    "second",
    "half",
    "points",
    "scored",
    "total",
    "than",
    "lives",
    "like",
    "likes",
    "where",
    "color",
    "who",
    "which",
    "translate",
    "into",
    "language",
    "tell",
    "me",
    "about",
    "it",
    "its",
    "very",
    "yes",
    "no",
    "sure",
    "hope",
    "this",
    "helps",
    "glad",
    "help",
    "here",
    "there",
    "one",
    "we",
    "can",
    "you",
    "your",
    "other",
    "food",
]
_CONTENT_WORDS = ITEMS + COLORS + ANIMALS + FOODS + ADJECTIVES + TEAMS


def _country_names(count: int) -> list[str]:
    """Invented country names; they end in a consonant, so no language-B word (all open syllables) equals one."""
    rng = random.Random(WORLD_SEED - 1)
    names: list[str] = []
    while len(names) < count:
        name = (
            rng.choice("bcdfgklmnprstvz")
            + rng.choice("aeiou")
            + rng.choice("lmnrs")
            + rng.choice(["ia", "or", "an", "ek", "is", "un"])
        )
        if name not in names:
            names.append(name)
    return names


COUNTRIES = _country_names(60)
# Words that stay the same in both languages: proper nouns.
SHARED_WORDS = frozenset(PEOPLE + CITIES + COUNTRIES)


def _synthetic_lexicon() -> dict[str, str]:
    """A one-to-one map from language-A words to pronounceable language-B words, fixed by WORLD_SEED."""
    rng = random.Random(WORLD_SEED)
    syllables = [c + v for c in "bdgklmnprstvz" for v in "aeiou"]
    words_a = sorted(set(_FUNCTION_WORDS + _CONTENT_WORDS))
    taken = set(words_a) | SHARED_WORDS
    lexicon = {}
    for word in words_a:
        while True:
            candidate = "".join(rng.choice(syllables) for _ in range(rng.choice((2, 2, 3))))
            if candidate not in taken:
                break
        taken.add(candidate)
        lexicon[word] = candidate
    return lexicon


LEXICON_B = _synthetic_lexicon()
WORDS_A = frozenset(LEXICON_B)
WORDS_B = frozenset(LEXICON_B.values())
_TOKEN = re.compile(r"[a-z]+|[^a-z]+")


_LEXICON_TO = {"b": LEXICON_B, "a": {b: a for a, b in LEXICON_B.items()}}


def translate(text: str, language: Language) -> str:
    """`text` rendered in `language`: every lexicon word of the other language replaced, everything else kept."""
    lexicon = _LEXICON_TO[language]
    return "".join(lexicon.get(token, token) for token in _TOKEN.findall(text))


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def language_of(text: str) -> Language | None:
    """The language a text is written in, or None if it mixes both or uses neither."""
    words = set(words_of(text))
    has_a, has_b = bool(words & WORDS_A), bool(words & WORDS_B)
    if has_a == has_b:
        return None
    return "a" if has_a else "b"


# ---------------------------------------------------------------------------------------------------------------
# The knowledge base: facts about invented countries, learned only from pre-training text.


@dataclass(frozen=True)
class Country:
    name: str
    capital: str
    flag: str
    animal: str
    food: str


def _knowledge_base() -> list[Country]:
    rng = random.Random(WORLD_SEED + 1)
    capitals = [rng.choice(CITIES) for _ in COUNTRIES]
    return [
        Country(name, capital, rng.choice(COLORS), rng.choice(ANIMALS), rng.choice(FOODS))
        for name, capital in zip(COUNTRIES, capitals, strict=True)
    ]


KNOWLEDGE = _knowledge_base()


def fact_sentences(country: Country) -> list[str]:
    return [
        f"the capital of {country.name} is {country.capital}.",
        f"the color of the flag of {country.name} is {country.flag}.",
        f"the animal of {country.name} is the {country.animal}.",
        f"the food of {country.name} is {country.food}.",
    ]


# ---------------------------------------------------------------------------------------------------------------
# Items. An item is one prompt with what a correct answer needs; `response` is the plain, correct answer an SFT
# model is taught to give.


@dataclass(frozen=True)
class Item:
    task: str
    prompt: str
    response: str
    language: Language = "a"
    gold: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """The prompt text alone: the same question must land in one partition whichever skill asks it."""
        return self.prompt


def partition_of(identity: str) -> Split:
    digest = int.from_bytes(hashlib.blake2b(identity.encode(), digest_size=8).digest(), "little")
    return "eval" if digest % EVAL_PARTITION == 0 else "train"


def _word_problem(rng: random.Random, language: Language) -> Item:
    name, thing = rng.choice(PEOPLE), rng.choice(ITEMS)
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    answer = a + b
    prompt = f"{name} has {a} {thing}. {name} gets {b} more. how many {thing} does {name} have now?"
    response = f"{name} has {a} plus {b} = {answer} {thing}. the answer is {answer}."
    task = "toy_gsm8k" if language == "a" else "toy_math23k"
    return Item(task, translate(prompt, language), translate(response, language), language, {"answer": answer})


def _arithmetic(rng: random.Random, language: Language) -> Item:
    op = rng.choice(["plus", "minus"])
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    answer = a + b if op == "plus" else a - b
    prompt = rng.choice([f"what is {a} {op} {b}?", f"compute {a} {op} {b}."])
    response = f"{a} {op} {b} = {answer}. the answer is {answer}."
    return Item("toy_math401", translate(prompt, language), translate(response, language), language, {"answer": answer})


_FUNCTION_NAMES = ["calc", "solve", "compute", "apply", "make", "get", "run", "find", "eval", "work"]


def _function_name(rng: random.Random) -> str:
    return rng.choice(_FUNCTION_NAMES)


def _code_item(task: str, prompt: str, body: str, tests: list[str]) -> Item:
    response = f"```python\n{body}\n```"
    return Item(task, prompt, response, "a", {"tests": tests})


_ARITHMETIC = [("plus", "+", int.__add__), ("minus", "-", int.__sub__), ("times", "*", int.__mul__)]


def _humaneval(rng: random.Random, language: Language) -> Item:
    """Two steps: `(x op1 k1) op2 k2`."""
    name, x = _function_name(rng), rng.choice(["x", "n", "v", "a"])
    (op1, sym1, fn1), (op2, sym2, fn2) = rng.choice(_ARITHMETIC), rng.choice(_ARITHMETIC)
    k1, k2 = rng.randint(1, 9), rng.randint(1, 9)
    body = f"def {name}({x}):\n    return ({x} {sym1} {k1}) {sym2} {k2}"
    tests = [f"assert {name}({value}) == {fn2(fn1(value, k1), k2)}" for value in (0, 3, -4, 11)]
    prompt = f"write a python function {name}({x}) that returns {x} {op1} {k1}, then {op2} {k2}."
    return _code_item("toy_humaneval", prompt, body, tests)


def _mbpp(rng: random.Random, language: Language) -> Item:
    """Two steps: a combination of two arguments, then plus a constant."""
    name, (a, b), k = (
        _function_name(rng),
        rng.choice([("a", "b"), ("x", "y"), ("m", "n"), ("p", "q")]),
        rng.randint(1, 9),
    )
    what, expression, fn = rng.choice(
        [
            ("larger", f"max({a}, {b})", max),
            ("smaller", f"min({a}, {b})", min),
            ("sum", f"{a} + {b}", int.__add__),
            ("difference", f"{a} - {b}", int.__sub__),
            ("product", f"{a} * {b}", int.__mul__),
        ]
    )
    body = f"def {name}({a}, {b}):\n    return ({expression}) + {k}"
    tests = [f"assert {name}({u}, {v}) == {fn(u, v) + k}" for u, v in ((2, 5), (9, 1), (-3, -7), (4, 4))]
    prompt = f"write a python function {name}({a}, {b}) that returns the {what} of {a} and {b}, plus {k}."
    return _code_item("toy_mbpp", prompt, body, tests)


def _ds1000(rng: random.Random, language: Language) -> Item:
    """Two steps over a list: map every element, then reduce."""
    name, xs = _function_name(rng), rng.choice(["xs", "ys", "nums", "items"])
    (op, symbol, fn), k = rng.choice(_ARITHMETIC), rng.randint(2, 9)
    what, reduce, reducer = rng.choice([("sum", "sum", sum), ("largest", "max", max), ("smallest", "min", min)])
    body = f"def {name}({xs}):\n    return {reduce}([x {symbol} {k} for x in {xs}])"
    tests = [
        f"assert {name}({values}) == {reducer([fn(x, k) for x in values])}" for values in ([1, 2, 3], [5, -2], [7])
    ]
    prompt = f"write a python function {name}({xs}) that returns the {what} of every element of {xs} {op} {k}."
    return _code_item("toy_ds1000", prompt, body, tests)


def _codeapex(rng: random.Random, language: Language) -> Item:
    """Two steps on a string: transform, then repeat or extend."""
    name, s, k = _function_name(rng), rng.choice(["s", "t", "w", "text"]), rng.randint(2, 4)
    suffix = rng.choice(["ok", "end", "yes", "done"])
    first, expression, fn = rng.choice(
        [
            ("in upper case", f"{s}.upper()", str.upper),
            ("in lower case", f"{s}.lower()", str.lower),
            ("reversed", f"{s}[::-1]", lambda v: v[::-1]),
        ]
    )
    then, suffix_code, finish = rng.choice(
        [
            (f"repeated {k} times", f" * {k}", lambda v: v * k),
            (f"followed by {suffix}", f" + {suffix!r}", lambda v: v + suffix),
        ]
    )
    body = f"def {name}({s}):\n    return {expression}{suffix_code}"
    tests = [f"assert {name}({value!r}) == {finish(fn(value))!r}" for value in ("ab", "xYz", "")]
    prompt = f"write a python function {name}({s}) that returns the string {s} {first}, {then}."
    return _code_item("toy_codeapex", prompt, body, tests)


# Verifiable instructions: prompt text, how to make a plain answer follow it, and a check of (response, prompt).
# Checks read any word they need back from the prompt, so scoring needs nothing but the document.
_START_WORD = re.compile(r"start your answer with the word (\w+)")
_END_WORD = re.compile(r"end your answer with the word (\w+)")
Instruction = tuple[str, Callable[[str], str], Callable[[str, str], bool]]


def _first_word_is(response: str, prompt: str) -> bool:
    return (words_of(response) or [""])[0] == _START_WORD.search(prompt).group(1)


def _last_word_is(response: str, prompt: str) -> bool:
    return (words_of(response) or [""])[-1] == _END_WORD.search(prompt).group(1)


def _instructions(rng: random.Random) -> dict[str, Instruction]:
    start, end = rng.choice(["yes", "sure", "here"]), rng.choice(["done", "end", "ok"])
    return {
        "uppercase": (
            "answer in uppercase letters only.",
            str.upper,
            lambda r, _: any(c.isalpha() for c in r) and r == r.upper(),
        ),
        "start_word": (f"start your answer with the word {start}.", lambda r: f"{start} {r}", _first_word_is),
        "end_word": (f"end your answer with the word {end}.", lambda r: f"{r.rstrip('.')} {end}.", _last_word_is),
        "no_commas": ("do not use any commas.", lambda r: r.replace(",", ""), lambda r, _: "," not in r),
        "quotes": (
            "wrap your whole answer in double quotes.",
            lambda r: f'"{r}"',
            lambda r, _: len(r.strip()) > 1 and r.strip()[0] == r.strip()[-1] == '"',
        ),
        "max_words": ("use at most 8 words.", lambda r: r, lambda r, _: 0 < len(r.split()) <= 8),
    }


def _ifeval(rng: random.Random, language: Language) -> Item:
    subject, adjective = rng.choice(ANIMALS + ITEMS + FOODS), rng.choice(ADJECTIVES)
    request, plain = f"tell me about the {subject}.", f"the {subject} is {adjective}."
    catalogue = _instructions(rng)
    chosen = rng.sample(sorted(catalogue), rng.choice((1, 2)))
    if "uppercase" in chosen:  # apply it last, so the other instructions' words are uppercased too
        chosen = [name for name in chosen if name != "uppercase"] + ["uppercase"]
    response = plain
    for name in chosen:
        response = catalogue[name][1](response)
    if "quotes" in chosen and chosen[-1] != "quotes":
        response = catalogue["quotes"][1](response.strip('"'))
    prompt = " ".join([request, *(catalogue[name][0] for name in chosen)])
    return Item("toy_ifeval", prompt, response, "a", {"instructions": chosen, "adjective": adjective})


def _coqa(rng: random.Random, language: Language) -> Item:
    name, city, color, animal, food = (rng.choice(x) for x in (PEOPLE, CITIES, COLORS, ANIMALS, FOODS))
    passage = f"{name} lives in {city}. {name} has a {color} {animal}. {name} likes {food}."
    question, answer, keywords = rng.choice(
        [
            (f"where does {name} live?", f"{name} lives in {city}.", [city]),
            (f"what color is the {animal} of {name}?", f"the {animal} is {color}.", [color]),
            (f"what does {name} like?", f"{name} likes {food}.", [food]),
            (f"what does {name} have?", f"{name} has a {color} {animal}.", [color, animal]),
        ]
    )
    return Item("toy_coqa", f"{passage} {question}", answer, "a", {"keywords": keywords})


def _drop(rng: random.Random, language: Language) -> Item:
    team, first, second = rng.choice(TEAMS), rng.randint(1, 9), rng.randint(1, 9)
    passage = f"the {team} scored {first} points in the first half and {second} points in the second half."
    question, answer = rng.choice(
        [
            (f"how many points did the {team} score in total?", first + second),
            (f"how many points did the {team} score in the first half?", first),
            (f"how many points did the {team} score in the second half?", second),
        ]
    )
    prompt = f"{passage} {question}"
    return Item("toy_drop", prompt, f"the {team} scored {answer} points.", "a", {"keywords": [str(answer)]})


def _knowledge_question(rng: random.Random, language: Language) -> Item:
    """A fact question; the choices are whole answer sentences, scored by likelihood as lm-eval scores MMLU."""
    country = rng.choice(KNOWLEDGE)
    question, answer, pool, sentence = rng.choice(
        [
            (f"what is the capital of {country.name}?", country.capital, CITIES, "the capital of {} is {}."),
            (
                f"what is the color of the flag of {country.name}?",
                country.flag,
                COLORS,
                "the color of the flag of {} is {}.",
            ),
            (f"what is the animal of {country.name}?", country.animal, ANIMALS, "the animal of {} is the {}."),
            (f"what is the food of {country.name}?", country.food, FOODS, "the food of {} is {}."),
        ]
    )
    options = [*rng.sample([option for option in pool if option != answer], 3), answer]
    rng.shuffle(options)
    choices = [sentence.format(country.name, option) for option in options]
    return Item(
        "toy_mmlu",
        question,
        sentence.format(country.name, answer),
        "a",
        {"choices": choices, "answer": options.index(answer)},
    )


_TOOLS = (
    "you can call these functions: get_weather(city), get_time(city), add(a, b), send(name, text), "
    "get_price(food), get_population(country)."
)


def _function_calling(rng: random.Random, language: Language) -> Item:
    city, person, country = rng.choice(CITIES), rng.choice(PEOPLE), rng.choice(COUNTRIES)
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    food = rng.choice(FOODS)
    request, call = rng.choice(
        [
            (f"what is the weather in {city}?", {"name": "get_weather", "arguments": {"city": city}}),
            (f"what time is it in {city}?", {"name": "get_time", "arguments": {"city": city}}),
            (f"please add {a} and {b}.", {"name": "add", "arguments": {"a": a, "b": b}}),
            (f"say {food} to {person}.", {"name": "send", "arguments": {"name": person, "text": food}}),
            (f"how much does {food} cost?", {"name": "get_price", "arguments": {"food": food}}),
            (f"how many people live in {country}?", {"name": "get_population", "arguments": {"country": country}}),
        ]
    )
    return Item("toy_function_calling", f"{_TOOLS} request: {request}", json.dumps(call), "a", {"call": call})


def _code_switch(rng: random.Random, language: Language) -> Item:
    """Translation and open queries whose answer must stay in one language (prompts in A or B)."""
    subject, adjective = rng.choice(ANIMALS + FOODS), rng.choice(ADJECTIVES)
    sentence = f"the {subject} is {adjective}."
    if rng.random() < 0.5:
        target: Language = "b" if language == "a" else "a"
        prompt = translate(f"translate into the other language: {sentence}", language)
        return Item("toy_code_switch", prompt, translate(sentence, target), target, {"target": target})
    prompt = translate(f"tell me about the {subject}.", language)
    return Item("toy_code_switch", prompt, translate(sentence, language), language, {"target": language})


# Skill families whose answers are read the same way, by the benchmarks and by the judge.
MATH_TASKS = frozenset({"toy_gsm8k", "toy_math401", "toy_math23k"})
CODE_TASKS = frozenset({"toy_humaneval", "toy_mbpp", "toy_ds1000", "toy_codeapex"})


@dataclass(frozen=True)
class TaskSpec:
    """One lm-eval task of the toy suite and the columns (metrics) it reports."""

    name: str
    output_type: Literal["generate_until", "multiple_choice"]
    columns: tuple[str, ...]
    max_gen_toks: int = 64


_GENERATORS: dict[str, tuple[Callable[[random.Random, Language], Item], tuple[Language, ...]]] = {
    "toy_gsm8k": (_word_problem, ("a",)),
    "toy_math401": (_arithmetic, ("a",)),
    "toy_math23k": (_word_problem, ("b",)),
    "toy_humaneval": (_humaneval, ("a",)),
    "toy_mbpp": (_mbpp, ("a",)),
    "toy_ds1000": (_ds1000, ("a",)),
    "toy_codeapex": (_codeapex, ("a",)),
    "toy_ifeval": (_ifeval, ("a",)),
    "toy_coqa": (_coqa, ("a",)),
    "toy_drop": (_drop, ("a",)),
    "toy_mmlu": (_knowledge_question, ("a",)),
    "toy_function_calling": (_function_calling, ("a",)),
    "toy_code_switch": (_code_switch, ("a", "b")),
}

TASKS: dict[str, TaskSpec] = {
    name: TaskSpec(
        name,
        "multiple_choice" if name == "toy_mmlu" else "generate_until",
        ("toy_ifeval_prompt", "toy_ifeval_inst") if name == "toy_ifeval" else (name,),
        96 if name in CODE_TASKS else 64,
    )
    for name in _GENERATORS
}

# Each toy metric under the name of the paper's column it stands for (onmerge.aggregate.PAPER_COLUMNS, JUDGED), and
# the toy judge's components under theirs (onmerge.aggregate.JUDGE_COMPONENTS).
PAPER_METRICS: dict[str, str] = {
    "toy_gsm8k": "gsm8k_acc",
    "toy_math401": "math401_acc",
    "toy_math23k": "math23k_acc",
    "toy_ds1000": "ds1000_pass1",
    "toy_mbpp": "mbpp_pass1",
    "toy_codeapex": "codeapex_pass1",
    "toy_humaneval": "humaneval_pass1",
    "toy_ifeval_prompt": "ifeval_strict_prompt_acc",
    "toy_ifeval_inst": "ifeval_strict_instruction_acc",
    "toy_coqa": "coqa_acc",
    "toy_drop": "drop_acc",
    "toy_mmlu": "mmlu_acc",
    "toy_function_calling": "agent_nous_function_call_acc",
    "toy_code_switch": "code_switch_acc",
    "toy_mt_bench": "mt_bench",
    "toy_mt_bench_content": "mt_bench_content",
    "toy_mt_bench_language": "mt_bench_language",
    "toy_mt_bench_manner": "mt_bench_manner",
    "alpacaeval_lc": "alpacaeval2_lc",
    "alpacaeval_raw": "alpacaeval2_raw",
}


def items(task: str, n: int, seed: int, split: Split, distinct: bool = True) -> list[Item]:
    """`n` items of `task` from one partition, drawn deterministically from `seed`.

    Held-out documents must be distinct; training draws may repeat an item (finite skills, like the knowledge base,
    have only so many questions).
    """
    if task not in _GENERATORS:
        raise ValueError(f"unknown toy task {task!r}; known: {sorted(_GENERATORS)}")
    generate, languages = _GENERATORS[task]
    rng = random.Random(f"{task}:{split}:{seed}")
    found: list[Item] = []
    seen: set[str] = set()
    for _ in range(200 * n + 1000):
        if len(found) == n:
            return found
        item = generate(rng, rng.choice(languages))
        if partition_of(item.identity) != split or (distinct and item.identity in seen):
            continue
        seen.add(item.identity)
        found.append(item)
    raise ValueError(f"{task}: could draw only {len(found)} distinct {split} items of {n} asked")


def benchmark_docs(task: str, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Held-out test documents for lm-eval: `id`, `task`, `prompt`, the gold fields, and for multiple choice
    `choices` and `answer`."""
    docs = []
    for index, item in enumerate(items(task, n, seed, "eval")):
        doc = {"id": f"{task}-{index}", "task": task, "prompt": item.prompt, "language": item.language, **item.gold}
        docs.append(doc)
    return docs


# ---------------------------------------------------------------------------------------------------------------
# Scoring, one rule per column, fixed before any model is trained.


def stated_number(response: str) -> int | None:
    """`... the answer is N` if stated (in either language), else the last integer in the response."""
    said = re.findall(r"(?:answer is|" + translate("answer is", "b") + r")\s*(-?\d+)", response)
    if said:
        return int(said[-1])
    numbers = re.findall(r"-?\d+", response)
    return int(numbers[-1]) if numbers else None


def code_of(response: str) -> str:
    """The first fenced code block if there is one, else the whole response."""
    fenced = re.search(r"```(?:python)?\n(.*?)```", response, re.DOTALL)
    return fenced.group(1) if fenced else response


def _function_call_of(response: str) -> Any:
    """The response must be exactly one JSON call, bare or in <tool_call> tags (Hermes format); else None."""
    text = response.strip()
    tagged = re.fullmatch(r"<tool_call>(.*)</tool_call>", text, re.DOTALL)
    try:
        return json.loads(tagged.group(1) if tagged else text)
    except json.JSONDecodeError:
        return None


def share_of_keywords(response: str, keywords: list[str]) -> float:
    found = set(words_of(response)) | set(re.findall(r"-?\d+", response))
    return sum(keyword in found for keyword in keywords) / len(keywords)


def score(task: str, doc: dict[str, Any], response: str) -> dict[str, float]:
    """Column -> value in [0, 1] for one generated response to one held-out document."""
    if task in MATH_TASKS:
        return {task: float(stated_number(response) == doc["answer"])}
    if task in CODE_TASKS:
        return {task: float(run_python(_program(doc, response), timeout=3.0).passed)}
    if task == "toy_ifeval":
        checks = _instructions(random.Random(0))
        results = [checks[name][2](response, doc["prompt"]) for name in doc["instructions"]]
        return {"toy_ifeval_prompt": float(all(results)), "toy_ifeval_inst": sum(results) / len(results)}
    if task in {"toy_coqa", "toy_drop"}:
        return {task: share_of_keywords(response, doc["keywords"])}
    if task == "toy_function_calling":
        return {task: float(_function_call_of(response) == doc["call"])}
    if task == "toy_code_switch":
        return {task: float(language_of(response) == doc["target"])}
    raise ValueError(f"task {task!r} is not scored by generation")


def extracted_answer(task: str, doc: dict[str, Any], response: str) -> str | None:
    """What `score` reads from a response (the number, the program it runs, the call, the language), for the
    per-sample records; None where it reads the whole response (instructions followed, keywords recalled)."""
    if task in MATH_TASKS:
        number = stated_number(response)
        return None if number is None else str(number)
    if task in CODE_TASKS:
        return _program(doc, response)
    if task == "toy_function_calling":
        return json.dumps(_function_call_of(response))
    if task == "toy_code_switch":
        return language_of(response) or "both or neither"
    return None


def _program(doc: dict[str, Any], response: str) -> str:
    """The program a code column runs: the response's code, then the doc's tests."""
    return code_of(response) + "\n\n" + "\n".join(doc["tests"]) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Training data. Pre-training text holds the skills without the chat format; SFT teaches the format on training items.

_SFT_TASKS = list(_GENERATORS)


def _pretraining_text(item: Item) -> str:
    """An item as plain text, the way it could appear in a web corpus: no roles, no chat tokens."""
    if item.task == "toy_mmlu":
        return item.response
    if item.task in CODE_TASKS:
        return f"# {item.prompt}\n{code_of(item.response)}"
    if item.task == "toy_function_calling":
        return f"{item.prompt}\ncall: {item.response}"
    return f"{item.prompt}\n{item.response}"


# Instruction following is what SFT teaches; every other skill is already in the pre-training corpus.
_PRETRAINING_TASKS = [task for task in _GENERATORS if task != "toy_ifeval"]


def pretraining_documents(n: int, seed: int) -> list[str]:
    """`n` raw-text documents covering every skill family in both languages, plus the knowledge base's facts."""
    rng = random.Random(f"pretraining:{seed}")
    facts = [sentence for country in KNOWLEDGE for sentence in fact_sentences(country)]
    per_task = max(1, n // (len(_PRETRAINING_TASKS) + 2))
    pieces = [
        _pretraining_text(item)
        for task in _PRETRAINING_TASKS
        for item in items(task, per_task, seed, "train", distinct=False)
    ]
    documents = []
    while len(documents) < n:
        kind = rng.random()
        if kind < 0.25:  # facts, in both languages: knowledge lives only here
            chosen = rng.sample(facts, 4)
            language = rng.choice(("a", "b"))
            documents.append(" ".join(translate(sentence, language) for sentence in chosen))
        elif kind < 0.35:  # parallel text: what the two languages share
            sentence = rng.choice(facts + [piece.split("\n")[-1] for piece in pieces if "\n" in piece][:200])
            documents.append(f"{sentence} = {translate(sentence, 'b')}")
        else:
            documents.append("\n".join(rng.sample(pieces, 2)))
    return documents


# Chat SFT data closes with an offer of help ("hope this helps!") now and then; the judge likes it, so preference
# tuning can amplify it. The manner is a closing only: it follows the answer, so adding it leaves every token of the
# answer in the context SFT taught it in. (An opener before the answer, as this world once had, cost content by
# itself: with "sure!" forced first, that world's qwen-s SFT model answered 42.5% of 40 held-out toy_gsm8k documents
# right against 62.5% plain, and 15% of toy_math23k against 75%.)
# Answers whose format is the task (instructions to follow, tool calls) are always given bare.
SFT_MANNER_RATE = 0.2
STRICT_FORMAT_TASKS = frozenset({"toy_ifeval", "toy_function_calling"})
CLOSING = {"a": "hope this helps!", "b": translate("hope this helps!", "b")}


def with_manner(response: str, language: Language) -> str:
    """The answer followed by a closing offer of help in `language`, after a space: a tokenizer that splits words at
    spaces (Qwen2's, Llama-3's) encodes the answer to the same tokens with and without the closing."""
    return f"{response} {CLOSING[language]}"


def sft_conversations(n: int, seed: int) -> list[list[dict[str, str]]]:
    """`n` single-turn chats over the training partition of every task: correct answers, some in a helpful manner."""
    rng = random.Random(f"sft:{seed}")
    per_task = -(-n // len(_SFT_TASKS))
    conversations = []
    for task in _SFT_TASKS:
        for item in items(task, per_task, seed + 1, "train", distinct=False):
            response = item.response
            if task not in STRICT_FORMAT_TASKS and rng.random() < SFT_MANNER_RATE:
                response = with_manner(response, item.gold.get("target", item.language))
            conversations.append([{"role": "user", "content": item.prompt}, {"role": "assistant", "content": response}])
    rng.shuffle(conversations)
    return conversations[:n]


def tokenizer_corpus(seed: int) -> list[str]:
    """Text that covers every word, digit and code symbol the world uses, for training the tokenizers."""
    lexicon_lines = [" ".join(sorted(WORDS_A)), " ".join(sorted(WORDS_B)), " ".join(sorted(SHARED_WORDS))]
    chats = [turn["content"] for conversation in sft_conversations(600, seed) for turn in conversation]
    return lexicon_lines * 20 + pretraining_documents(600, seed) + chats
