"""The aggregation rule, checked against the paper's published tables."""

import csv
from pathlib import Path

import pytest

from onmerge.aggregate import CATEGORIES, PAPER_COLUMNS, benchmark_average, mean_with_stderr

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
