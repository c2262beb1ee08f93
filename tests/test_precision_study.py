"""The precision study end to end on hand-made results: its table (each row against the AdamW of its regime), the
verdicts on C2 and C3 in pure bf16 only, C10 (merge or rounding?) and how much each effect moves between worlds.

The hand-made world: in pure bf16, OnDARE and OnDARE without the merge (alpha = 0) both beat AdamW by the same
amount (the gain is the dropout's, none is the merge's); in fp32 all three are level. The second world repeats the
first with a smaller bf16 gain. Every item of a model scores its value plus noise that every model shares, and both
seeds score alike, so every paired contrast is exact and its interval is a point.
"""

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from test_tables import PAPER

from onmerge import curves, grid, verdicts
from onmerge.aggregate import CATEGORIES, JUDGE_COMPONENTS, PAPER_COLUMNS
from onmerge.items import Items
from onmerge.paired import MeanMeasure, PairedBootstrap
from onmerge.tables.build import build, judge_table
from onmerge.tables.frames import MISSING, OK
from onmerge.tables.render import document, markdown
from onmerge.tables.results import Results
from onmerge.verdicts import INCONCLUSIVE, SUPPORTED

WORLDS = ("w0", "w1")
REGIMES = {"small": {"learning_rate": 1e-5}, "small-bf16": {"learning_rate": 1e-5, "bf16": True}}
# (world, regime, row) -> every benchmark column's score; MT-Bench is a tenth of it
LEVELS = {
    ("w0", "small-bf16", "adamw"): 40.0,
    ("w0", "small-bf16", "ondare"): 50.0,
    ("w0", "small-bf16", "dropout"): 50.0,
    ("w1", "small-bf16", "adamw"): 45.0,
    ("w1", "small-bf16", "ondare"): 50.0,
    ("w1", "small-bf16", "dropout"): 50.0,
    **{(world, "small", row): 60.0 for world in WORLDS for row in ("adamw", "ondare", "dropout")},
}


def precision_preset():
    return {
        "name": "precision",
        "kind": "toy",
        "world": {"scale": "smoke", "seed": 0, "preference_pairs": 8, "docs_per_task": 2},
        "backbones": {"w0": {"mirrors": "Qwen1.5-1.8B", "builds": "qwen-s"}, "w1": {"builds": "qwen-s", "seed": 1}},
        "training": {"beta": 0.1, "learning_rate": 2e-4},
        "regimes": REGIMES,
        "seeds": [0],
        "methods": {
            "adamw": {"method": "adamw"},
            "ondare": {"method": "ondare", "label": "OnDARE", "reserve_p": 0.01, "alpha": 1e-6, "merge_every": 1},
            "dropout": {"method": "ondare", "label": "OnDARE a=0", "reserve_p": 0.01, "alpha": 0.0, "merge_every": 1},
        },
        "offline": {"source": "adamw"},
        "studies": {
            "precision": {
                "backbones": list(WORLDS),
                "methods": ["adamw", "ondare", "dropout"],
                "regimes": list(REGIMES),
                "seeds": [0, 1],
            },
        },
    }


def levels_by_path(preset):
    study = preset["studies"]["precision"]
    by_path = {}
    for (world, regime, row), level in LEVELS.items():
        for seed in study["seeds"]:
            (cell,) = grid.method_cells(preset, row, world, "dpo", seed, regime=regime)
            by_path[cell.path] = level
    return by_path


INTERPOLATION = {"backbones": ["w0"], "methods": ["adamw"], "interpolate": [0.5]}
# The interpolation curve's judge: manner rises from SFT to AdamW, content falls (the tax)
CURVE = {  # path -> (mt_bench, content, language, manner, benchmark_avg)
    "w0/sft": (4.0, 2.5, 0.5, 0.0, 50.0),
    "w0/dpo/adamw/beta~0.1/seed~0/merge/linear/weight~0.5": (5.0, 2.5, 0.5, 1.0, 49.0),
    "w0/dpo/adamw/beta~0.1/seed~0": (6.5, 2.0, 0.5, 3.0, 45.0),
}


def results(preset):
    metrics = (*CATEGORIES, "benchmark_avg", "mt_bench", "alpacaeval2_lc")
    rows = [
        {"path": path, "metric": metric, "value": level / 10 if metric == "mt_bench" else level, "stderr": 0.1}
        for path, level in levels_by_path(preset).items()
        for metric in metrics
    ]
    judged = ("mt_bench", *JUDGE_COMPONENTS, "benchmark_avg")
    rows += [
        {"path": path, "metric": metric, "value": value, "stderr": 0.1}
        for path, values in CURVE.items()
        for metric, value in zip(judged, values, strict=True)
    ]
    return Results(pd.DataFrame(rows))


def bootstrap(preset):
    noise = np.linspace(-0.5, 0.5, 4)
    measures = {}
    for path, level in levels_by_path(preset).items():
        by_metric = {}
        for metric in (*PAPER_COLUMNS, "mt_bench", "alpacaeval2_lc"):
            value, scale = (level / 10, 1.0) if metric == "mt_bench" else (level, 100.0)
            by_metric[metric] = MeanMeasure(Items(tuple("abcd"), (value + noise) / scale, np.ones(4)), scale)
        measures[path] = by_metric
    return PairedBootstrap(measures.__getitem__, resamples=500)


@pytest.fixture(scope="module")
def study():
    preset = precision_preset()
    context = verdicts.Context(preset, results(preset), PAPER)
    paired = bootstrap(preset)
    return preset, context, paired, verdicts.verdicts(context, paired)


def test_the_precision_table_sets_each_row_against_the_adamw_of_its_regime(study):
    preset, context, paired, _ = study
    frame = build(context.results, preset, PAPER, paired)["precision"][0]
    avg = frame[frame["column"] == "benchmark_avg"].set_index(["backbone", "group", "row"])
    assert avg.loc[("w0", "small-bf16", "adamw"), "value"] == pytest.approx(40.0)  # AdamW stays absolute
    assert avg.loc[("w0", "small-bf16", "dropout"), "value"] == pytest.approx(10.0)
    assert avg.loc[("w1", "small-bf16", "ondare"), "value"] == pytest.approx(5.0)
    assert avg.loc[("w0", "small", "ondare"), "value"] == pytest.approx(0.0)
    assert bool(avg.loc[("w0", "small-bf16", "ondare"), "significant"])
    text = markdown(document("precision", frame, frame.iloc[0:0], preset))
    assert "| small-bf16 (lr 1e-05, pure bf16) | AdamW |" in text
    assert "| small (lr 1e-05, fp32) | AdamW |" in text and "| OnDARE a=0 |" in text
    assert "Exploratory" not in text  # two seeds


def test_c2_and_c3_are_tested_in_pure_bf16_only_and_c10_finds_the_gain_is_not_the_merges(study):
    _, _, _, frame = study
    verdict = frame.groupby("claim")["verdict"].first()
    assert verdict["C2"] == SUPPORTED and verdict["C3"] == SUPPORTED
    assert set(frame[frame["claim"] == "C2"]["comparison"]) == {"OnDARE - AdamW (small-bf16)"}
    c10 = frame[frame["claim"] == "C10"].set_index(["backbone", "comparison", "metric"])
    assert set(c10.index.get_level_values("comparison")) == {
        "OnDARE - OnDARE a=0 (small-bf16)",
        "OnDARE - AdamW (small)",
    }
    assert c10["estimate"].abs().max() == pytest.approx(0.0, abs=1e-9)  # the merge adds nothing, in either precision
    assert verdict["C10"] == INCONCLUSIVE


def test_between_worlds_gives_each_headline_effect_in_both_worlds_and_their_difference(study):
    _, context, paired, _ = study
    worlds = verdicts.between_worlds(context, paired).set_index(["claim", "comparison", "metric"])
    gain = worlds.loc[("C3", "OnDARE - AdamW (small-bf16)", "benchmark_avg")]
    assert (gain["world"], gain["other_world"]) == ("w0", "w1")
    assert (gain["estimate"], gain["other_estimate"]) == (pytest.approx(10.0), pytest.approx(5.0))
    assert gain["difference"] == pytest.approx(5.0) and gain["low"] == pytest.approx(5.0)  # exact: a point
    merge = worlds.loc[("C10", "OnDARE - OnDARE a=0 (small-bf16)", "mt_bench")]
    assert merge["difference"] == pytest.approx(0.0, abs=1e-9)
    text = markdown(verdicts.document(study[3], context.preset, verdicts.between_worlds(context, paired)))
    assert "Between worlds" in text and "| C3 | OnDARE - AdamW (small-bf16) | Benchmark Avg. | w0 - w1 |" in text


def test_a_preset_with_one_world_per_backbone_has_nothing_between_worlds(study):
    preset, context, paired, _ = study
    single = dict(preset, backbones={"w0": preset["backbones"]["w0"], "w1": {"builds": "qwen-m"}})
    assert verdicts.between_worlds(verdicts.Context(single, context.results, PAPER), paired).empty


def test_the_precision_curves_have_a_panel_per_world_and_regime_and_grey_for_the_unmerged_ondare():
    preset = precision_preset()
    panels = curves.study_curves(preset, "precision")
    assert [title for title, _, _ in panels] == [
        "w0 (toy, mirrors Qwen1.5-1.8B), small (lr 1e-05, fp32)",
        "w0 (toy, mirrors Qwen1.5-1.8B), small-bf16 (lr 1e-05, pure bf16)",
        "w1, small (lr 1e-05, fp32)",
        "w1, small-bf16 (lr 1e-05, pure bf16)",
    ]
    _, _, lines = panels[1]
    assert [line.label for line in lines] == ["AdamW", "OnDARE", "OnDARE a=0"]
    assert all(cell.regime == "small-bf16" for line in lines for cell in line.cells)
    colors = {line.row: curves._color(preset, line) for line in lines}
    assert colors["dropout"] == to_rgb("tab:gray") != colors["ondare"]  # ChildTuning's grey


def test_the_judge_table_shows_the_components_along_the_curve_and_for_the_precision_rows(study):
    preset, context, _, _ = study
    preset = dict(preset, studies={**preset["studies"], "interpolation": INTERPOLATION})
    frame = judge_table(context.results, preset)
    curve = frame[(frame["backbone"] == "w0") & (frame["group"] == "interpolation")]
    manner = curve[curve["column"] == "mt_bench_manner"].set_index("label")["value"]
    assert list(manner.items()) == [("SFT (w = 0)", 0.0), ("linear merge, w = 0.5", 1.0), ("AdamW (w = 1)", 3.0)]
    content = curve[curve["column"] == "mt_bench_content"]["value"]
    assert list(content) == [2.5, 2.5, 2.0]
    precision_rows = frame[frame["group"] == "small-bf16"]
    status = precision_rows.groupby("column")["status"].agg(set)
    assert status["mt_bench"] == {OK} and status["mt_bench_manner"] == {MISSING}  # none judged there
    text = markdown(document("judge", frame, frame.iloc[0:0], preset))
    assert "| Study | Model | MT-Bench | content (0-5) | language (0-1) | manner (0-3) | Benchmark Avg. |" in text
