"""The run configuration read outside Snakemake: the same schema, errors that name the key, before any work."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from onmerge.config import load_config
from onmerge.toyworld.experiment import settings_from_config
from onmerge.toyworld.models import SMOKE_SCALE, TOY_SCALE

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "workflow" / "config" / "config.yaml"
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def test_default_config_is_valid_and_maps_to_the_toy_world():
    toy = load_config(DEFAULT)["toy"]
    scale, training, world = settings_from_config(toy)
    assert scale is TOY_SCALE
    assert (training.loss, training.beta) == ("dpo", 0.1)
    assert world["backbones"] == ["qwen-s", "qwen-m", "llama-m"]
    assert settings_from_config({**toy, "scale": "smoke"})[0] is SMOKE_SCALE


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["toy"].update(speed=3), r"toy: Additional properties are not allowed \('speed'"),
        (lambda c: c["toy"]["dpo"].update(learning_rate="fast"), r"toy\.dpo\.learning_rate: 'fast' is not of type"),
        (lambda c: c["toy"].update(backbones=["gpt-9"]), r"toy\.backbones\.0: 'gpt-9' is not one of"),
        (lambda c: c["toy"].update(scale="huge"), r"toy\.scale: 'huge' is not one of"),
        (lambda c: c["toy"]["dpo"].update(beta=0), r"toy\.dpo\.beta: 0 is less than or equal to the minimum"),
        (lambda c: c.pop("toy"), r"\(top level\): 'toy' is a required property"),
    ],
)
def test_bad_config_names_the_key(tmp_path, change, message):
    config = yaml.safe_load(DEFAULT.read_text())
    change(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=message):
        load_config(path, SCHEMA)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"config file .*nope\.yaml does not exist"):
        load_config(tmp_path / "nope.yaml", SCHEMA)


def test_toy_command_fails_before_any_work_on_a_bad_config(tmp_path):
    config = yaml.safe_load(DEFAULT.read_text())
    config["toy"]["seeds"] = "all"
    (tmp_path / "workflow" / "config").mkdir(parents=True)
    (tmp_path / "workflow" / "schemas").mkdir()
    (tmp_path / "workflow" / "schemas" / "config.schema.yaml").write_text(SCHEMA.read_text())
    bad = tmp_path / "workflow" / "config" / "config.yaml"
    bad.write_text(yaml.safe_dump(config))
    root = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "onmerge.cli", "toy", "tax", "--config", str(bad), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "toy.seeds: 'all' is not of type 'array'" in result.stderr
    assert not root.exists(), "nothing was built"
