"""Per-item outcomes: lm-eval's logged samples to items (filters, groups, IFEval's instruction level), the check
against the reported metrics, and a paper evaluation folder read back as the bootstrap's measures."""

import gzip
import json

import numpy as np
import pytest

from onmerge import worlds
from onmerge.cli import main
from onmerge.items import (
    check_against,
    failed,
    lm_eval_source,
    outcomes,
    read_items,
    read_samples,
    write_items,
    write_samples,
)
from onmerge.paired import MeanMeasure, read_measures


def sample(doc_id, metrics, doc=None, filter_name="none"):
    """A generated sample as lm-eval logs it: one request, its response."""
    logged = {"doc_id": doc_id, "doc": doc or {}, "filter": filter_name, "metrics": list(metrics)}
    return logged | {"arguments": [(f"prompt {doc_id}", {})], "resps": [[f"answer {doc_id}"]]} | metrics


def choice(doc_id, acc):
    """A multiple-choice sample: one request per choice, the second the likeliest."""
    requests = [(f"question {doc_id}", " A"), (f"question {doc_id}", " B")]
    logged = {"doc_id": doc_id, "doc": {}, "filter": "none", "metrics": ["acc"], "acc": acc}
    return logged | {"arguments": requests, "resps": [[(-2.0, False)], [(-0.5, True)]]}


RESULTS = {
    "group_subtasks": {"mmlu": ["mmlu_stem", "mmlu_law"], "mmlu_stem": ["mmlu_physics", "mmlu_math"]},
    "samples": {
        "mmlu_physics": [choice(1, 1.0), choice(0, 0.0)],
        "mmlu_math": [choice(0, 1.0)],
        "mmlu_law": [choice(0, 1.0), choice(1, 1.0), choice(2, 0.0)],
        # two filters: one sample per doc and filter; ids from the docs' own `id`
        "onmerge_ds1000": [
            sample(0, {"pass_at_1": 1.0}, {"id": "ds-7"}, "sandbox"),
            sample(0, {"pass_at_1": 0.0}, {"id": "ds-7"}, "raw"),
            sample(1, {"pass_at_1": 0.0}, {"id": "ds-9"}, "sandbox"),
        ],
        # instruction level: a list of outcomes per prompt, pooled over every instruction
        "ifeval": [
            sample(0, {"inst_level_strict_acc": [True, False, True], "prompt_level_strict_acc": False}),
            sample(1, {"inst_level_strict_acc": [True], "prompt_level_strict_acc": True}),
        ],
    },
}
METRICS = {
    "mmlu/acc": {"value": 4 / 6},  # weight_by_size: every doc counts once
    "onmerge_ds1000/pass_at_1,sandbox": {"value": 0.5},
    "ifeval/inst_level_strict_acc": {"value": 3 / 4},
    "ifeval/prompt_level_strict_acc": {"value": 0.5},
}


def extract(task, doc, response):
    return f"{task}: {response}"


def lm_eval_outcomes(results, names):
    return outcomes(results, {name: lm_eval_source(name) for name in names}, extract)


def test_lm_eval_samples_become_items_that_agree_with_the_metrics(tmp_path):
    items, records = lm_eval_outcomes(RESULTS, list(METRICS))
    mmlu = items["mmlu/acc"]
    assert mmlu["ids"] == ["mmlu_physics/0", "mmlu_physics/1", "mmlu_math/0", "mmlu_law/0", "mmlu_law/1", "mmlu_law/2"]
    assert mmlu["scores"] == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert items["onmerge_ds1000/pass_at_1,sandbox"] == {
        "ids": ["ds-7", "ds-9"],
        "scores": [1.0, 0.0],
        "weights": [1.0, 1.0],
    }
    inst = items["ifeval/inst_level_strict_acc"]
    assert inst["scores"] == pytest.approx([2 / 3, 1.0]) and inst["weights"] == [3.0, 1.0]
    write_items(tmp_path / "items.json.gz", items, METRICS)
    read = read_items(tmp_path / "items.json.gz")
    assert read["ifeval/inst_level_strict_acc"].value == pytest.approx(0.75)
    assert gzip.decompress((tmp_path / "items.json.gz").read_bytes()).startswith(b'{"ifeval/')

    # One record per (task, doc, filter) that a metric scored, holding every metric's score of that sample.
    assert len(records) == 6 + 2 + 2  # MMLU's docs, DS-1000's two under the sandbox filter, IFEval's two prompts
    physics = next(r for r in records if r["task"] == "mmlu_physics" and r["doc_id"] == "1")
    assert physics["response"] == " B" and physics["prompt"] == "question 1" and physics["scores"] == {"mmlu/acc": 1.0}
    assert physics["extracted"] == "mmlu_physics:  B"
    ifeval = next(r for r in records if r["task"] == "ifeval" and r["doc_id"] == "0")
    assert ifeval["scores"] == {
        "ifeval/inst_level_strict_acc": [True, False, True],
        "ifeval/prompt_level_strict_acc": False,
    }
    assert failed(ifeval, "ifeval/inst_level_strict_acc") and not failed(physics, "mmlu/acc")
    ds1000 = [r for r in records if r["task"] == "onmerge_ds1000"]
    assert [(r["doc_id"], r["filter"], r["response"]) for r in ds1000] == [
        ("ds-7", "sandbox", "answer 0"),
        ("ds-9", "sandbox", "answer 1"),
    ]
    write_samples(tmp_path / "samples.jsonl.gz", records)
    assert read_samples(tmp_path / "samples.jsonl.gz") == json.loads(json.dumps(records))


def test_an_aggregate_that_is_not_a_mean_over_items_is_refused_and_nothing_is_written(tmp_path):
    items, _ = lm_eval_outcomes(RESULTS, ["mmlu/acc"])
    unweighted = {"mmlu/acc": {"value": (1 / 2 + 1 / 1 + 2 / 3) / 3}}  # a mean of task means, not of docs
    with pytest.raises(ValueError, match="mmlu/acc: the mean over its 6 items"):
        write_items(tmp_path / "items.json.gz", items, unweighted)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="no per-item 'f1'"):
        lm_eval_outcomes(RESULTS, ["ifeval/f1"])
    with pytest.raises(ValueError, match="log_samples"):
        lm_eval_outcomes({"results": {}}, ["mmlu/acc"])
    check_against(items, {"mmlu/acc": {"value": 4 / 6}})


def test_a_paper_evaluation_folder_reads_back_as_measures(tmp_path):
    write_items(
        tmp_path / "items.json.gz",
        {"onmerge_gsm8k/acc": {"ids": ["a", "b"], "scores": [1.0, 0.0], "weights": [1.0, 1.0]}},
        {"onmerge_gsm8k/acc": {"value": 0.5}},
    )
    judgments = [
        {"question_id": 81, "turn": 1, "score": 8.0},
        {"question_id": 81, "turn": 2, "score": 6.0},
        {"question_id": 82, "turn": 1, "score": 3.0},
        {"question_id": 82, "turn": 2, "score": None},  # no rating: not scored, as MT-Bench's mean leaves it out
    ]
    (tmp_path / "mt_bench.json").write_text(json.dumps({"metrics": {}, "judgments": judgments}))
    preferences = [{"index": 0, "glm_preference": 0.25}, {"index": 1, "glm_preference": 0.75}]
    (tmp_path / "alpacaeval.json").write_text(json.dumps({"metrics": {}, "judgments": preferences}))
    measures = read_measures(tmp_path, worlds.get("paper"))
    assert set(measures) == {"gsm8k_acc", "mt_bench", "alpacaeval2_lc"}
    assert measures["gsm8k_acc"].value == 50.0  # percent, as results.csv
    mt_bench = measures["mt_bench"]
    assert isinstance(mt_bench, MeanMeasure) and mt_bench.ids == ("81", "82")
    assert mt_bench.value == pytest.approx((8 + 6 + 3) / 3)  # the mean over rated turns
    assert mt_bench.resampled(np.array([[1, 1]]))[0] == pytest.approx(3.0)  # a question carries all its turns
    assert measures["alpacaeval2_lc"].value == pytest.approx(50.0)


def test_the_failures_command_prints_a_columns_failed_samples_with_what_was_read(tmp_path, capsys):
    _, records = lm_eval_outcomes(RESULTS, list(METRICS))
    write_samples(tmp_path / "samples.jsonl.gz", records)
    main(["failures", "--eval", str(tmp_path), "--column", "mmlu_acc", "--world", "lm-eval"])
    printed = capsys.readouterr().out
    assert f"{tmp_path}: mmlu_acc (mmlu/acc): 2 of 6 samples lost points" in printed
    assert "--- mmlu_physics / 0: score 0.0\nprompt:\nquestion 0\nresponse:\n B\nread as:\nmmlu_physics:  B" in printed
    assert "mmlu_law / 2" in printed and "mmlu_law / 1" not in printed
    main(["failures", "--eval", str(tmp_path), "--column", "ifeval_strict_instruction_acc", "--world", "lm-eval"])
    assert "1 of 2 samples lost points" in capsys.readouterr().out  # one instruction of three missed
    with pytest.raises(SystemExit, match="unknown column 'mmlu'"):
        main(["failures", "--eval", str(tmp_path), "--column", "mmlu", "--world", "lm-eval"])
