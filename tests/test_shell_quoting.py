"""No string from a preset, a name or a path reaches a job's shell as code.

- Free strings (sources, splits, include paths) reach their job as one shell word, spelled as written: the commands
  are taken from a dry run (`--printshellcmds`) of a paper preset whose every free string is hostile, then run by
  bash with `python` and `accelerate` replaced by functions that record their arguments. Without the rules' `:q`
  quoting the marker files appear and the arguments arrive split or expanded.
- Names that become paths (the preset's, backbones, methods, studies) are refused before any job, the key named.
- A requested path with `..` or shell syntax matches no rule; the checkout's own path is quoted in every job.
"""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from onmerge.config import load_preset
from onmerge.shell import job_prologue

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--cores", "1"]

# Shell metacharacters, spaces, quotes, globs, regex characters, braces and path traversal; {mark} is a file that
# exists afterwards only if something ran.
HOSTILE = (
    "$(touch {mark}-substitution)",
    "`touch {mark}-backticks`",
    "x; touch {mark}-semicolon",
    "x && touch {mark}-and #",
    'it\'s "quoted" | tee {mark}-pipe',
    "two words\tand a tab",
    "../../../etc/passwd",
    "[a-z]+ (.*) {{braces}} *",
    "$HOME ${{PATH}} ~root",
    "line\nbreak > {mark}-redirect",
)

# Every free string of a paper preset that a rule passes on the command line (names are the schema's, see
# tests/test_bad_input.py).
FIELDS = (
    ("backbones", "p", "base"),
    ("backbones", "p", "sft"),
    ("preferences", "dataset"),
    ("preferences", "train_split"),
    ("preferences", "test_split"),
    ("evaluation", "include_path"),
    ("judges", "mt_bench", "questions"),
    ("judges", "mt_bench", "references"),
    ("judges", "alpacaeval", "instructions"),
    ("judges", "alpacaeval", "gamed_annotations"),
)


def _preset(values: dict[tuple[str, ...], str]) -> dict:
    """The Qwen1.5-1.8B preset cut to a few cells of each kind, with `values` written into it."""
    preset = yaml.safe_load((ROOT / "workflow" / "config" / "presets" / "qwen1.5-1.8b.yaml").read_text())
    preset["backbones"] = {"p": {}}
    preset["methods"] = {name: preset["methods"][name] for name in ("adamw", "ondare")}
    searched = {"densities": [0.5], "weights": [0.5]}
    merges = {"linear": {"weights": [0.5]}, "dare": searched, "ties": searched}
    preset["offline"] = {"source": "adamw", **merges}
    preset["studies"] = {"table1": {"backbones": ["p"], "methods": ["adamw", "ondare"], "offline": True}}
    for keys, value in values.items():
        node = preset
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return preset


def _shell_commands(preset: Path, workdir: Path) -> list[str]:
    command = [*SNAKEMAKE, "--directory", str(workdir), "--dry-run", "--printshellcmds", "--config"]
    result = subprocess.run([*command, f"preset={preset}"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    # A command with a newline in a quoted word spans lines; each ends with its log redirect.
    return re.findall(r"^Shell command: (.*? 2>&1)$", result.stdout, flags=re.MULTILINE | re.DOTALL)


def _run_recording_arguments(command: str, workdir: Path) -> list[str]:
    """Run the job's command with `python` and `accelerate` recording their arguments instead of running."""
    log = Path(shlex.split(command.rsplit(" > ", 1)[1])[0])
    (workdir / log).parent.mkdir(parents=True, exist_ok=True)
    recorder = 'record() { printf "%s\\0" "$@" >> argv; }; python() { record "$@"; }; accelerate() { record "$@"; }; '
    (workdir / "argv").unlink(missing_ok=True)
    subprocess.run(["bash", "-c", recorder + command], cwd=workdir, check=True, timeout=60)
    return (workdir / "argv").read_text().split("\0")[:-1]


@pytest.mark.parametrize("rotation", [0, 3, 7])
def test_every_preset_string_reaches_its_job_as_one_word_and_runs_nothing(tmp_path, rotation):
    mark = tmp_path / "pwned"
    hostile = [HOSTILE[(rotation + i) % len(HOSTILE)].format(mark=mark) for i in range(len(FIELDS))]
    values = dict(zip(FIELDS, hostile, strict=True))
    preset = tmp_path / "hostile.yaml"
    preset.write_text(yaml.safe_dump(_preset(values)))
    workdir = tmp_path / "run"
    workdir.mkdir()

    commands = _shell_commands(preset, workdir)
    rules = {"fetch_model", "ultrafeedback", "train", "merge", "evaluate", "answers", "judge", "aggregate"}
    assert len(commands) >= len(rules) + 4, commands
    arguments = {argument for command in commands for argument in _run_recording_arguments(command, workdir)}

    assert not list(tmp_path.glob("pwned*")), "a preset string ran as a command"
    assert not list(ROOT.glob("pwned*")) and not list(Path.cwd().glob("pwned*"))
    for field, value in values.items():
        assert value in arguments, f"{'.'.join(field)} did not arrive as one argument: {value!r}"


@pytest.mark.parametrize(
    "checkout",
    ["/srv/my checkout", "/srv/$(touch {mark})", "/srv/`touch {mark}`;touch {mark}", '/srv/it\'s "{{x}}" $HOME'],
)
def test_the_job_prologue_reads_a_hostile_checkout_path_as_a_path(tmp_path, checkout):
    mark = tmp_path / "pwned"
    checkout = Path(checkout.format(mark=mark))
    prologue = job_prologue(Path(str(checkout) + "/bin"), checkout)
    shown = subprocess.run(
        ["bash", "-c", prologue + 'printf "%s\\0" "$PATH" "$PYTHONPATH" "$ONMERGE_FSDP_CONFIG" "$ONMERGE_VLLM_PYTHON"'],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": "/extra"},
    ).stdout.split("\0")
    assert shown[:4] == [
        f"{checkout}/bin:/usr/bin:/bin",
        f"{checkout}/src:/extra",
        f"{checkout}/workflow/accelerate/fsdp.yaml",
        f"{checkout}/.venv-vllm/bin/python",
    ]
    assert not list(tmp_path.glob("pwned*"))


def test_the_job_prologue_keeps_freed_memory_for_the_next_step_unless_the_user_chose(tmp_path):
    """glibc's malloc thresholds: the prologue's by default (onmerge.shell.GLIBC_MALLOC), a value already exported
    kept as it is."""

    def thresholds(**env: str) -> list[str]:
        show = 'printf "%s\\0" "$MALLOC_MMAP_THRESHOLD_" "$MALLOC_TRIM_THRESHOLD_"'
        command = job_prologue(None, tmp_path) + show
        completed = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True, env=env)
        return completed.stdout.split("\0")[:2]

    assert thresholds(PATH="/usr/bin:/bin") == [str(256 * 2**20), str(512 * 2**20)]
    assert thresholds(PATH="/usr/bin:/bin", MALLOC_TRIM_THRESHOLD_="131072") == [str(256 * 2**20), "131072"]


# Every name that becomes a path, a wildcard or a file name: refused before any job, the key named.
NAME_KEYS = {
    "the preset's name": lambda preset, bad: preset.update(name=bad),
    "a backbone": lambda preset, bad: _rename(preset["backbones"], "qwen-s", bad),
    "a method": lambda preset, bad: _rename(preset["methods"], "ondare", bad),
    "a study": lambda preset, bad: _rename(preset["studies"], "table1", bad),
    "a study's method": lambda preset, bad: preset["studies"]["table1"]["methods"].append(bad),
    "the offline source": lambda preset, bad: preset["offline"].update(source=bad),
}
BAD_NAMES = ("$(touch {mark})", "../escape", "two words", "x;touch {mark}", ".hidden", "..", "[a-z]+", "name\n")


def _rename(mapping: dict, old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


def _bad_preset(tmp_path: Path, where: str, bad: str) -> Path:
    preset = yaml.safe_load((ROOT / "workflow" / "config" / "presets" / "smoke.yaml").read_text())
    NAME_KEYS[where](preset, bad.format(mark=tmp_path / "pwned"))
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(preset))
    return path


@pytest.mark.parametrize("where", NAME_KEYS)
@pytest.mark.parametrize("bad", BAD_NAMES)
def test_a_name_with_path_or_shell_syntax_is_refused_naming_it(tmp_path, where, bad):
    with pytest.raises(ValueError, match="is not a name"):
        load_preset(str(_bad_preset(tmp_path, where, bad)))


@pytest.mark.parametrize("where", NAME_KEYS)
def test_a_run_with_a_bad_name_stops_before_any_job_and_writes_nothing(tmp_path, where):
    """Through Snakemake (not a dry run), one bad name per place, each place another."""
    bad = BAD_NAMES[list(NAME_KEYS).index(where) % len(BAD_NAMES)]
    workdir = tmp_path / "run"
    workdir.mkdir()
    command = [*SNAKEMAKE, "--directory", str(workdir), "--config", f"preset={_bad_preset(tmp_path, where, bad)}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "is not a name" in result.stdout + result.stderr, result.stdout[-1500:]
    assert not list(tmp_path.glob("pwned*")), f"{where} = {bad!r} ran"
    assert sorted(p.name for p in workdir.iterdir()) in ([], [".snakemake"]), f"{where} = {bad!r} wrote files"


@pytest.mark.parametrize(
    "target",
    [
        "results/smoke/$(touch {mark})/base/model",
        "results/smoke/../../escape/base/model",
        "results/smoke/qwen-s/dpo/adamw/beta~0.1;touch {mark}/seed~0/model",
        "results/smoke/qwen-s/sft/eval/x y/metrics.json",
        "results/smoke/tokenizers/`touch {mark}`",
    ],
)
def test_a_requested_path_with_path_or_shell_syntax_matches_no_rule(tmp_path, target):
    mark = tmp_path / "pwned"
    command = [*SNAKEMAKE, "--directory", str(tmp_path), target.format(mark=mark), "--config", "preset=smoke"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "MissingRuleException" in result.stdout + result.stderr, result.stdout[-1500:] + result.stderr[-1500:]
    assert not list(tmp_path.glob("pwned*")) and not (tmp_path / "results").exists()
