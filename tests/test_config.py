"""The run configuration read outside Snakemake: the same schema, errors that name the key, before any work."""

import subprocess
import sys

import pytest
import yaml

from onmerge.config import DEFAULT_CONFIG, PRESETS, SCHEMAS, check_config_files, load_config, read_yaml


def test_default_config_is_valid_and_names_the_toy_preset():
    assert load_config(DEFAULT_CONFIG)["preset"] == "toy"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(speed=3), r"\(top level\): Additional properties are not allowed \('speed'"),
        (lambda c: c.update(preset=["toy"]), r"preset: \['toy'\] is not of type 'string'"),
        (lambda c: c["benchmarks"]["optimizer"].update(reserve_p=0), r"benchmarks\.optimizer\.reserve_p: 0 is less"),
        (lambda c: c.pop("preset"), r"\(top level\): 'preset' is a required property"),
    ],
)
def test_bad_config_names_the_key(tmp_path, change, message):
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    change(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=message):
        load_config(path, SCHEMAS / "config.schema.yaml")


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"config file .*nope\.yaml does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_toy_benchmark_fails_before_any_work_on_a_bad_preset(tmp_path):
    preset = yaml.safe_load((PRESETS / "smoke.yaml").read_text())
    preset["seeds"] = "all"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(preset))
    result = subprocess.run(
        [sys.executable, "-m", "onmerge.cli", "bench", "toy", "--preset", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "bad.yaml: seeds: 'all' is not of type 'array'" in result.stderr
    assert "toy world from scratch" not in result.stdout, "the check came before any work"


def test_the_shipped_config_and_presets_pass_the_strict_reader():
    """No key twice, no NaN or infinity, UTF-8: what Snakemake's own reader does not check."""
    check_config_files([DEFAULT_CONFIG])
    assert all(isinstance(read_yaml(path), dict) for path in PRESETS.glob("*.yaml"))
