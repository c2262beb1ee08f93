"""The experiment grid: presets load and check, every cell has one path that parses back, studies hold the cells
the paper's tables and figures need."""

import copy

import jsonschema
import pytest

from onmerge import grid, hyperparameters, worlds
from onmerge.config import PRESETS, load_preset, preset_path, preset_schema

PRESET_NAMES = sorted(path.stem for path in PRESETS.glob("*.yaml"))


def test_the_presets_the_issue_asks_for_exist():
    assert set(PRESET_NAMES) == {"toy", "smoke", "qwen1.5-1.8b", "qwen1.5-7b", "llama-3-8b"}


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_model_path_parses_back_to_the_same_model(name):
    preset = load_preset(name)
    models = grid.all_models(preset)
    assert len({model.path for model in models}) == len(models)
    for model in models:
        assert grid.parse(model.path) == model


def test_path_spelling_is_the_documented_one():
    cell = grid.TrainCell(
        "qwen-s", "dpo", "ondare", (("beta", 0.1), ("reserve_p", 0.01), ("alpha", 1e-7), ("merge_every", 1)), 0
    )
    assert cell.path == "qwen-s/dpo/ondare/beta~0.1_p~0.01_alpha~1e-07_k~1/seed~0"
    merge = grid.MergeCell(cell, "ties", (("density", 0.3), ("weight", 0.5)))
    assert merge.path == f"{cell.path}/merge/ties/density~0.3_weight~0.5"
    assert grid.parse("qwen-s/sft") == grid.Checkpoint("qwen-s", "sft")


@pytest.mark.parametrize(
    "path, message",
    [
        ("qwen-s/dpo/sgd/beta~0.1/seed~0", "unknown method 'sgd'"),
        ("qwen-s/ppo/adamw/beta~0.1/seed~0", "unknown loss 'ppo'"),
        ("qwen-s/dpo/ondare/beta~0.1_p~0.01/seed~0", "should read beta~<value>_p~<value>_alpha~<value>_k~<value>"),
        ("qwen-s/dpo/adamw/beta~high/seed~0", "not a number"),
        ("qwen-s/dpo/adamw/beta~0.1/seed0", "seed~<integer>"),
        ("qwen-s/dpo/adamw/beta~0.1/seed~0/merge/slerp/weight~0.5", "unknown merge 'slerp'"),
        ("qwen-s/dpo/adamw/beta~0.1/seed~0/merge/ties/weight~0.5", "density~<value>_weight~<value>"),
        ("qwen-s/reference", "not a model path"),
    ],
)
def test_a_mistyped_path_says_what_is_wrong(path, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("~", "~")):
        grid.parse(path)


def _study_paths(preset, study):
    return {model.path for model in grid.study_models(preset, study)}


def test_toy_studies_hold_every_table_and_figure():
    toy = load_preset("toy")
    table1 = grid.study_models(toy, "table1")
    trained = [m for m in table1 if isinstance(m, grid.TrainCell)]
    merged = [m for m in table1 if isinstance(m, grid.MergeCell)]
    assert len(trained) == 2 * 7  # 2 backbones x 7 trained rows (KL searches one beta here)
    assert len(merged) == 2 * (2 + 2 + 2)  # linear weights, DARE and TIES densities x weights
    assert {m.path for m in table1 if isinstance(m, grid.Checkpoint)} == {"qwen-s/sft", "qwen-m/sft"}
    alphas = {m.hyperparameters["alpha"] for m in grid.study_models(toy, "table2") if isinstance(m, grid.TrainCell)}
    assert alphas == {2e-2, 2e-3, 2e-4, 2e-5}
    table3 = [m for m in grid.study_models(toy, "table3") if isinstance(m, grid.TrainCell)]
    assert {(m.loss, m.method) for m in table3} == {
        (loss, method) for loss in ("ipo", "kto") for method in ("adamw", "ondare", "onties")
    }
    gaps = {
        m.hyperparameters["merge_every"] for m in grid.study_models(toy, "figure3") if isinstance(m, grid.TrainCell)
    }
    assert gaps == {1, 2, 4, 8, 16}
    # Shared cells are one cell: Table 2's alpha 2e-5 is Table 1's OnDARE on qwen-s.
    assert _study_paths(toy, "table1") & _study_paths(toy, "table2") == {
        "qwen-s/sft",
        "qwen-s/dpo/ondare/beta~0.1_p~0.01_alpha~2e-05_k~1/seed~0",
    }


def test_the_precision_study_trains_four_rows_in_two_regimes_three_seeds_and_two_worlds():
    toy = load_preset("toy")
    cells = [m for m in grid.study_models(toy, "precision") if isinstance(m, grid.TrainCell)]
    assert len(cells) == 4 * 2 * 3 * 2
    assert {(m.backbone, m.regime) for m in cells} == {
        (world, regime) for world in ("qwen-s", "qwen-s-w1") for regime in ("small-step", "small-step-bf16")
    }
    dropout = next(m for m in cells if m.hyperparameters.get("alpha") == 0.0)
    assert dropout.path.startswith("qwen-s/regime~small-step/dpo/ondare/beta~0.1_p~0.01_alpha~0_k~1/seed~")
    # The precision study's cells are apart from every other study's: another regime is another path.
    assert not _study_paths(toy, "precision") & _study_paths(toy, "table1") - {"qwen-s/sft"}
    settings = grid.training_settings(toy, dropout)["training"]
    assert (settings["learning_rate"], settings["batch_size"], settings["bf16"]) == (3.6e-5, 2, False)
    bf16 = next(m for m in cells if m.regime == "small-step-bf16")
    assert grid.training_settings(toy, bf16)["training"]["bf16"] is True
    assert grid.training_settings(toy, bf16)["training"]["epochs"] == toy["training"]["epochs"]  # not overridden
    # The second world is qwen-s built from another seed; the first is built from the world's.
    world = worlds.of(toy)
    assert (world.builds(toy, "qwen-s-w1"), world.checkpoint_seed(toy, "qwen-s-w1")) == ("qwen-s", 1)
    assert (world.builds(toy, "qwen-s"), world.checkpoint_seed(toy, "qwen-s")) == ("qwen-s", 0)


def test_a_regime_cell_path_parses_back_and_refuses_a_bad_regime_name():
    cell = grid.TrainCell("qwen-s", "dpo", "adamw", (("beta", 0.1),), 2, "small-step-bf16")
    assert cell.path == "qwen-s/regime~small-step-bf16/dpo/adamw/beta~0.1/seed~2"
    assert grid.parse(cell.path) == cell
    merge = grid.MergeCell(cell, "linear", (("weight", 0.5),))
    assert grid.parse(merge.path) == merge
    with pytest.raises(ValueError, match="is not a regime name"):
        grid.parse("qwen-s/regime~.hidden/dpo/adamw/beta~0.1/seed~2")


def test_published_semantics_methods_train_their_optimizer_with_the_published_flag():
    cell = grid.TrainCell(
        "qwen-s",
        "dpo",
        "onties-published",
        (("beta", 0.1), ("reserve_p", 1e-5), ("alpha", 1e-7), ("merge_every", 5)),
        0,
    )
    assert grid.parse(cell.path) == cell
    optimizer = grid.training_settings(load_preset("toy"), cell)["optimizer"]
    assert optimizer == {
        "name": "onties",
        "reserve_p": 1e-5,
        "alpha": 1e-7,
        "merge_every": 5,
        "published_semantics": True,
    }


def test_paper_presets_list_the_published_grids():
    small = load_preset("qwen1.5-1.8b")
    table1 = grid.study_models(small, "table1")
    trained = [m for m in table1 if isinstance(m, grid.TrainCell)]
    assert (
        len(trained) == 1 + 5 + 3 + 1 + 1 + 1 + 1
    )  # AdamW, KL beta search, EMA search, ChildTuning, LoRA, OnTIES, OnDARE
    assert len([m for m in table1 if isinstance(m, grid.MergeCell)]) == 5 + 15 + 15
    # the SFT reference and 8 reserve rates x 2 optimizers, and OnTIES as published
    assert len(_study_paths(small, "figure2")) == 1 + 3 * 8
    adamw = grid.method_cells(small, "adamw", "qwen1.5-1.8b", "dpo", 0)[0]
    settings = grid.training_settings(small, adamw)
    published = {"learning_rate": 1e-6, "beta": 0.1, "epochs": 2, "batch_size": 128, "warmup_steps": 100}
    assert {key: settings["training"][key] for key in published} == published
    assert (settings["training"]["max_length"], settings["training"]["bf16"]) == (2048, True)
    assert settings["optimizer"] == {"name": "adamw"}
    lora = grid.method_cells(small, "lora", "qwen1.5-1.8b", "dpo", 0)[0]
    assert grid.training_settings(small, lora)["training"]["learning_rate"] == 1e-5
    assert grid.training_settings(small, lora)["optimizer"] == {"name": "lora", "lora_rank": 8}


def _broken(change):
    preset = copy.deepcopy(load_preset("toy"))
    change(preset)
    return preset


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p["studies"]["table1"]["methods"].append("sgd"), "studies.table1.methods: 'sgd' is not one of"),
        (lambda p: p["studies"]["table2"].update(backbones=["gpt-9"]), "studies.table2.backbones: 'gpt-9'"),
        (
            lambda p: p["studies"]["figure4"].update(vary={"reserve_p": [0.1]}),
            "studies.figure4.vary.reserve_p: method 'adamw'",
        ),
        (lambda p: p["methods"]["ondare"].pop("alpha"), "methods.ondare: ondare needs alpha"),
        (lambda p: p["methods"]["adamw"].update(alpha=0.1), "methods.adamw.alpha: adamw has no such"),
        (lambda p: p["offline"].update(source="sgd"), "offline.source: 'sgd'"),
        (lambda p: p["backbones"].update({"gpt-9": {}}), "backbones.gpt-9: a toy world builds only"),
        (lambda p: p["backbones"]["qwen-s-w1"].update(builds="gpt-9"), "backbones.qwen-s-w1.builds: a toy world"),
        (lambda p: p["studies"]["precision"].update(regimes=["fast"]), "studies.precision.regimes: 'fast' is not"),
        (lambda p: p["regimes"]["small-step"].update(gpus=2), "regimes.small-step.gpus: a job's resources"),
        (lambda p: p["regimes"]["small-step"].update(learning_rate=2.0), "regimes.small-step.learning_rate: learning"),
        (
            lambda p: p["regimes"]["small-step"].update(batch_size=2, per_device_batch_size=3),
            "regimes.small-step.batch_size: global batch 2 is not a multiple",
        ),
    ],
)
def test_a_preset_that_refers_to_nothing_fails_naming_the_key(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        grid.check_preset(_broken(change))


def test_presets_by_name_or_path(tmp_path):
    assert preset_path("toy") == PRESETS / "toy.yaml"
    assert preset_path(str(tmp_path / "mine.yaml")) == tmp_path / "mine.yaml"
    with pytest.raises(ValueError, match=r"preset 'tiny': no .*tiny\.yaml \(presets: llama-3-8b, qwen1\.5-1\.8b"):
        preset_path("tiny")
    bad = tmp_path / "bad.yaml"
    bad.write_text((PRESETS / "smoke.yaml").read_text().replace("learning_rate: 1.0e-3", "learning_rate: fast"))
    with pytest.raises(ValueError, match=r"bad\.yaml: training\.learning_rate: 'fast' is not of type"):
        load_preset(str(bad))


SCHEMA = preset_schema()
# Where the preset schema states each hyper-parameter's range.
SCHEMA_RANGES = {name: f"#/$defs/method_params/{name}" for name in SCHEMA["$defs"]["method_params"]} | {
    "density": "#/$defs/merge_search/properties/densities/items",
    "weight": "#/$defs/merge_search/properties/weights/items",
}
PROBES = [-1, 0, 1e-12, 0.01, 0.5, 1 - 1e-12, 1, 1.0, 1.5, 2, 8, 1e6, True]


@pytest.mark.parametrize("name", sorted(SCHEMA_RANGES))
def test_the_schema_admits_exactly_what_the_optimizers_and_trainer_admit(name):
    """The schema's ranges (the method hyper-parameters' made from their registry entries) and
    `onmerge.hyperparameters`, what the optimizers, the preset check and the cell paths enforce, admit the same values
    (NaN aside: only the strict reader refuses it)."""
    validator = jsonschema.Draft202012Validator({"$ref": SCHEMA_RANGES[name], "$defs": SCHEMA["$defs"]})
    bounds = hyperparameters.get(name).bounds
    assert [validator.is_valid(value) for value in PROBES] == [bounds.admits(value) for value in PROBES]


def test_the_schema_and_the_cell_paths_read_names_alike():
    assert SCHEMA["$defs"]["name"]["pattern"] == grid.NAME_PATTERN
    for name in ("qwen-s", "qwen1.5-7b", "Llama_3.8B"):
        assert grid.parse(f"{name}/sft") == grid.Checkpoint(name, "sft")
    for name in (".", "..", ".hidden", "-rf", "a b", "a\n", "ü"):
        with pytest.raises(ValueError, match="is not a backbone name"):
            grid.parse(f"{name}/sft")
