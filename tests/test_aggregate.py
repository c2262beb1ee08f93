"""The aggregation rule, checked against the paper's published tables."""

import csv
import json
from pathlib import Path

import pytest

from onmerge.aggregate import CATEGORIES, JUDGE_COMPONENTS, PAPER_COLUMNS, benchmark_average, mean_with_stderr

PAPER = Path(__file__).resolve().parents[1] / "results" / "paper"


def test_benchmark_average_is_the_mean_of_category_means_in_every_row_of_table4():
    rows = list(csv.DictReader((PAPER / "table4_main.csv").open()))
    assert len(rows) == 33
    for row in rows:
        mean = sum(float(row[c]) for c in CATEGORIES) / 7
        # Published to one decimal: the average (+-0.05) and each category (+-0.05, averaged) are rounded.
        assert mean == pytest.approx(float(row["benchmark_avg"]), abs=0.1), row


def test_categories_are_means_of_their_columns_in_tables_5_to_7():
    per_benchmark = {
        (r["backbone"], r["method"]): r for r in csv.DictReader((PAPER / "tables5to7_per_benchmark.csv").open())
    }
    main = {(r["backbone"], r["method"]): r for r in csv.DictReader((PAPER / "table4_main.csv").open())}
    math_columns = ["gsm8k_acc", "math401_acc", "math23k_acc"]
    checked = 0
    for key, row in per_benchmark.items():
        if key in main:
            assert sum(float(row[c]) for c in math_columns) / 3 == pytest.approx(float(main[key]["math"]), abs=0.1)
            checked += 1
    assert checked >= 20


def test_toy_aggregation_with_stderr():
    columns = {column: (0.5, 0.1) for column in PAPER_COLUMNS}
    columns["mmlu_acc"] = (1.0, 0.0)
    scores = benchmark_average(columns, PAPER_COLUMNS)
    assert scores["knowledge"] == (1.0, 0.0)
    assert scores["math"] == pytest.approx((0.5, (3 * 0.01) ** 0.5 / 3))
    assert scores["benchmark_avg"][0] == pytest.approx((6 * 0.5 + 1.0) / 7)
    expected_se = (sum(se**2 for name, (_, se) in scores.items() if name != "benchmark_avg")) ** 0.5 / 7
    assert scores["benchmark_avg"][1] == pytest.approx(expected_se)


def test_missing_column_is_an_error_not_a_smaller_average():
    columns = {column: (0.5, 0.1) for column in PAPER_COLUMNS if column != "drop_acc"}
    with pytest.raises(ValueError, match="missing benchmark columns \\['drop_acc'\\]"):
        benchmark_average(columns, PAPER_COLUMNS)


def test_mean_with_stderr():
    assert mean_with_stderr([(1.0, 0.3), (3.0, 0.4)]) == pytest.approx((2.0, 0.25))


def test_a_paper_preset_model_gets_its_14_columns_and_both_judged_scores(tmp_path):
    """lm-eval's metrics named by lm_evaluation.PAPER_METRICS, and the judges' files beside them, make a full row."""
    from onmerge import worlds
    from onmerge.aggregate import results_table
    from onmerge.lm_evaluation import PAPER_METRICS

    evaluation = tmp_path / "qwen1.5-1.8b" / "sft" / "eval"
    evaluation.mkdir(parents=True)

    def write(name: str, metrics: dict[str, float]) -> None:
        entries = {key: {"value": value, "stderr": 0.01, "n": 100} for key, value in metrics.items()}
        (evaluation / name).write_text(json.dumps({"metrics": entries, "provenance": {}}))

    write("metrics.json", {key: 0.5 for key in PAPER_METRICS} | {"gsm8k/exact_match,flexible-extract": 0.9})
    write("mt_bench.json", {"mt_bench": 6.25, "mt_bench_turn1": 6.5, "mt_bench_turn2": 6.0})
    write("alpacaeval.json", {"alpacaeval2_lc": 12.5, "alpacaeval2_raw": 10.0})
    table = results_table(tmp_path, ["qwen1.5-1.8b/sft"], worlds.get("paper")).set_index("metric")
    assert table.loc["benchmark_avg", "value"] == pytest.approx(50.0)
    assert all(table.loc[column, "value"] == pytest.approx(50.0) for column in PAPER_COLUMNS)
    assert (table.loc["mt_bench", "value"], table.loc["alpacaeval2_lc", "value"]) == (6.25, 12.5)
    assert table.loc["mt_bench", "stderr"] == 0.01
    # The paper's judges give one score: no rows for the toy judge's components, nothing but the metrics it read.
    assert set(table.index) == {*PAPER_COLUMNS, *CATEGORIES, "benchmark_avg", "gsm8k/exact_match,flexible-extract"} | {
        "mt_bench",
        "mt_bench_turn1",
        "mt_bench_turn2",
        "alpacaeval2_lc",
        "alpacaeval2_raw",
    }
    assert not set(JUDGE_COMPONENTS) & set(table.index)


def test_a_toy_model_gets_the_judges_components_on_the_judges_scale(tmp_path):
    from onmerge import worlds
    from onmerge.aggregate import results_table
    from onmerge.toyworld.world import PAPER_METRICS

    evaluation = tmp_path / "qwen-s" / "sft" / "eval"
    evaluation.mkdir(parents=True)
    columns = {name: 0.5 for name, column in PAPER_METRICS.items() if column in PAPER_COLUMNS}
    judged = {"toy_mt_bench": 6.5, "toy_mt_bench_content": 3.25, "toy_mt_bench_language": 0.75}
    metrics = columns | judged | {"toy_mt_bench_manner": 1.5}
    entries = {name: {"value": value, "stderr": 0.02, "n": 40} for name, value in metrics.items()}
    (evaluation / "metrics.json").write_text(json.dumps({"metrics": entries, "provenance": {}}))
    table = results_table(tmp_path, ["qwen-s/sft"], worlds.get("toy")).set_index("metric")
    # Points, not percent: content 0-5, language 0-1, manner 0-3, adding up to MT-Bench's 6.5 with its 1.
    assert [table.loc[name, "value"] for name in JUDGE_COMPONENTS] == [3.25, 0.75, 1.5]
    assert [table.loc[name, "stderr"] for name in JUDGE_COMPONENTS] == [0.02, 0.02, 0.02]
    assert table.loc["mt_bench", "value"] == 6.5 and table.loc["gsm8k_acc", "value"] == 50.0
