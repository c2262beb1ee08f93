"""AlpacaEval 2.0: 805 instructions, our output judged against the reference model's (GPT-4 Turbo,
`gpt4_turbo`) by a judge model, and the length-controlled win rate.

This follows alpaca_eval 0.6.6's default annotator for 2.0, `weighted_alpaca_eval_gpt4_turbo`: the
`alpaca_eval_clf_gpt4_turbo` prompt (the two outputs labelled `m` and `M`), one token at temperature 1 with the top 5
log-probabilities, and the preference P(m) / (P(m) + P(M)) read from them. Which output is shown first is drawn per
instruction exactly as alpaca_eval draws it (`random.Random("is_switched_outputs" + instruction + "0")`), so the
order, and with it the position bias, is the same as the leaderboard's. An endpoint that returns no log-probabilities
is read from the token it answered (`m` or `M`), a binary preference; the provenance counts such judgments.
A judgment is unscorable when its content is null, when a first token's log-probabilities come without top entries,
name neither label, or give a label a log-probability that is missing, not a number, or outside (-inf, 0], and,
without log-probabilities, when the answered token is neither label (`finish_reason` "length" is expected: one token
is asked for). An unscorable judgment is never cached; it is asked again and then recorded as failed with the reason,
left out of both win rates and counted in the provenance.
An output identical to the reference (exact string equality, no stripping) is not sent to the judge: alpaca_eval's
`PairwiseAnnotatorLocal._preprocess` records it as a tie (preference 1.5 on its 1-2 scale, 0.5 here) and its
`_annotate` only asks about rows still without a preference; the tie counts in both win rates, as alpaca_eval's
`get_winrate` and `get_length_controlled_winrate` count it (in the GLM with a length difference of 0).

The length-controlled win rate is alpaca_eval's `get_length_controlled_winrate` (`alpaca_eval.metrics.glm_winrate`),
re-implemented here: alpaca_eval 0.6.6 installs into this environment without changing a pin, but does not import
(its `utils` imports `pkg_resources`, which setuptools >= 81 no longer ships), and it downloads its GLM data from the
hub inside the function. The GLM `length_controlled_v1` is fitted to the soft preferences,
`logit P(ours wins) = w_len * tanh(std_delta_len) + w_diff * instruction_difficulty + w_0` with
`std_delta_len = (len(reference) - len(ours)) / std` in characters, jointly with AlpacaEval's annotations of the two
"gamed" (verbose/concise) baselines at weight 0.2 / 2 (`df_gamed.csv` from the hub dataset tatsu-lab/alpaca_eval,
which also holds each instruction's difficulty), by L1-penalised logistic regression with the penalty chosen by
5-fold cross-validation (scikit-learn's LogisticRegressionCV, liblinear, no intercept, as alpaca_eval). The LC win
rate is the mean prediction with the length difference set to 0, in percent; its standard error is that of the mean
prediction, as alpaca_eval reports it. tests/test_judges.py pins the LC win rates, standard errors and weights that
alpaca_eval 0.6.6's own function gives (run in a scratch environment with setuptools < 81) on synthetic annotations
with ties, for all three GLMs.
"""

from __future__ import annotations

import io
import math
import os
import random
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onmerge.atomic import write_json
from onmerge.judges.endpoint import (
    ChatClient,
    JudgeEndpoint,
    Unscorable,
    failure_summary,
    first_choice,
    judge_model,
    message_content,
)
from onmerge.judges.sources import SourceText, full_set_or_subset, read_answers, read_records, read_source
from onmerge.judges.transport import public_url
from onmerge.progress import Progress

if TYPE_CHECKING:
    from onmerge.paired import MeanMeasure

JUDGE_MODEL = "gpt-4-1106-preview"  # the paper's AlpacaEval 2.0 judge (alpaca_eval's weighted_alpaca_eval_gpt4_turbo)
INSTRUCTION_COUNT = 805
REFERENCE_GENERATOR = "gpt4_turbo"
JUDGE_PARAMETERS = {"max_tokens": 1, "temperature": 1, "logprobs": True, "top_logprobs": 5}
ORDER_SEED = 0  # alpaca_eval's annotator seed
PROMPT_VERSION = "alpaca_eval 0.6.6 weighted_alpaca_eval_gpt4_turbo (alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt)"
FIRST, SECOND = "m", "M"  # the labels of the output shown first and second
IDENTICAL = "identical"  # how a tie between an output and the identical reference output is read

# alpaca_eval 0.6.6's evaluators_configs/alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt, as its prompt_to_chatml
# splits it into messages; {instruction}, {output_1}, {output_2} are replaced in that order, first occurrence only.
SYSTEM_PROMPT = (
    "You are a highly efficient assistant, who evaluates and selects the best large language model (LLMs) "
    "based on the quality of their responses to a given instruction. This process will be used to create a "
    "leaderboard reflecting the most accurate and human-preferred answers."
)
USER_TEMPLATE = (
    "I require a leaderboard for various large language models. I'll provide you with prompts given to "
    "these models and their corresponding outputs. Your task is to assess these responses, and select the "
    "model that produces the best output from a human perspective.\n\n## Instruction\n\n{\n    "
    '"instruction": """{instruction}""",\n}\n\n## Model Outputs\n\nHere are the unordered outputs from the '
    "models. Each output is associated with a specific model, identified by a unique model identifier.\n\n"
    '{\n    {\n        "model_identifier": "m",\n        "output": """{output_1}"""\n    },\n    '
    '{\n        "model_identifier": "M",\n        "output": """{output_2}"""\n    }\n}\n\n## Task\n\n'
    "Evaluate the models based on the quality and relevance of their outputs, and select the model that "
    "generated the best output. Answer by providing the model identifier of the best model. We will use "
    "your output as the name of the best model, so make sure your output only contains one of the "
    "following model identifiers and nothing else (no quotes, no spaces, no new lines, ...): m or M.\n\n## "
    "Best Model Identifier"
)

LENGTH, DIFFICULTY, NOT_GAMED = "np.tanh(std_delta_len)", "instruction_difficulty", "not_gamed_baseline.astype(float)"


@dataclass(frozen=True)
class Glm:
    """One of alpaca_eval's GLM_INFO entries: the features of its formula and the weight of the gamed baselines."""

    features: tuple[str, ...]
    regularize_to_baseline_lambda: float | None
    n_splits: int = 5


GLMS = {
    "length_controlled_v1": Glm((LENGTH, DIFFICULTY, NOT_GAMED), 0.2),
    "length_controlled_noreg": Glm((LENGTH, DIFFICULTY, NOT_GAMED), None),
    "length_controlled_minimal": Glm((LENGTH, NOT_GAMED), None),
}
GAMED_COLUMNS = ("index", "preference", "std_delta_len", "instruction_difficulty", "not_gamed_baseline")


@dataclass(frozen=True)
class Instruction:
    index: int  # position in the full AlpacaEval set: the GLM's instruction difficulty is looked up by it
    instruction: str
    reference_output: str
    reference_generator: str


@dataclass(frozen=True)
class Comparison:
    """One instruction judged: P(our output is better), how it was read, and which output was shown first; or, when
    no answer could be scored, why."""

    index: int
    switched: bool | None  # None when our output is the reference's: nothing was shown
    preference: float | None  # None when the judgment failed
    read_from: str | None  # "logprobs", "token", or IDENTICAL (a tie without asking the judge); None when failed
    output_length: int
    reference_length: int
    reply: Mapping[str, Any] | None = None  # what the judge answered: its text and first-token log-probabilities
    failed: bool = False
    reason: str | None = None


def parse_instructions(records: Sequence[Mapping[str, Any]], where: str, limit: int | None = None) -> list[Instruction]:
    """AlpacaEval's evaluation set with the reference outputs (`instruction`, `output`, `generator` per record):
    exactly 805 records, or the first `limit` of them."""
    instructions = []
    for i, record in enumerate(records):
        instruction, output = record.get("instruction"), record.get("output")
        if not isinstance(instruction, str) or not isinstance(output, str):
            raise ValueError(f"{where} record {i}: instruction and output (the reference's) must be strings")
        instructions.append(Instruction(i, instruction, output, str(record.get("generator", "unknown"))))
    texts = [item.instruction for item in instructions]
    if len(set(texts)) != len(texts):
        repeated = next(item.index for item in instructions if texts.count(item.instruction) > 1)
        raise ValueError(f"{where}: instruction {repeated} appears more than once")
    return full_set_or_subset(instructions, limit, INSTRUCTION_COUNT, "instructions", "AlpacaEval", where)


def read_instructions(source: str, limit: int | None = None) -> tuple[list[Instruction], SourceText]:
    """The instructions of `source` (parse_instructions) and the text read."""
    records, text = read_records(source)
    return parse_instructions(records, text.source, limit), text


def outputs_by_instruction(
    rows: Sequence[Mapping[str, Any]], instructions: Sequence[Instruction], where: str
) -> list[str]:
    """Our output for each instruction, matched by the instruction's text (as alpaca_eval merges outputs)."""
    by_text = {}
    for i, row in enumerate(rows):
        if not isinstance(row.get("instruction"), str) or not isinstance(row.get("output"), str):
            raise ValueError(f"{where} output {i}: instruction and output must be strings")
        by_text[row["instruction"]] = row["output"]
    missing = [item.index for item in instructions if item.instruction not in by_text]
    if missing:
        raise ValueError(f"{where} has no outputs for instructions {missing[:10]} (of {len(missing)} missing)")
    return [by_text[item.instruction] for item in instructions]


def is_switched(instruction: str, seed: int = ORDER_SEED) -> bool:
    """Whether our output is shown first, drawn as alpaca_eval's RandomSwitchTwoColumnsProcessor draws it."""
    return random.Random(f"is_switched_outputs{instruction}{seed}").choices([False, True], k=1)[0]


def judge_request(item: Instruction, output: str, model: str) -> tuple[bool, dict[str, Any]]:
    """(switched, chat-completion request body): the reference is `output_1` (`m`) unless switched."""
    switched = is_switched(item.instruction)
    first, second = (output, item.reference_output) if switched else (item.reference_output, output)
    user = USER_TEMPLATE
    for placeholder, value in (("{instruction}", item.instruction), ("{output_1}", first), ("{output_2}", second)):
        user = user.replace(placeholder, value, 1)
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
    return switched, {"model": model, "messages": messages, **JUDGE_PARAMETERS}


def first_shown_preference(response: Mapping[str, Any]) -> tuple[float, str]:
    """(P(the output shown first is better), read from): alpaca_eval's logprob_parser (not binarized) on the top
    log-probabilities of the first token; without log-probabilities, the answered token itself (1 or 0).
    Unscorable where alpaca_eval would get NaN or fail (module docstring)."""
    answered = message_content(response)
    choice = first_choice(response)
    if not _logprob_tokens(choice):
        if answered.strip() not in (FIRST, SECOND):
            raise Unscorable(f"answered {answered[:40]!r}, neither {FIRST} nor {SECOND}, without log-probabilities")
        return float(answered.strip() == FIRST), "token"
    found = _label_logprobs(_top_logprobs(choice))
    shift = max(found.values())  # logsumexp, as alpaca_eval's, safe from underflow
    both = shift + math.log(sum(math.exp(value - shift) for value in found.values()))
    return math.exp(found.get(FIRST, -math.inf) - both), "logprobs"


def _logprob_tokens(choice: Mapping[str, Any]) -> Any:
    """`logprobs.content`, the answered tokens' log-probabilities; None or empty where the endpoint gave none."""
    logprobs = choice.get("logprobs")
    return logprobs.get("content") if isinstance(logprobs, dict) else None


def _top_logprobs(choice: Mapping[str, Any]) -> Any:
    """The first answered token's `top_logprobs` as the endpoint gave them; None where it gave none."""
    tokens = _logprob_tokens(choice)
    first = tokens[0] if isinstance(tokens, list) and tokens else None
    return first.get("top_logprobs") if isinstance(first, dict) else None


def _label_logprobs(top: Any) -> dict[str, float]:
    """The log-probabilities of the labels among the first token's top log-probabilities."""
    if not isinstance(top, list) or not top:
        raise Unscorable("the first token's top log-probabilities are missing")
    found = {}
    for entry in top:
        if isinstance(entry, dict) and entry.get("token") in (FIRST, SECOND):
            value = entry.get("logprob")
            if isinstance(value, bool) or not isinstance(value, int | float) or not -math.inf < value <= 0:
                raise Unscorable(f"the log-probability of {entry['token']} is {value!r}, not a number in (-inf, 0]")
            found[entry["token"]] = float(value)
    if not found:
        raise Unscorable(f"neither {FIRST} nor {SECOND} among the first token's top log-probabilities")
    return found


def is_identical(item: Instruction, output: str) -> bool:
    """Whether our output is the reference's, which alpaca_eval scores as a tie without asking the judge (it
    compares `output_1 == output_2` as given)."""
    return output == item.reference_output


def compare(client: ChatClient, item: Instruction, output: str, model: str) -> Comparison:
    lengths = len(output), len(item.reference_output)
    if is_identical(item, output):
        return Comparison(item.index, None, 0.5, IDENTICAL, *lengths)
    switched, request = judge_request(item, output, model)
    judged = client.complete(request, first_shown_preference)
    reply = judge_reply(judged.response)
    if judged.value is None:
        return Comparison(item.index, switched, None, None, *lengths, reply, True, judged.failure)
    first, read_from = judged.value
    preference = first if switched else 1.0 - first
    return Comparison(item.index, switched, preference, read_from, *lengths, reply)


def judge_reply(response: Mapping[str, Any]) -> dict[str, Any] | None:
    """The judge's answer as the judgment record keeps it, for audit: the text and the first token's top
    log-probabilities (where the endpoint gave them), from which the preference was read; None without a message."""
    try:
        choice = first_choice(response)
    except Unscorable:
        return None
    return {"content": choice["message"].get("content"), "top_logprobs": _top_logprobs(choice)}


def judge_outputs(
    client: ChatClient, instructions: Sequence[Instruction], outputs: Sequence[str], model: str, workers: int = 8
) -> list[Comparison]:
    """Every instruction judged, `workers` at a time (ties for identical outputs without a request); the endpoint
    is checked first if any request is not cached yet."""
    pairs = list(zip(instructions, outputs, strict=True))
    asked = [judge_request(item, output, model)[1] for item, output in pairs if not is_identical(item, output)]
    if any(client.cached(request, first_shown_preference) is None for request in asked):
        client.preflight(model)
    with Progress("judging", len(pairs), "instructions") as progress, ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda pair: progress.counted(compare(client, *pair, model)), pairs))


def raw_win_rate(preferences: Sequence[float]) -> dict[str, float]:
    """alpaca_eval's `win_rate` and `standard_error` (percent) over the judged preferences."""
    import numpy as np

    valid = np.asarray(preferences, dtype=float)
    if valid.size == 0:
        raise ValueError("no judged preference: AlpacaEval cannot be scored")
    stderr = float(valid.std(ddof=1) / math.sqrt(valid.size)) * 100 if valid.size > 1 else math.nan
    return {"value": float(valid.mean()) * 100, "stderr": stderr, "n": int(valid.size)}


def read_gamed(source: str) -> Any:
    """alpaca_eval's `df_gamed.csv` (annotations of its verbose and concise "gamed" baselines, with each
    instruction's difficulty) as a DataFrame; ValueError names missing columns."""
    import pandas as pd

    text = read_source(source)
    try:
        frame = pd.read_csv(io.StringIO(text.text))
    except (ValueError, pd.errors.ParserError) as error:
        raise ValueError(f"{text.source}: not a CSV file ({error})") from error
    missing = [column for column in GAMED_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"{text.source} lacks the columns {missing} of alpaca_eval's df_gamed.csv")
    frame = frame[list(GAMED_COLUMNS)].copy()
    frame["not_gamed_baseline"] = frame["not_gamed_baseline"].astype(bool)
    frame.attrs["sha256"] = text.sha256
    return frame


def check_glm(glm_name: str, gamed: Any, indices: Sequence[int], length_differences: Any) -> Any:
    """ValueError unless the GLM can be fitted to these instructions (cheap, so it runs before any judging); the
    instruction difficulty by instruction index where the GLM uses it, else None."""
    import numpy as np

    if glm_name not in GLMS:
        raise ValueError(f"unknown GLM {glm_name!r} (known: {sorted(GLMS)})")
    glm = GLMS[glm_name]
    if len(indices) < glm.n_splits:
        raise ValueError(f"the GLM needs at least {glm.n_splits} instructions, not {len(indices)}")
    if not float(np.std(length_differences)) > 0:
        raise ValueError("the length-controlled win rate needs outputs whose length differences vary")
    if DIFFICULTY not in glm.features and not glm.regularize_to_baseline_lambda:
        return None
    if gamed is None:
        raise ValueError(f"the GLM {glm_name} needs alpaca_eval's df_gamed.csv (instruction difficulty)")
    difficulty = gamed.drop_duplicates("index").set_index("index")["instruction_difficulty"]
    unknown = sorted(set(indices) - set(difficulty.index))
    if unknown:
        raise ValueError(f"df_gamed.csv has no instruction difficulty for instructions {unknown[:10]}")
    return difficulty


def length_controlled_win_rate(
    comparisons: Sequence[Comparison], glm_name: str = "length_controlled_v1", gamed: Any = None
) -> tuple[dict[str, float], dict[str, float], list[float]]:
    """alpaca_eval's length-controlled win rate: ({value, stderr, n} in percent, the GLM's weights, the per-
    instruction predicted preference at zero length difference). `gamed` (read_gamed) is required by the GLMs that
    use the instruction difficulty."""
    import numpy as np
    import pandas as pd

    delta = np.asarray([c.reference_length - c.output_length for c in comparisons], dtype=float)
    difficulty = check_glm(glm_name, gamed, [c.index for c in comparisons], delta)
    glm = GLMS[glm_name]
    spread = float(delta.std(ddof=1))
    ours = pd.DataFrame(
        {
            "index": [c.index for c in comparisons],
            "preference": [c.preference for c in comparisons],
            "std_delta_len": delta / spread,
            "not_gamed_baseline": True,
        }
    )
    if difficulty is not None:
        ours["instruction_difficulty"] = ours["index"].map(difficulty).astype(float)
    train, weight = ours, np.ones(len(ours))
    if glm.regularize_to_baseline_lambda:
        train = pd.concat([gamed, ours], axis=0, ignore_index=True)
        gamed_rows = ~train["not_gamed_baseline"].astype(bool).to_numpy()
        weight = np.where(gamed_rows, glm.regularize_to_baseline_lambda / 2, 1.0)
    known = train["preference"].notna().to_numpy()
    train, weight = train[known], weight[known]
    if len(train) < glm.n_splits:
        raise ValueError(f"the GLM needs at least {glm.n_splits} judged instructions, not {len(train)}")
    coefficients = _fit_soft_logistic_cv(_design(train, glm), train["preference"].to_numpy(float), weight, glm.n_splits)
    test = ours.assign(std_delta_len=0.0)
    predicted = 1.0 / (1.0 + np.exp(-(_design(test, glm) @ coefficients)))
    stderr = float(predicted.std(ddof=1) / math.sqrt(predicted.size)) * 100 if predicted.size > 1 else math.nan
    value = {"value": float(predicted.mean()) * 100, "stderr": stderr, "n": int(predicted.size)}
    weights = {feature: float(w) for feature, w in zip(glm.features, coefficients, strict=True)}
    return value, weights, [float(p) for p in predicted]


def _design(frame: Any, glm: Glm) -> Any:
    """The GLM's design matrix, columns in its formula's order (patsy's, in alpaca_eval)."""
    import numpy as np

    columns = {
        LENGTH: np.tanh(frame["std_delta_len"].to_numpy(float)),
        DIFFICULTY: frame["instruction_difficulty"].to_numpy(float) if DIFFICULTY in glm.features else None,
        NOT_GAMED: frame["not_gamed_baseline"].astype(float).to_numpy(),
    }
    return np.column_stack([columns[feature] for feature in glm.features])


def _fit_soft_logistic_cv(features: Any, targets: Any, weight: Any, n_splits: int) -> Any:
    """alpaca_eval's fit_LogisticRegressionCV with probabilities as targets: each row twice (label 1 weighted by
    p, label 0 by 1 - p, the two in one fold), the L1 penalty chosen over 10 Cs by K-fold log loss, no intercept,
    liblinear."""
    import numpy as np
    import sklearn
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GroupKFold

    x = np.vstack([features, features])
    y = np.concatenate([np.ones(len(targets)), np.zeros(len(targets))])
    true_prob = np.concatenate([targets, 1.0 - targets])
    true_weight = np.concatenate([weight, weight])
    scorer = make_scorer(_soft_log_loss, response_method="predict_proba", greater_is_better=False)
    with sklearn.config_context(enable_metadata_routing=True):
        scorer = scorer.set_score_request(true_prob=True, true_sample_weight=True)
        model = LogisticRegressionCV(
            cv=GroupKFold(n_splits=n_splits),
            scoring=scorer,
            l1_ratios=(1.0,),
            solver="liblinear",
            fit_intercept=False,
            random_state=123,
            use_legacy_attributes=False,
        )
        model.fit(
            x,
            y,
            sample_weight=true_prob * true_weight,
            groups=np.concatenate([np.arange(len(targets)), np.arange(len(targets))]),
            true_prob=true_prob,
            true_sample_weight=true_weight,
        )
    return model.coef_[0]


def _soft_log_loss(y_true: Any, y_pred: Any, true_prob: Any, true_sample_weight: Any) -> float:
    """alpaca_eval's logloss_continuous: the duplicated rows' labels turned back into the soft target."""
    import numpy as np

    target = np.where(y_true == 1, true_prob, 1 - true_prob)
    predicted = np.clip(y_pred, 1e-15, 1 - 1e-15)
    losses = target * np.log(predicted) + (1 - target) * np.log(1 - predicted)
    return float(-np.mean(losses * true_sample_weight))


def score_alpacaeval(
    client: ChatClient,
    instructions: Sequence[Instruction],
    outputs: Sequence[str],
    model: str,
    *,
    glm_name: str = "length_controlled_v1",
    gamed: Any = None,
    workers: int = 8,
) -> tuple[dict[str, dict[str, float]], dict[str, Any], list[dict[str, Any]]]:
    """(metrics `alpacaeval2_lc` and `alpacaeval2_raw` in percent, judging provenance, one record per instruction);
    the GLM's inputs are checked before any judging."""
    lengths = [len(item.reference_output) - len(output) for item, output in zip(instructions, outputs, strict=True)]
    check_glm(glm_name, gamed, [item.index for item in instructions], lengths)
    comparisons = judge_outputs(client, instructions, outputs, model, workers)
    scored = [c for c in comparisons if not c.failed]
    if not scored:
        reasons = failure_summary([c.reason or "" for c in comparisons])
        raise ValueError(
            f"every one of the {len(comparisons)} judgments failed, so AlpacaEval cannot be scored: {reasons}"
        )
    raw = raw_win_rate([c.preference for c in scored])
    lc, weights, predicted = length_controlled_win_rate(scored, glm_name, gamed)
    read_from = [c.read_from for c in comparisons]
    provenance = {
        "judge_model": model,
        "judge_base_url_host": client.endpoint.host,
        "judge_parameters": JUDGE_PARAMETERS,
        "prompt_version": PROMPT_VERSION,
        "order_seed": ORDER_SEED,
        "instructions_judged": len(comparisons),
        "preferences_from_logprobs": read_from.count("logprobs"),
        "preferences_from_token": read_from.count("token"),
        "judgments_failed": len(comparisons) - len(scored),
        "scoring_attempts": client.scoring_attempts,
        "ties_for_identical_outputs": read_from.count(IDENTICAL),
        "reference_generators": sorted({item.reference_generator for item in instructions}),
        "glm": glm_name,
        "glm_weights": weights,
    }
    if gamed is not None:
        provenance["gamed_annotations_sha256"] = gamed.attrs.get("sha256")
    predicted_by_index = {c.index: p for c, p in zip(scored, predicted, strict=True)}
    records = [asdict(c) | {"glm_preference": predicted_by_index.get(c.index)} for c in comparisons]
    return {"alpacaeval2_lc": lc, "alpacaeval2_raw": raw}, provenance, records


def judge_file(
    instructions_source: str,
    answers_path: Path,
    cache_dir: Path,
    out: Path,
    *,
    gamed_source: str | None = None,
    glm_name: str = "length_controlled_v1",
    limit: int | None = None,
    judge_model_choice: str | None = None,
    workers: int = 8,
    environ: Mapping[str, str] = os.environ,
    **client_options: Any,
) -> ChatClient:
    """AlpacaEval 2.0 of one outputs file, written to `out` as `{"metrics", "provenance", "judgments"}`.

    Instructions, outputs, the GLM's data and the endpoint's configuration are checked before any judging; returns
    the client (its cache hits and misses).
    """
    instructions, text = read_instructions(instructions_source, limit)
    answers_file, answers_record = read_answers(answers_path)
    outputs = outputs_by_instruction(answers_file.get("outputs", []), instructions, str(answers_path))
    gamed = read_gamed(gamed_source) if gamed_source is not None else None
    model = judge_model(judge_model_choice, JUDGE_MODEL, environ)
    client = ChatClient(JudgeEndpoint.from_environment(environ), cache_dir, **client_options)
    metrics, judging, records = score_alpacaeval(
        client, instructions, outputs, model, glm_name=glm_name, gamed=gamed, workers=workers
    )
    provenance = {
        "instructions": text.source,
        "instructions_sha256": text.sha256,
        "gamed_annotations": public_url(gamed_source) if gamed_source else None,
        **answers_record,
        "limit": limit,
    }
    write_json(out, {"metrics": metrics, "provenance": provenance | judging, "judgments": records})
    return client


def preference_measure(judgments: Sequence[Mapping]) -> MeanMeasure:
    """One model's judgments as a paired measure (`onmerge.paired.Measure`, `onmerge.worlds.Judged`): alpaca_eval's
    per-instruction preference predicted at zero length difference (`glm_preference`), in percent; resampling these
    is alpaca_eval's own standard error's reading, where refitting the cross-validated GLM per resample would take
    hours."""
    import numpy as np

    from onmerge.items import Items
    from onmerge.paired import MeanMeasure

    rows = [judgment for judgment in judgments if judgment.get("glm_preference") is not None]
    ids = tuple(str(judgment["index"]) for judgment in rows)
    preferences = np.asarray([float(judgment["glm_preference"]) for judgment in rows])
    return MeanMeasure(Items(ids, preferences, np.ones(len(rows))), 100.0)
