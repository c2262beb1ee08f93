"""The install story: pins agree everywhere, CI runs the README's test command, the entry point works, and a wheel
installed without the checkout has the presets and schemas."""

import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import yaml

from onmerge import provenance
from onmerge.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def pyproject_pins() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])


def pinned_packages() -> list[str]:
    """onmerge and its dependencies' names, in pyproject.toml's order."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return ["onmerge", *(pin.split("==")[0] for pin in dependencies)]


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


def test_provenance_records_every_dependency_pyproject_pins(monkeypatch):
    """From the installed distribution's metadata (stale after a pin changes until `envs/setup-venv.sh` reinstalls),
    or from the checkout's pyproject.toml where the package is not installed (conda jobs)."""
    pinned = pinned_packages()
    assert provenance.pipeline_packages() == pinned
    assert {"torch", "trl", "lm-eval", "mergekit", "tensorboard"} <= set(pinned) and "pytest" not in pinned

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "requires", not_installed)
    assert provenance.pipeline_packages() == pinned


# Run in a fresh interpreter with the checkout's src/ taken off sys.path (the editable install puts it there), so only
# the wheel's copy of the package can answer.
INSTALLED = """
import json, sys
from pathlib import Path
target, checkout_src = Path(sys.argv[1]), Path(sys.argv[2])
sys.path = [str(target)] + [p for p in sys.path if not Path(p).resolve().is_relative_to(checkout_src)]
from onmerge import config, provenance
try:
    config.load_preset(sys.argv[3])
    refused = None
except ValueError as error:
    refused = str(error)
print(json.dumps({
    "package": config.__file__,
    "toy": str(config.preset_path("toy")),
    "smoke": config.load_preset("smoke")["name"],
    "refused": refused,
    "packages": provenance.pipeline_packages(),
}))
"""


def test_an_installed_wheel_loads_and_validates_presets_without_the_checkout(tmp_path):
    source = tmp_path / "source"  # what the build reads; pip would leave build/ behind in the checkout itself
    for name in ("src", "workflow"):
        ignored = shutil.ignore_patterns("__pycache__", "*.egg-info")
        shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=ignored)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp_path, source],
        check=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("onmerge-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name: archive.read(name) for name in archive.namelist() if name.endswith(".yaml")}
    for folder, files in (("presets", ROOT / "workflow/config/presets"), ("schemas", ROOT / "workflow/schemas")):
        for path in files.glob("*.yaml"):
            assert shipped[f"onmerge/{folder}/{path.name}"] == path.read_bytes(), path
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", tmp_path / "target", wheel], check=True, timeout=300
    )

    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "workflow/config/presets/smoke.yaml").read_text().replace("seeds: [0]", "seeds: all"))
    environment = {"PATH": "/usr/bin:/bin"}  # no PYTHONPATH
    result = subprocess.run(
        [sys.executable, "-I", "-c", INSTALLED, tmp_path / "target", ROOT / "src", bad],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    installed = json.loads(result.stdout)
    target = (tmp_path / "target").resolve()
    assert Path(installed["package"]).resolve().is_relative_to(target)
    assert installed["toy"] == str(target / "onmerge" / "presets" / "toy.yaml")
    assert installed["smoke"] == "smoke"
    assert installed["refused"] == f"{bad}: seeds: 'all' is not of type 'array'"
    assert installed["packages"] == pinned_packages()  # the wheel's own metadata
