"""The Snakemake workflow: dry-run, lint, and config validation before any job starts."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--cores", "1"]


def snakemake(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_default_target_dry_runs():
    result = snakemake("--dry-run")
    assert result.returncode == 0, result.stderr
    assert "bench_optim" in result.stdout


def test_lint_is_clean():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "config_text, named",
    [
        ("benchmarks:\n  optimizer: {params: 1000, tensors: 2, reserve_p: 0.01, repeats: 1, speed: 3}\n", "speed"),
        ("benchmarks:\n  optimizer: {params: 1000, tensors: 2, reserve_p: high, repeats: 1}\n", "high"),
        ("benchmarks:\n  optimizer: {params: 1000, tensors: 2, reserve_p: 1.5, repeats: 1}\n", "1.5"),
        ("benchmarks:\n  optimizer: {params: 1000, tensors: 0, reserve_p: 0.01, repeats: 1}\n", "tensors"),
        ("benchmark: {}\n", "benchmark"),
    ],
)
def test_bad_config_fails_before_any_job_naming_the_key(tmp_path, config_text, named):
    config = tmp_path / "config.yaml"
    config.write_text(config_text)
    result = snakemake("--dry-run", "--configfile", str(config))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Error validating config file" in output
    assert named in output
    assert "Job stats" not in output


def test_default_target_runs_end_to_end_and_then_has_nothing_to_do(tmp_path):
    """A real run of every stage the workflow has, on a tiny setting, in a scratch working directory."""
    config = tmp_path / "config.yaml"
    config.write_text("benchmarks:\n  optimizer: {params: 20000, tensors: 2, reserve_p: 0.01, repeats: 1}\n")
    workdir = tmp_path / "run"
    run = ("--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir), "--configfile", str(config))
    first = snakemake(*run)
    assert first.returncode == 0, first.stdout + first.stderr
    rows = (workdir / "results" / "bench" / "optim.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["optimizer", "ms_per_step", "ratio_to_adamw", "state_bytes_per_param_byte"]
    assert {row.split("\t")[0] for row in rows[1:]} >= {"OnDAREAdamW", "OnTIESAdamW", "ChildTuningAdamW"}
    assert (workdir / "logs" / "bench" / "optim.log").read_text().strip()
    assert (workdir / "benchmarks" / "bench" / "optim.tsv").is_file()
    second = snakemake(*run)
    assert second.returncode == 0
    assert "Nothing to be done" in second.stdout + second.stderr
