"""The experiment grid: presets load and check, every cell has one path that parses back, studies hold the cells
the paper's tables and figures need."""

import copy

import jsonschema
import pytest
import yaml

from onmerge import grid
from onmerge.config import PRESETS, SCHEMAS, load_preset, preset_path
from onmerge.hyperparameters import BOUNDS
from onmerge.toyworld.backbones import BACKBONES

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
    assert len(trained) == 3 * 7  # 3 backbones x 7 trained rows (KL searches one beta here)
    assert len(merged) == 3 * (2 + 2 + 2)  # linear weights, DARE and TIES densities x weights
    assert {m.path for m in table1 if isinstance(m, grid.Checkpoint)} == {f"{b}/sft" for b in BACKBONES}
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


def test_paper_presets_list_the_published_grids():
    small = load_preset("qwen1.5-1.8b")
    table1 = grid.study_models(small, "table1")
    trained = [m for m in table1 if isinstance(m, grid.TrainCell)]
    assert (
        len(trained) == 1 + 5 + 3 + 1 + 1 + 1 + 1
    )  # AdamW, KL beta search, EMA search, ChildTuning, LoRA, OnTIES, OnDARE
    assert len([m for m in table1 if isinstance(m, grid.MergeCell)]) == 5 + 15 + 15
    assert len(_study_paths(small, "figure2")) == 1 + 2 * 8  # the SFT reference and 8 reserve rates x 2 optimizers
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
        (lambda p: p.update(evaluation={"tasks": ["gsm8k"]}), "evaluation: a toy preset builds its own"),
    ],
)
def test_a_preset_that_refers_to_nothing_fails_naming_the_key(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        grid.check_preset(_broken(change), frozenset(BACKBONES))


def test_a_paper_preset_needs_its_models_and_data():
    preset = copy.deepcopy(load_preset("llama-3-8b"))
    del preset["backbones"]["llama-3-8b"]["sft"]
    with pytest.raises(ValueError, match=r"backbones\.llama-3-8b\.sft: a paper preset needs"):
        grid.check_preset(preset)


def test_presets_by_name_or_path(tmp_path):
    assert preset_path("toy") == PRESETS / "toy.yaml"
    assert preset_path(str(tmp_path / "mine.yaml")) == tmp_path / "mine.yaml"
    with pytest.raises(ValueError, match=r"preset 'tiny': no .*tiny\.yaml \(presets: llama-3-8b, qwen1\.5-1\.8b"):
        preset_path("tiny")
    bad = tmp_path / "bad.yaml"
    bad.write_text((PRESETS / "smoke.yaml").read_text().replace("learning_rate: 1.0e-3", "learning_rate: fast"))
    with pytest.raises(ValueError, match=r"bad\.yaml: training\.learning_rate: 'fast' is not of type"):
        load_preset(str(bad))


SCHEMA = yaml.safe_load((SCHEMAS / "preset.schema.yaml").read_text())
# Where the preset schema states each hyper-parameter's range.
SCHEMA_RANGES = {name: f"#/$defs/method_params/{name}" for name in SCHEMA["$defs"]["method_params"]} | {
    "density": "#/$defs/merge_search/properties/densities/items",
    "weight": "#/$defs/merge_search/properties/weights/items",
}
PROBES = [-1, 0, 1e-12, 0.01, 0.5, 1 - 1e-12, 1, 1.0, 1.5, 2, 8, 1e6, True]


@pytest.mark.parametrize("name", sorted(SCHEMA_RANGES))
def test_the_schema_admits_exactly_what_the_optimizers_and_trainer_admit(name):
    """The schema states each range for readers and editors; `onmerge.hyperparameters` is what the optimizers, the
    preset check and the cell paths enforce. They must not drift apart (NaN aside: only the strict reader refuses it).
    """
    validator = jsonschema.Draft202012Validator({"$ref": SCHEMA_RANGES[name], "$defs": SCHEMA["$defs"]})
    assert [validator.is_valid(value) for value in PROBES] == [BOUNDS[name].admits(value) for value in PROBES]


def test_the_schema_and_the_cell_paths_read_names_alike():
    assert SCHEMA["$defs"]["name"]["pattern"] == grid.NAME_PATTERN
    for name in ("qwen-s", "qwen1.5-7b", "Llama_3.8B"):
        assert grid.parse(f"{name}/sft") == grid.Checkpoint(name, "sft")
    for name in (".", "..", ".hidden", "-rf", "a b", "a\n", "ü"):
        with pytest.raises(ValueError, match="is not a backbone name"):
            grid.parse(f"{name}/sft")
