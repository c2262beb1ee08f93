"""The command line: every command the workflow's rules run is registered, and options with choices take the names
the workflow passes and refuse others before any work."""

import re
from pathlib import Path

import pytest

from onmerge.cli import GROUPS, build_parser, registered_commands

ROOT = Path(__file__).resolve().parents[1]
REGISTERED = {" ".join(command.words) for command in registered_commands()}


def _rule_commands() -> set[tuple[str, ...]]:
    """The words after `onmerge.cli` in the rules' shell commands, up to the first one a rule fills in."""
    rules = "\n".join(path.read_text() for path in (ROOT / "workflow" / "rules").rglob("*.smk"))
    return {tuple(match.split()) for match in re.findall(r"onmerge\.cli((?: [a-z][a-z-]*)+)", rules)}


def test_every_command_the_workflow_runs_is_registered():
    called = _rule_commands()
    assert {("toy", "base"), ("merge",), ("evaluate", "toy"), ("bench", "optim"), ("answers",)} <= called
    for words in called:
        assert " ".join(words) in REGISTERED or (len(words) == 1 and words[0] in GROUPS), words


def _merge(method: str) -> list[str]:
    return ["merge", "--method", method, "--rlhf", "r", "--sft", "s", "--base", "b", "--weight", "0.5", "--out", "o"]


@pytest.mark.parametrize(
    ("argv", "attribute", "value"),
    [
        (_merge("linear"), "method", "linear"),
        (_merge("dare"), "method", "dare"),
        (_merge("ties"), "method", "ties"),
        (["toy", "tokenizer", "--arch", "llama", "--seed", "0", "--out", "t"], "arch", "llama"),
        (["toy", "sft", "--base", "b", "--scale", "smoke", "--seed", "0", "--out", "o"], "scale", "smoke"),
        (["toy", "base", "--backbone", "llama-m", "--tokenizer", "t", "--scale", "toy", "--seed", "0", "--out", "o"],
         "backbone", "llama-m"),
        (["failures", "--eval", "e", "--column", "gsm8k_acc", "--world", "lm-eval"], "world", "lm-eval"),
    ],
)  # fmt: skip
def test_choices_take_the_declared_names(argv, attribute, value):
    assert getattr(build_parser().parse_args(argv), attribute) == value


@pytest.mark.parametrize(
    ("argv", "refused"),
    [
        (_merge("slerp"), "argument --method: invalid choice: 'slerp'"),
        (["toy", "tokenizer", "--arch", "gpt2", "--seed", "0", "--out", "t"], "argument --arch: invalid choice"),
        (["toy", "base", "--backbone", "qwen-l", "--tokenizer", "t", "--scale", "toy", "--seed", "0", "--out", "o"],
         "argument --backbone: invalid choice: 'qwen-l'"),
        (["aggregate", "--root", "r", "--world", "paper", "--out", "o", "m"], "argument --world: invalid choice"),
        (["bench", "toy"], "argument kind: invalid choice: 'toy'"),  # Snakemake's benchmark files time the steps
    ],
)  # fmt: skip
def test_other_names_are_refused_naming_the_option(argv, refused, capsys):
    with pytest.raises(SystemExit) as refusal:
        build_parser().parse_args(argv)
    assert refusal.value.code == 2
    assert refused in capsys.readouterr().err
