"""The install story: pins agree everywhere, CI runs the README's test command, the entry point works."""

import subprocess
import tomllib
from pathlib import Path

import yaml

from onmerge.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def pyproject_pins() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])


def test_conda_environment_pins_match_pyproject():
    environment = yaml.safe_load((ROOT / "envs" / "onmerge.yaml").read_text())
    pip_section = next(entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict))
    assert set(pip_section) == pyproject_pins()
    assert "python=3.11" in environment["dependencies"]


def test_the_vllm_environment_pins_what_its_generation_shares_with_pyproject():
    """vLLM brings its own torch and transformers; lm-eval, IFEval's packages and what the package imports are ours,
    and `setup-venv.sh --vllm` installs exactly the conda file's pins."""
    environment = yaml.safe_load((ROOT / "envs" / "vllm.yaml").read_text())
    pip_section = next(entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict))
    assert "python=3.11" in environment["dependencies"] and all("==" in pin for pin in pip_section)
    assert any(pin.startswith("vllm==") for pin in pip_section)
    assert not any(pin.startswith(("torch==", "transformers==")) for pin in pip_section)
    shared = {pin for pin in pyproject_pins() if pin.split("==")[0] in {pin.split("==")[0] for pin in pip_section}}
    assert {"lm-eval", "langdetect", "immutabledict", "nltk", "pandas"} <= {pin.split("==")[0] for pin in shared}
    assert shared <= set(pip_section)
    listed = subprocess.run(
        ["bash", "-c", 'source <(sed -n "/^vllm_requirements()/,/^}/p" envs/setup-venv.sh); vllm_requirements'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert listed == pip_section


def test_every_dependency_is_pinned_exactly():
    assert all("==" in pin for pin in pyproject_pins())


def test_setup_installs_the_pinned_torch_first():
    setup = (ROOT / "envs" / "setup-venv.sh").read_text()
    torch_pin = next(pin for pin in pyproject_pins() if pin.startswith("torch=="))
    torch_line = setup.index(f"pip install --quiet {torch_pin}")
    assert torch_line < setup.index('pip install --quiet -e ".[test,slurm]"')


def test_ci_runs_exactly_the_readme_test_command():
    command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    readme_lines = [line.strip() for line in (ROOT / "README.md").read_text().splitlines()]
    assert command in readme_lines


def test_console_entry_point_parses_the_benchmark_command():
    args = build_parser().parse_args(["bench", "optim", "--params", "1000", "--tensors", "2"])
    assert (args.command, args.kind, args.params, args.tensors) == ("bench", "optim", 1000, 2)
