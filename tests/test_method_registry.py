"""The method registry: a method registered in one place, with a hyper-parameter of its own registered in one more,
is planned, validated, trained, tabled and drawn; a preset naming an unregistered one is refused before any job."""

import copy
import dataclasses
import json
import re

import pandas as pd
import pytest
import torch
import yaml
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from test_workflow import snakemake

from onmerge import curves, figures, grid, hyperparameters, methods
from onmerge.config import PRESETS, load_preset
from onmerge.tables.build import main_table
from onmerge.tables.frames import NOT_RUN, OK
from onmerge.tables.labels import label_of
from onmerge.tables.results import Results
from onmerge.tables.rows import main_rows

from tiny import save_base_and_sft, tiny_preference_dataset

BUILT_IN = ("adamw", "ema", "childtuning", "lora", "onties", "ondare", "ondare-published", "onties-published")
SGD_CELL = "qwen-s/dpo/sgd/beta~0.1_mom~0.9/seed~0"
SGD_ROW = {"sgd": {"method": "sgd", "momentum": 0.9}}
built = []  # what sgd_optimizer was given, and what it returned


def sgd_optimizer(inputs) -> torch.optim.Optimizer:
    """The throwaway method's optimizer: SGD at the trainer's learning rate, with the cell's momentum."""
    optimizer = torch.optim.SGD(inputs.params, lr=inputs.adam["lr"], momentum=inputs.spec["momentum"])
    built.append((inputs, optimizer))
    return optimizer


@pytest.fixture
def sgd(monkeypatch):
    """SGD with momentum, a hyper-parameter no built-in method has, registered as a regularization method of Table
    1 for one test (in copies of the registries, which the test's end puts back)."""
    monkeypatch.setattr(methods, "_REGISTRY", dict(methods._REGISTRY))
    monkeypatch.setattr(hyperparameters, "_REGISTRY", dict(hyperparameters._REGISTRY))
    hyperparameters.register(
        hyperparameters.Hyperparameter("momentum", "mom", hyperparameters.Bounds(0.0, 1.0, high_open=True), 0.0)
    )
    method = methods.register(
        methods.Method(
            "sgd",
            ("beta", "momentum"),
            f"{__name__}:sgd_optimizer",
            "SGD",
            methods.Style("tab:green", linestyle=":"),
            group="regularization",
        )
    )
    built.clear()
    return method


def smoke_with(tmp_path, rows: dict, study_methods: list[str]) -> dict:
    """The smoke preset with more method rows, its study table1 training them too, loaded as any preset is."""
    preset = yaml.safe_load((PRESETS / "smoke.yaml").read_text())
    preset["methods"] |= rows
    preset["studies"]["table1"]["methods"] += study_methods
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(preset))
    return load_preset(str(path))


def test_the_built_in_methods_keep_their_names_paths_and_table_rows():
    assert methods.names() == BUILT_IN
    for method in methods.registered():
        assert re.match(grid.NAME_PATTERN, method.name), method.name
        assert set(method.params) <= set(hyperparameters.names()), method.name
    assert [(row.group, row.name, row.label) for row in main_rows()] == [
        ("baseline", "reference", "Reference"),
        ("baseline", "adamw", "AdamW"),
        ("regularization", "kl", "KL"),
        ("regularization", "ema", "EMA"),
        ("regularization", "childtuning", "ChildTuning"),
        ("regularization", "lora", "LoRA"),
        ("offline_merging", "linear", "Linear"),
        ("offline_merging", "dare", "DARE"),
        ("offline_merging", "ties", "TIES"),
        ("online_merging", "onties", "OnTIES"),
        ("online_merging", "ondare", "OnDARE"),
    ]
    assert label_of("ondare-published") == "OnDARE (as published)"
    published = methods.get("onties-published")
    assert (published.optimizer, published.published_semantics, published.needs_base) == ("onties", True, True)
    assert methods.get("lora").optimizer_params == ("lora_rank",)  # beta and the learning rate are the trainer's
    assert figures.online_rows() == ["onties", "ondare"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"name": "adamw"}, "method 'adamw' is already registered"),
        ({"params": ("beta", "momentum")}, "no hyper-parameter momentum"),
        ({"params": ("reserve_p",)}, "every method trains with DPO's beta"),
        ({"group": "second_order"}, "Table 1 has no group 'second_order'"),
        ({"factory": "onmerge.training.adamw_optimizer"}, "should read module:function"),
        ({"published_of": "sgd"}, "'sgd' is not a registered method"),
    ],
)
def test_an_entry_that_refers_to_nothing_is_refused(change, message):
    entry = methods.Method("lion", ("beta",), "onmerge.training:adamw_optimizer", "Lion", methods.Style("k"))
    with pytest.raises(ValueError, match=re.escape(message)):
        methods.register(dataclasses.replace(entry, **change))
    assert "lion" not in methods.names()


def test_a_registered_method_is_planned_by_the_grid(sgd, tmp_path):
    preset = smoke_with(tmp_path, SGD_ROW, ["sgd"])
    cells = [model for model in grid.study_models(preset, "table1") if getattr(model, "method", None) == "sgd"]
    assert [cell.path for cell in cells] == [SGD_CELL]
    assert grid.parse(SGD_CELL) == cells[0]
    settings = grid.training_settings(preset, cells[0])
    assert settings["optimizer"] == {"name": "sgd", "momentum": 0.9}
    assert (settings["training"]["beta"], settings["training"]["learning_rate"]) == (0.1, 1e-3)


def test_a_registered_hyperparameter_is_validated_searched_and_spelled_in_paths(sgd, tmp_path):
    """The preset schema takes the new hyper-parameter's range from its entry; a search over it plans one cell per
    value; a path spelling a value outside its range is refused; the optimizer's settings take it or its default."""
    from onmerge.training import OptimizerSpec

    with pytest.raises(ValueError, match=r"methods\.sgd\.momentum: 1\.5 is greater than or equal to the maximum of 1"):
        smoke_with(tmp_path, {"sgd": {"method": "sgd", "momentum": 1.5}}, ["sgd"])
    searched = smoke_with(tmp_path, {"sgd": {"method": "sgd", "search": {"momentum": [0.0, 0.9]}}}, ["sgd"])
    cells = [model.path for model in grid.study_models(searched, "table1") if getattr(model, "method", None) == "sgd"]
    assert cells == ["qwen-s/dpo/sgd/beta~0.1_mom~0/seed~0", SGD_CELL]
    with pytest.raises(ValueError, match=r"mom~1: momentum must lie in \[0, 1\), got 1"):
        grid.parse("qwen-s/dpo/sgd/beta~0.1_mom~1/seed~0")
    with pytest.raises(ValueError, match="optimizer 'sgd': weight has no default, and the cell sets none"):
        OptimizerSpec("sgd")["weight"]
    assert OptimizerSpec("sgd")["momentum"] == 0.0  # its default, where a cell sets none
    with pytest.raises(ValueError, match=r"unknown hyper-parameter 'nesterov' \(one of beta, .*, momentum\)"):
        OptimizerSpec("sgd", {"nesterov": 1})


def test_a_preset_naming_an_unregistered_method_is_refused_before_any_job(tmp_path):
    known = ", ".join(BUILT_IN)
    with pytest.raises(ValueError, match=re.escape(f"methods.lion.method: unknown method 'lion' (one of {known})")):
        smoke_with(tmp_path, {"lion": {"method": "lion"}}, ["lion"])
    result = snakemake("--dry-run", "--config", f"preset={tmp_path / 'smoke.yaml'}", workdir=tmp_path)
    assert result.returncode != 0
    assert "methods.lion.method: unknown method 'lion'" in result.stdout + result.stderr
    assert "Job stats" not in result.stdout


@pytest.mark.slow
def test_a_registered_method_trains_a_cell_with_its_optimizer_and_draws_its_curve(sgd, tmp_path):
    from onmerge.training import OptimizerSpec, PreferenceTraining, train_preference

    preset = smoke_with(tmp_path, SGD_ROW, ["sgd"])
    settings = grid.training_settings(preset, grid.parse(SGD_CELL))
    base, sft = save_base_and_sft(tmp_path / "models")
    root = tmp_path / "results"
    train_preference(
        sft=sft,
        base=base,
        rows=tiny_preference_dataset(16, seed=2).to_list(),  # 16 distinct pairs
        out=root / SGD_CELL / "model",
        training_log=root / SGD_CELL / curves.LOG,
        training=PreferenceTraining(**settings["training"]),
        optimizer=OptimizerSpec.from_settings(settings["optimizer"]),
    )
    [(inputs, optimizer)] = built
    assert (inputs.adam["lr"], inputs.seed, inputs.reference_delta) == (1e-3, 0, None)  # it needs no base model
    assert optimizer.param_groups[0]["initial_lr"] == 1e-3, "the trainer scheduled and stepped this optimizer"
    assert optimizer.param_groups[0]["momentum"] == 0.9, "the cell's value of its own hyper-parameter"
    history = json.loads((root / SGD_CELL / curves.LOG).read_text())["history"]
    assert [entry["step"] for entry in history] == [1, 2], "16 rows in the smoke preset's batches of 8"

    [(_, _, lines)] = curves.study_curves(preset, "table1")
    assert [line.label for line in lines] == ["AdamW", "OnDARE", "SGD"]
    assert curves._color(preset, lines[2]) == to_rgb("tab:green")
    axes = Figure().subplots()
    curves._draw_panel(axes, preset, [(lines[2], [history])], "loss")
    assert (axes.lines[0].get_linestyle(), axes.lines[0].get_label()) == (":", "SGD")
    missing = curves.draw(root, preset, "curves_table1", tmp_path / "curves.png")
    assert SGD_CELL not in missing and "qwen-s/dpo/adamw/beta~0.1/seed~0" in missing


def test_a_registered_method_takes_its_row_in_table1(sgd, tmp_path):
    preset = smoke_with(tmp_path, SGD_ROW, ["sgd"])
    names = [row.name for row in main_rows()]
    assert names[names.index("lora") + 1 : names.index("linear")] == ["sgd"], "last of Regularization"
    results = Results(pd.DataFrame({"path": [SGD_CELL], "metric": ["benchmark_avg"], "value": [41.5], "stderr": [0.5]}))
    frame = main_table(results, preset, "table4", ("benchmark_avg",)).set_index("row")
    assert frame.loc["sgd", ["group", "label", "status", "value", "models"]].tolist() == [
        "regularization",
        "SGD",
        OK,
        41.5,
        SGD_CELL,
    ]
    assert frame.loc["ema", "status"] == NOT_RUN


def test_a_registered_online_method_is_drawn_on_the_interpolation_plane_in_its_style(monkeypatch):
    toy = copy.deepcopy(load_preset("toy"))
    ondare = methods.get("ondare")
    monkeypatch.setattr(methods, "_REGISTRY", dict(methods._REGISTRY))  # put back at the end
    methods.register(
        dataclasses.replace(ondare, name="ondare2", label="OnDARE 2", style=methods.Style("tab:cyan", "X", 9.0))
    )
    toy["methods"]["ondare2"] = dict(toy["methods"]["ondare"], method="ondare2")
    [cell] = grid.method_cells(toy, "ondare2", "qwen-s", "dpo", 0)
    values = {"mt_bench": 5.5, "benchmark_avg": 40.0}
    results = Results(
        pd.DataFrame({"path": cell.path, "metric": list(values), "value": list(values.values()), "stderr": [0.1, 0.2]})
    )
    groups = [group for group in figures.plane(results, toy, "qwen-s") if group.marks]
    assert [(group.style, group.label) for group in groups] == [("ondare2", "OnDARE 2 (online, default settings)")]
    axes = Figure().subplots()
    figures._draw_plane_axes(axes, groups)
    point = axes.lines[0]
    assert (point.get_marker(), point.get_markersize(), point.get_color()) == ("X", 9.0, "tab:cyan")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"path_key": "m_o"}, "path key 'm_o' is not ASCII letters and digits"),  # `_` splits a path's settings
        ({"path_key": "m~o"}, "path key 'm~o' is not ASCII letters and digits"),  # `~` splits a key from its value
        ({"path_key": "../x"}, "path key '../x' is not ASCII letters and digits"),
        ({"path_key": "m o; rm -rf"}, "path key 'm o; rm -rf' is not ASCII letters and digits"),
        ({"path_key": "mü"}, "path key 'mü' is not ASCII letters and digits"),
        ({"path_key": ""}, "path key '' is not ASCII letters and digits"),
        ({"path_key": "p"}, "its name or path key is 'reserve_p''s"),
        ({"name": "alpha"}, "its name or path key is 'alpha''s"),
        ({"default": 1.0}, "its default must lie in [0, 1)"),
    ],
)
def test_a_hyperparameter_whose_path_key_or_default_would_break_paths_is_refused(monkeypatch, change, message):
    """A path key becomes part of a cell's path, a wildcard and a shell word: only letters and digits, each key once."""
    monkeypatch.setattr(hyperparameters, "_REGISTRY", dict(hyperparameters._REGISTRY))
    entry = hyperparameters.Hyperparameter("momentum", "mom", hyperparameters.Bounds(0.0, 1.0, high_open=True), 0.0)
    with pytest.raises(ValueError, match=re.escape(message)):
        hyperparameters.register(dataclasses.replace(entry, **change))
    assert "momentum" not in hyperparameters.names()
