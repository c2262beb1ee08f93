"""The paper's figures: each preset draws the figures its studies name, from a hand-made results table; the data
behind each figure are the seed means the tables use, and a cell without a result is left out and reported. And each
study's training curves, from hand-made training logs."""

import copy
import json
import math
import zlib
from pathlib import Path

import pandas as pd
import pytest

from onmerge import curves, figures, grid
from onmerge.config import load_preset
from onmerge.tables.results import Results

PNG = b"\x89PNG\r\n\x1a\n"
SEEDS = [0, 1]


@pytest.fixture(scope="module")
def preset():
    """The toy preset cut down: two seeds, two values per sweep, one offline setting per merge."""
    small = copy.deepcopy(load_preset("toy"))
    small["seeds"] = SEEDS
    small["offline"] = {
        "source": "adamw",
        "linear": {"weights": [0.5]},
        "dare": {"densities": [0.3], "weights": [0.5]},
        "ties": {"densities": [0.3], "weights": [0.5]},
    }
    small["studies"] = {
        "table1": {"backbones": ["qwen-s"], "methods": ["adamw", "ondare", "onties"], "offline": True},
        "figure2": {"backbones": ["qwen-s"], "methods": ["ondare", "onties"], "vary": {"reserve_p": [1.0, 0.01]}},
        "figure3": {"backbones": ["qwen-s"], "methods": ["ondare"], "vary": {"merge_every": [4, 1]}},
        "figure4": {"backbones": ["qwen-s", "qwen-m"], "methods": ["adamw", "onties"], "vary": {"beta": [0.01, 0.1]}},
        "interpolation": {"backbones": ["qwen-s"], "methods": ["adamw"], "interpolate": [0.5]},
    }
    return small


def _value(path: str, metric: str) -> float:
    """A made-up score, different for every model (and seed), on the metric's scale."""
    spread = zlib.crc32(f"{path}|{metric}".encode()) % 1000 / 1000
    return 5 + 4 * spread if metric == "mt_bench" else 30 + 30 * spread


@pytest.fixture(scope="module")
def table(preset):
    rows = [
        {"path": model.path, "metric": metric, "value": _value(model.path, metric), "stderr": 0.5}
        for model in grid.all_models(preset)
        for metric in ("benchmark_avg", "mt_bench", "alpacaeval2_lc")
    ]
    return pd.DataFrame(rows)


def _without(table: pd.DataFrame, path: str, metric: str | None = None) -> Results:
    drop = (table["path"] == path) & ((table["metric"] == metric) if metric else True)
    return Results(table[~drop])


def _seed_mean(path_of_seed, metric: str) -> tuple[float, float]:
    values = [_value(path_of_seed(seed), metric) for seed in SEEDS]
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _ondare(p: float, k: int = 1):
    return lambda seed: f"qwen-s/dpo/ondare/beta~0.1_p~{p:g}_alpha~2e-05_k~{k}/seed~{seed}"


def test_figure_names_follow_the_presets_studies(preset):
    assert figures.figure_names(preset) == ["figure2", "figure3", "figure4", "interpolation"]
    assert figures.figure_names(load_preset("toy")) == ["figure2", "figure3", "figure4", "interpolation"]
    assert figures.figure_names(load_preset("qwen1.5-7b")) == ["figure4"]
    assert figures.figure_names(load_preset("qwen1.5-1.8b")) == ["figure2", "figure3", "interpolation"]


def test_every_figure_draws_a_png_and_complete_results_lack_nothing(preset, table, tmp_path):
    results = Results(table)
    for name in figures.figure_names(preset):
        out = tmp_path / "figures" / f"{name}.png"
        assert figures.draw(results, preset, name, out) == []
        assert out.read_bytes().startswith(PNG)
    assert sorted(path.name for path in (tmp_path / "figures").iterdir()) == [
        "figure2.png",
        "figure3.png",
        "figure4.png",
        "interpolation.png",
    ]  # no staging file left behind


def test_a_figure_the_preset_does_not_make_is_refused(preset, table, tmp_path):
    with pytest.raises(ValueError, match="no figure 'figure9'"):
        figures.draw(Results(table), preset, "figure9", tmp_path / "figure9.png")


def test_sweep_lines_are_the_seed_means_in_order_of_the_varied_setting(preset, table):
    lines = figures.sweep_series(Results(table), preset, "figure2", "qwen-s", "mt_bench")
    assert [line.label for line in lines] == ["OnDARE", "OnTIES"]
    ondare = lines[0]
    assert [x for x, _ in ondare.points] == [0.01, 1.0]
    mean, sd = _seed_mean(_ondare(0.01), "mt_bench")
    estimate = ondare.points[0][1]
    assert estimate.value == pytest.approx(mean)
    assert estimate.seed_sd == pytest.approx(sd)
    assert estimate.stderr == pytest.approx(math.sqrt(2 * 0.5**2) / 2)
    assert estimate.seeds == 2
    assert ondare.missing == []
    gaps = figures.sweep_series(Results(table), preset, "figure3", "qwen-s", "benchmark_avg")[0]
    assert [x for x, _ in gaps.points] == [1.0, 4.0]  # the preset lists 4, 1


def test_a_missing_cell_is_left_out_of_its_line_and_reported(preset, table, tmp_path):
    lacking = _ondare(1.0)(1)
    results = _without(table, lacking, "mt_bench")
    reward = figures.sweep_series(results, preset, "figure2", "qwen-s", "mt_bench")[0]
    assert [x for x, _ in reward.points] == [0.01]
    assert reward.missing == [lacking]
    benchmark = figures.sweep_series(results, preset, "figure2", "qwen-s", "benchmark_avg")[0]
    assert [x for x, _ in benchmark.points] == [0.01, 1.0]
    out = tmp_path / "figure2.png"
    assert figures.draw(results, preset, "figure2", out) == [lacking]
    assert out.read_bytes().startswith(PNG)


def test_figure3_draws_adamw_as_a_level_and_says_when_it_is_missing(preset, table, tmp_path):
    level = figures.sweep_level(Results(table), preset, "figure3", "qwen-s", "benchmark_avg")
    mean, _ = _seed_mean(lambda seed: f"qwen-s/dpo/adamw/beta~0.1/seed~{seed}", "benchmark_avg")
    assert level.label.startswith("AdamW")
    assert level.estimate.value == pytest.approx(mean)
    lacking = "qwen-s/dpo/adamw/beta~0.1/seed~0"
    results = _without(table, lacking)
    level = figures.sweep_level(results, preset, "figure3", "qwen-s", "benchmark_avg")
    assert level.estimate is None
    assert level.missing == [lacking]
    assert figures.draw(results, preset, "figure3", tmp_path / "figure3.png") == [lacking]
    assert figures.sweep_level(Results(table), preset, "figure2", "qwen-s", "benchmark_avg") is None


def test_figure4_draws_the_sft_reference_on_each_backbone(preset, table):
    for backbone in ("qwen-s", "qwen-m"):
        level = figures.sweep_level(Results(table), preset, "figure4", backbone, "mt_bench")
        assert level.label.startswith("Reference")
        assert level.estimate.value == pytest.approx(_value(f"{backbone}/sft", "mt_bench"))
        assert level.estimate.seeds == 1


def test_the_interpolation_curve_runs_from_sft_through_the_merges_to_adamw(preset, table):
    groups = {group.style: group for group in figures.plane(Results(table), preset, "qwen-s")}
    assert list(groups) == ["curve", "linear", "dare", "ties", "onties", "ondare"]  # Table 1's order
    curve = groups["curve"]
    assert [mark.text for mark in curve.marks] == ["SFT (0)", "0.5", "AdamW (1)"]
    assert curve.marks[0].reward.value == pytest.approx(_value("qwen-s/sft", "mt_bench"))
    merged = "qwen-s/dpo/adamw/beta~0.1/seed~{}/merge/linear/weight~0.5".format
    assert curve.marks[1].benchmark.value == pytest.approx(_seed_mean(merged, "benchmark_avg")[0])
    assert [mark.text for mark in groups["dare"].marks] == ["density=0.3, weight=0.5"]
    assert [mark.text for mark in groups["ondare"].marks] == ["OnDARE"]
    assert all(group.missing == [] for group in groups.values())


def test_the_planes_missing_points_are_reported_but_absent_overlays_only_noted(preset, table, tmp_path):
    merge = "qwen-s/dpo/adamw/beta~0.1/seed~1/merge/linear/weight~0.5"
    dare = "qwen-s/dpo/adamw/beta~0.1/seed~0/merge/dare/density~0.3_weight~0.5"
    onties = [f"qwen-s/dpo/onties/beta~0.1_p~0.01_alpha~2e-05_k~1/seed~{seed}" for seed in SEEDS]
    kept = ~table["path"].isin([merge, dare, *onties]) | ((table["path"] == merge) & (table["metric"] != "mt_bench"))
    results = Results(table[kept])
    groups = {group.style: group for group in figures.plane(results, preset, "qwen-s")}
    assert [mark.text for mark in groups["curve"].marks] == ["SFT (0)", "AdamW (1)"]
    assert groups["curve"].missing == [merge]
    assert groups["onties"].marks == [] and groups["onties"].overlay
    # the curve's own point is missing; the DARE grid (one cell, gone) and OnTIES come from Table 1: noted only
    assert figures.draw(results, preset, "interpolation", tmp_path / "interpolation.png") == [merge]


# ---- training curves (onmerge.curves) -------------------------------------------------------------------------------


def _history(path: str) -> list[dict]:
    """A made-up training log: 8 logged steps, the margin rising and the loss falling at a rate of its own."""
    rate = 0.5 + zlib.crc32(path.encode()) % 100 / 100
    return [
        {"loss": 0.69 - 0.02 * rate * step, "rewards/margins": 0.05 * rate * step, "epoch": step / 16, "step": step}
        for step in range(2, 18, 2)
    ]


@pytest.fixture
def logs(preset, tmp_path):
    """results/<preset> with a training log for every trained cell the curve figures read."""
    for log in curves.training_logs(preset, tmp_path):
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        Path(log).write_text(json.dumps({"max_steps": 16, "history": _history(log)}))
    return tmp_path


def test_every_study_has_curves_read_from_each_of_its_trained_cells(preset, tmp_path):
    assert curves.curve_names(preset) == [f"curves_{study}" for study in preset["studies"]]
    trained = {model.path for model in grid.all_models(preset) if isinstance(model, grid.TrainCell)}
    expected = {f"{tmp_path}/{path}/training_log.json" for path in trained}
    assert set(curves.training_logs(preset, tmp_path)) == expected


def test_every_curve_figure_draws_a_png_from_the_training_logs(preset, logs, tmp_path):
    out_dir = tmp_path / "figures"
    for name in curves.curve_names(preset):
        assert curves.draw(logs, preset, name, out_dir / f"{name}.png") == []
    assert sorted(path.name for path in out_dir.iterdir()) == sorted(f"{n}.png" for n in curves.curve_names(preset))
    assert all(path.read_bytes().startswith(PNG) for path in out_dir.iterdir())


def test_a_method_swept_over_a_setting_has_a_line_per_value_each_the_mean_over_its_seeds(preset, logs):
    ((title, loss, lines),) = curves.study_curves(preset, "figure2")
    assert (title, loss) == ("qwen-s (toy, mirrors Qwen1.5-1.8B)", "dpo")
    assert [line.label for line in lines] == ["OnDARE p=1", "OnDARE p=0.01", "OnTIES p=1", "OnTIES p=0.01"]
    histories = [curves.read_history(logs, cell) for cell in lines[1].cells]
    assert [cell.seed for cell in lines[1].cells] == SEEDS
    mean = curves.points(histories, "rewards/margins")
    assert [step for step, _ in mean] == list(range(2, 18, 2))
    path = _ondare(0.01)
    assert mean[0][1] == pytest.approx(
        sum(_history(f"{logs}/{path(s)}/training_log.json")[0]["rewards/margins"] for s in SEEDS) / 2
    )


def test_a_cell_without_a_training_log_is_left_out_and_named(preset, logs, tmp_path):
    lacking = _ondare(0.01)(1)
    (logs / lacking / "training_log.json").unlink()
    out = tmp_path / "curves_figure2.png"
    assert curves.draw(logs, preset, "curves_figure2", out) == [lacking]
    assert out.read_bytes().startswith(PNG)
    with pytest.raises(ValueError, match="no curve figure 'curves_figure9'"):
        curves.draw(logs, preset, "curves_figure9", out)
