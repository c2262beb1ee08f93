"""The run configuration read outside Snakemake: the same schema, errors that name the key, before any work."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from onmerge.config import PRESETS, SCHEMAS, check_config_files, load_validated, read_yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "workflow" / "config" / "config.yaml"  # the Snakefile's `configfile:`
# what common.smk validates it with
CONFIG_SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())


def test_default_config_is_valid_and_names_the_toy_preset():
    assert load_validated(DEFAULT_CONFIG, CONFIG_SCHEMA)["preset"] == "toy"


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
        load_validated(path, CONFIG_SCHEMA)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"config file .*nope\.yaml does not exist"):
        load_validated(tmp_path / "nope.yaml", CONFIG_SCHEMA)


def test_a_reporting_step_fails_before_any_work_on_a_bad_preset(tmp_path):
    preset = yaml.safe_load((PRESETS / "smoke.yaml").read_text())
    preset["seeds"] = "all"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(preset))
    out_dir = tmp_path / "provenance"
    command = ["provenance", "--preset", str(bad), "--benchmarks", str(tmp_path), "--out-dir", str(out_dir)]
    result = subprocess.run(
        [sys.executable, "-m", "onmerge.cli", *command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "bad.yaml: seeds: 'all' is not of type 'array'" in result.stderr
    assert not out_dir.exists(), "the check came before any work"


def test_the_package_reads_the_workflows_presets_and_schemas():
    """One copy: in a checkout the package's data are the files the workflow's rules name."""
    assert PRESETS == ROOT / "workflow" / "config" / "presets"
    assert SCHEMAS == ROOT / "workflow" / "schemas"


def test_the_shipped_config_and_presets_pass_the_strict_reader():
    """No key twice, no NaN or infinity, UTF-8: what Snakemake's own reader does not check."""
    check_config_files([DEFAULT_CONFIG])
    assert all(isinstance(read_yaml(path), dict) for path in PRESETS.glob("*.yaml"))
