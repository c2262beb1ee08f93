"""The paper's tables from a small hand-made results set (not a pipeline run): every value, mark and layout."""

import math
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest

from onmerge.aggregate import CATEGORIES, PAPER_COLUMNS
from onmerge.config import load_preset, preset_schema
from onmerge.grid import all_models
from onmerge.items import Items
from onmerge.paired import MeanMeasure, PairedBootstrap
from onmerge.tables import table_names
from onmerge.tables.build import build
from onmerge.tables.frames import MAIN_COLUMNS, MISSING, NOT_RUN
from onmerge.tables.render import document, markdown, write
from onmerge.tables.results import Results
from onmerge.tables.rows import main_rows

PAPER = Path(__file__).resolve().parents[1] / "results" / "paper"
BACKBONE = "qwen1.5-7b"
ADAMW = f"{BACKBONE}/dpo/adamw/beta~0.1/seed~{{seed}}"
KL_WEAK, KL_STRONG = (f"{BACKBONE}/dpo/adamw/beta~{beta}/seed~{{seed}}" for beta in ("0.01", "1"))
ONDARE = f"{BACKBONE}/{{loss}}/ondare/beta~0.1_p~0.01_alpha~{{alpha}}_k~1/seed~{{seed}}"
MERGES = f"{ADAMW}/merge"
# Each model's level: every benchmark column, category and average is this percent, seed s adds 2 s; MT-Bench is a
# tenth of it. Hand-checkable: a row of two seeds has mean level + 1, stderr sqrt(1 + 1) / 2, sd sqrt(2).
LEVELS = {
    f"{BACKBONE}/sft": 45.0,
    ADAMW: 50.0,
    KL_WEAK: 40.0,
    KL_STRONG: 60.0,
    ONDARE.format(loss="dpo", alpha="1e-07", seed="{seed}"): 55.0,
    ONDARE.format(loss="dpo", alpha="0.0001", seed="{seed}"): 10.0,
    f"{MERGES}/linear/weight~0.3": 47.0,
    f"{MERGES}/linear/weight~0.7": 53.0,
    f"{MERGES}/dare/density~0.5_weight~0.5": 58.0,
    f"{MERGES}/ties/density~0.5_weight~0.5": 20.0,
    f"{BACKBONE}/ipo/adamw/beta~0.1/seed~{{seed}}": 30.0,
    ONDARE.format(loss="ipo", alpha="1e-07", seed="{seed}"): 33.0,
    f"{BACKBONE}/kto/adamw/beta~0.1/seed~{{seed}}": 36.0,
    ONDARE.format(loss="kto", alpha="1e-07", seed="{seed}"): 34.0,
}
METRICS = (*PAPER_COLUMNS, *CATEGORIES, "benchmark_avg", "mt_bench", "alpacaeval2_lc")


def hand_made_preset(backbones=None, kind="paper"):
    preset = {
        "name": "handmade",
        "kind": kind,
        "backbones": backbones or {BACKBONE: {"base": "Qwen/Qwen1.5-7B", "sft": "Qwen/Qwen1.5-7B-Chat"}},
        "training": {"beta": 0.1, "learning_rate": 1e-6},
        "seeds": [0, 1],
        "methods": {
            "adamw": {"method": "adamw"},
            "kl": {"method": "adamw", "search": {"beta": [0.01, 1.0]}},
            "ondare": {"method": "ondare", "reserve_p": 0.01, "alpha": 1e-7, "merge_every": 1},
        },
        "offline": {
            "source": "adamw",
            "linear": {"weights": [0.3, 0.7]},
            "dare": {"densities": [0.5], "weights": [0.5]},
            "ties": {"densities": [0.5], "weights": [0.5]},
        },
        "studies": {
            "table1": {
                "backbones": list(backbones or [BACKBONE]),
                "methods": ["adamw", "kl", "ondare"],
                "offline": True,
            },
            "table2": {
                "backbones": list(backbones or [BACKBONE]),
                "methods": ["ondare"],
                "vary": {"alpha": [1e-4, 1e-7]},
            },
            "table3": {
                "backbones": list(backbones or [BACKBONE]),
                "methods": ["adamw", "ondare"],
                "losses": ["ipo", "kto"],
            },
        },
    }
    if kind == "toy":
        preset["world"] = {"scale": "toy", "seed": 0}
    return preset


def hand_made_results(rename=None, drop=(), overrides=None):
    """Every model of the hand-made preset at its level; `drop` removes (path, metric) rows (metric None: all),
    `overrides` sets {(path, metric): value}."""
    rows = []
    for template, level in LEVELS.items():
        for seed in (0, 1) if "{seed}" in template else (None,):
            path = template.format(seed=seed) if seed is not None else template
            value = level + 2 * (seed or 0)
            for metric in METRICS:
                if (path, metric) in drop or (path, None) in drop:
                    continue
                scale = 0.1 if metric == "mt_bench" else 1.0
                stderr = math.nan if metric == "alpacaeval2_lc" else scale
                measured = (overrides or {}).get((path, metric), value * scale)
                rows.append(
                    {"path": (rename or {}).get(path, path), "metric": metric, "value": measured, "stderr": stderr}
                )
    return Results(pd.DataFrame(rows))


def hand_made_bootstrap(rename=None, overrides=None):
    """Per-item outcomes agreeing with `hand_made_results`: every item of a model scores its value (plus noise that
    every model shares, so that paired contrasts are exact), for Table 1's paired intervals."""
    noise = np.linspace(-0.5, 0.5, 4)
    measures = {}
    for template, level in LEVELS.items():
        for seed in (0, 1):
            path = (rename or {}).get(template.format(seed=seed), template.format(seed=seed))
            value = level + 2 * seed
            by_metric = {}
            for metric in (*PAPER_COLUMNS, "mt_bench", "alpacaeval2_lc"):
                measured = (overrides or {}).get((path, metric), value * (0.1 if metric == "mt_bench" else 1.0))
                scale = 1.0 if metric == "mt_bench" else 100.0
                items = Items(tuple("abcd"), (measured + noise) / scale, np.ones(4))
                by_metric[metric] = MeanMeasure(items, scale)
            measures[path] = by_metric
    return PairedBootstrap(measures.__getitem__, resamples=2000)


def hand_made_tables(results=None, preset=None, bootstrap=None):
    return build(
        results or hand_made_results(), preset or hand_made_preset(), PAPER, bootstrap or hand_made_bootstrap()
    )


def cell(frame, row, column, table=None):
    selected = frame[(frame["row"] == row) & (frame["column"] == column)]
    if table is not None:
        selected = selected[selected["group"] == table]
    assert len(selected) == 1, (row, column)
    return selected.iloc[0]


def test_the_hand_made_set_covers_exactly_the_preset():
    planned = {model.path for model in all_models(hand_made_preset())}
    made = {template.format(seed=seed) for template in LEVELS for seed in (0, 1)}
    assert planned == made


@pytest.fixture(scope="module")
def built():
    return hand_made_tables()


def test_table4_values_uncertainty_selection_and_published(built):
    table4, _ = built["table4"]
    assert len(table4) == len(main_rows()) * len(MAIN_COLUMNS)
    adamw = cell(table4, "adamw", "benchmark_avg")
    assert (adamw["value"], adamw["seeds"]) == (51.0, 2)
    assert adamw["stderr"] == pytest.approx(math.sqrt(2) / 2)
    assert adamw["seed_sd"] == pytest.approx(math.sqrt(2))
    assert adamw["published"] == 58.4 and adamw["difference"] == pytest.approx(51.0 - 58.4)
    reference = cell(table4, "reference", "math")
    assert (reference["value"], reference["stderr"], reference["seeds"]) == (45.0, 1.0, 1)
    assert math.isnan(reference["seed_sd"]) and reference["published"] == 65.5
    kl = cell(table4, "kl", "mt_bench")  # the stronger beta has the better Benchmark Avg.
    assert (kl["setting"], kl["value"]) == ("beta=1", pytest.approx(6.1))
    assert cell(table4, "linear", "code")["setting"] == "weight=0.7"
    assert cell(table4, "dare", "code")["setting"] == "density=0.5, weight=0.5"  # one setting, still named
    assert cell(table4, "ondare", "alpacaeval2_lc")["value"] == 56.0
    assert math.isnan(cell(table4, "ondare", "alpacaeval2_lc")["stderr"])
    for row in ("ema", "childtuning", "lora", "onties"):
        assert set(table4[table4["row"] == row]["status"]) == {NOT_RUN}


def test_best_and_second_best_per_column_leave_the_reference_out(built):
    table4, _ = built["table4"]
    ranks = table4[table4["column"] == "benchmark_avg"].set_index("row")["rank"]
    # KL 61, DARE 59, OnDARE 56, Linear 54, AdamW 51, TIES 21; the Reference (45) is not ranked.
    assert ranks.to_dict() == {row.name: {"kl": 1, "dare": 2}.get(row.name, 0) for row in main_rows()}


def test_table1_is_table4_against_adamw(built):
    table1, _ = built["table1"]
    kl = cell(table1, "kl", "benchmark_avg")
    assert kl["value"] == pytest.approx(10.0)
    # The paired interval: items cancel; each row's two seeds (KL 60, 62; AdamW 50, 52) give seed means 60-62 and
    # 50-52, and a difference of 8 or 12 has probability 1/16 > 2.5% each: [8, 12], significant.
    assert (kl["low"], kl["high"], kl["significant"]) == (pytest.approx(8.0), pytest.approx(12.0), True)
    assert math.isnan(kl["stderr"]) and kl["models"] == ";".join(KL_STRONG.format(seed=seed) for seed in (0, 1))
    assert kl["published"] == pytest.approx(58.5 - 58.4) and kl["difference"] == pytest.approx(10.0 - 0.1)
    assert kl["rank"] == 1  # ranked as in Table 4
    adamw = cell(table1, "adamw", "benchmark_avg")
    assert (adamw["value"], adamw["stderr"]) == (51.0, pytest.approx(math.sqrt(2) / 2))  # AdamW stays absolute
    assert cell(table1, "reference", "math")["value"] == pytest.approx(45.0 - 51.0)


def test_tables_5_to_7_table2_and_table3(built):
    per_benchmark, _ = built["tables5to7"]
    assert list(dict.fromkeys(per_benchmark["column"])) == list(PAPER_COLUMNS)
    gsm8k = cell(per_benchmark, "ondare", "gsm8k_acc")
    assert (gsm8k["value"], gsm8k["published"]) == (56.0, 59.82)
    assert gsm8k["difference"] == pytest.approx(56.0 - 59.82)
    assert cell(per_benchmark, "ondare", "humaneval_pass1")["published"] == 20.26
    table2, _ = built["table2"]
    assert table2[table2["column"] == "benchmark_avg"][["label", "value"]].values.tolist() == [
        ["alpha=0.0001", 11.0],
        ["alpha=1e-07", 56.0],
    ]
    assert table2["published"].isna().all()  # the published alpha sweep is Qwen1.5-1.8B's
    table3, _ = built["table3"]
    kto_ondare = cell(table3, "ondare", "mt_bench", table="kto")
    assert kto_ondare["value"] == pytest.approx(3.5) and kto_ondare["published"] == 7.46
    # Ranked within each algorithm: under IPO OnDARE (34) beats AdamW (31); under KTO AdamW (37) beats OnDARE (35).
    assert cell(table3, "ondare", "benchmark_avg", table="ipo")["rank"] == 1
    assert cell(table3, "adamw", "benchmark_avg", table="kto")["rank"] == 1


def test_markdown_layout_marks_and_published_lines(built, tmp_path):
    write(built, hand_made_preset(), tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        f"{name}.{ext}" for name in built for ext in ("md", "csv", "tex", "html")
    )
    lines = (tmp_path / "table4.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| Group"))
    assert header == (
        "| Group | Method | Setting | Math | Code | I.F. | R.C. | Know. | Agent | CodeSwitch | Benchmark Avg. "
        "| MT-Bench | AlpacaEval LC |"
    )
    body = [line for line in lines if line.startswith("| ") and line != header]
    assert [line.split(" | ")[1] for line in body if "↳" not in line] == [row.label for row in main_rows()]
    kl = next(line for line in body if line.split(" | ")[1] == "KL").split(" | ")
    assert kl[2] == "beta=1"
    assert kl[10] == "**61.0 ± 0.7 (sd 1.4, n=2)**"  # Benchmark Avg.: best
    assert kl[12].rstrip(" |") == "**61.00 (sd 1.41, n=2)**"  # AlpacaEval LC: no standard error
    dare = next(line for line in body if line.split(" | ")[1] == "DARE").split(" | ")
    assert dare[10] == "<u>59.0 ± 0.7 (sd 1.4, n=2)</u>"
    paper_line = body[body.index(next(line for line in body if line.split(" | ")[1] == "KL")) + 1].split(" | ")
    assert paper_line[1] == "↳ paper" and paper_line[10] == "58.5"
    ema = next(line for line in body if line.split(" | ")[1] == "EMA")
    assert ema.count("not run") == 10
    assert "- Not run: qwen1.5-7b / EMA (the preset does not plan this row)" in lines
    table1 = (tmp_path / "table1.md").read_text()
    assert "| KL | beta=1 | " in table1 and "**+10.0 [+8.0, +12.0]† (sd 1.4, n=2)**" in table1
    frame = pd.read_csv(tmp_path / "table4.csv")
    assert list(frame.columns) == [
        "table", "backbone", "group", "row", "label", "setting", "column", "value", "stderr", "seed_sd", "low", "high",
        "published", "difference", "seeds", "status", "rank", "significant", "models", "missing_cells",
    ]  # fmt: skip
    tex = (tmp_path / "table4.tex").read_text()
    assert r"\begin{tabular}{lll" + "r" * 10 + "}" in tex
    assert r"\textbf{61.0 $\pm$ 0.7 (sd 1.4, n=2)}" in tex and r"\underline{59.0 $\pm$ 0.7 (sd 1.4, n=2)}" in tex
    assert r"$\hookrightarrow$ paper" in tex and tex.count(r"\toprule") == 1
    page = (tmp_path / "table4.html").read_text()
    assert "<b>61.0 ± 0.7 (sd 1.4, n=2)</b>" in page and "<u>59.0 ± 0.7 (sd 1.4, n=2)</u>" in page


def test_toy_tables_show_the_published_table_apart_never_mixed_in(tmp_path):
    backbones = {"qwen-s": {"mirrors": "Qwen1.5-7B"}}
    rename = {}
    for template in LEVELS:
        for seed in (0, 1):
            path = template.format(seed=seed)
            rename[path] = path.replace(BACKBONE, "qwen-s")
    results = hand_made_results(rename=rename)
    preset = hand_made_preset(backbones=backbones, kind="toy")
    built = hand_made_tables(results, preset, hand_made_bootstrap(rename=rename))
    table4, _ = built["table4"]
    assert table4["published"].isna().all() and table4["difference"].isna().all()
    assert cell(table4, "kl", "benchmark_avg")["value"] == 61.0
    write(built, preset, tmp_path)
    text = (tmp_path / "table4.md").read_text()
    ours, published = text.split("# The published table, for shape only")
    assert "## qwen-s (toy, mirrors Qwen1.5-7B)" in ours and "↳ paper" not in ours and "58.4" not in ours
    assert "## qwen1.5-7b (published; mirrored here by qwen-s)" in published
    assert "|  | AdamW | 69.3 | 22.1 | 38.0 | 71.9 | 59.4 | 76.3 | 71.7 | 58.4 | 7.18 | 11.66 |" in published
    assert "llama-3-8b" not in published  # only the backbones this preset mirrors
    assert (tmp_path / "table4.tex").read_text().count(r"\toprule") == 2


def test_a_missing_or_incomplete_cell_is_reported_missing_never_dropped_or_filled():
    ondare0 = ONDARE.format(loss="dpo", alpha="1e-07", seed=0)
    kl_weak1 = KL_WEAK.format(seed=1)
    ties1 = f"{MERGES}/ties/density~0.5_weight~0.5".format(seed=1)
    drop = {(ondare0, "mt_bench"), (kl_weak1, "benchmark_avg"), (ties1, None)}
    built = hand_made_tables(hand_made_results(drop=drop))
    table4, _ = built["table4"]
    assert len(table4) == len(main_rows()) * len(MAIN_COLUMNS)  # nothing dropped
    ondare_mt = cell(table4, "ondare", "mt_bench")
    assert ondare_mt["status"] == MISSING and math.isnan(ondare_mt["value"])
    assert ondare_mt["missing_cells"] == ondare0
    assert cell(table4, "ondare", "math")["value"] == 56.0  # the seed mean where both seeds have it
    # One setting of a search lacks the selection metric: the search is incomplete, so the whole row is missing.
    assert set(table4[table4["row"] == "kl"]["status"]) == {MISSING}
    assert set(table4[table4["row"] == "ties"]["status"]) == {MISSING}
    table1, _ = built["table1"]
    assert cell(table1, "ondare", "mt_bench")["status"] == MISSING
    assert cell(table1, "ondare", "math")["value"] == pytest.approx(5.0)
    text = markdown(document("table4", table4, built["table4"][1], hand_made_preset()))
    kl_line = next(line for line in text.splitlines() if line.startswith("| Regularization | KL |"))
    assert kl_line.count("missing") == 10
    every_column = "Math, Code, I.F., R.C., Know., Agent, CodeSwitch, Benchmark Avg., MT-Bench, AlpacaEval LC"
    assert f"- Missing: qwen1.5-7b / KL: {every_column}; no result for {kl_weak1}" in text
    assert f"- Missing: qwen1.5-7b / OnDARE: MT-Bench; no result for {ondare0}" in text
    assert f"no result for {ties1}" in text


def test_select_by_picks_the_searched_setting_by_another_metric():
    judged_better = {(KL_WEAK.format(seed=seed), "mt_bench"): 9.0 for seed in (0, 1)}
    results = hand_made_results(overrides=judged_better)
    by_average = hand_made_tables(results)["table4"][0]
    by_reward = hand_made_tables(results, hand_made_preset() | {"select_by": "mt_bench"})["table4"][0]
    assert cell(by_average, "kl", "mt_bench")["setting"] == "beta=1"
    assert cell(by_reward, "kl", "mt_bench")[["setting", "value"]].tolist() == ["beta=0.01", 9.0]
    schema = preset_schema()
    jsonschema.validate(load_preset("toy") | {"select_by": "mt_bench"}, schema)
    with pytest.raises(jsonschema.ValidationError, match="'math' is not one of"):
        jsonschema.validate(load_preset("toy") | {"select_by": "math"}, schema)


def test_table_names_follow_the_studies():
    preset = hand_made_preset()
    assert table_names(preset) == ["table1", "table4", "tables5to7", "table2", "table3"]
    del preset["studies"]["table2"], preset["studies"]["table3"]
    assert table_names(preset) == ["table1", "table4", "tables5to7"]
