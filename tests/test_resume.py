"""A training cell killed mid-run (SIGKILL) leaves no output, and its rerun resumes to the uninterrupted weights.

The cell runs as the workflow runs it (`python -m onmerge.cli train` in a child process). It is killed once its
trainer has written a checkpoint part-way; the rerun must resume from that checkpoint (the optimizer's exact state,
including the online optimizer's sparse tau_r and step-K cache, the scheduler, the RNGs and the data position) and
end with the very weights of a run that was never interrupted, and the very training log.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from onmerge.training import last_complete_checkpoint

from tiny import save_base_and_sft, tiny_preference_dataset

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# 32 pairs in batches of 4: 8 steps, a checkpoint after every one (a tenth of a run, rounded up). Logged every third
# step as well: a resumed run must still log each checkpoint's step with the uninterrupted run's averages.
SETTINGS = {
    "training": {
        "loss": "dpo",
        "learning_rate": 1e-3,
        "epochs": 1,
        "batch_size": 4,
        "warmup_steps": 1,
        "trainer": {"logging_steps": 3},
    },
    "optimizer": {"name": "ondare", "reserve_p": 0.5, "alpha": 0.01, "merge_every": 3},
}
KILL_AT_STEP = 4


def _command(folders: tuple[Path, Path], preferences: Path, out: Path) -> list[str]:
    base, sft = folders
    return [
        sys.executable,
        "-m",
        "onmerge.cli",
        "train",
        "--sft",
        str(sft),
        "--base",
        str(base),
        "--preferences",
        str(preferences),
        "--settings",
        json.dumps(SETTINGS),
        "--threads",
        "1",
        "--out",
        str(out),
        "--training-log",
        str(out.with_name("training_log.json")),
    ]


def _environment() -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(ROOT / "src")}


def _checkpoint_step(cell: Path) -> int:
    folders = list(cell.parent.glob(f".{cell.name}.checkpoints-*"))
    latest = last_complete_checkpoint(folders[0]) if folders else None
    return -1 if latest is None else int(latest.name.rpartition("-")[2])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[tuple[Path, Path], Path]:
    root = tmp_path_factory.mktemp("inputs")
    preferences = root / "train.json"
    preferences.write_text(json.dumps(tiny_preference_dataset(32).to_list()))
    return save_base_and_sft(root), preferences


@pytest.fixture(scope="module")
def uninterrupted(inputs, tmp_path_factory) -> Path:
    """The cell trained once, start to end, as the workflow trains it: its model folder."""
    folders, preferences = inputs
    cell = tmp_path_factory.mktemp("uninterrupted") / "model"
    subprocess.run(_command(folders, preferences, cell), env=_environment(), check=True, capture_output=True)
    return cell


def test_a_killed_cell_resumes_to_the_uninterrupted_weights(inputs, uninterrupted, tmp_path):
    folders, preferences = inputs
    assert not list(uninterrupted.parent.glob(".model.checkpoints-*")), "checkpoints are removed after success"

    cell = tmp_path / "killed" / "model"
    cell.parent.mkdir()
    child = subprocess.Popen(
        _command(folders, preferences, cell), env=_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while _checkpoint_step(cell) < KILL_AT_STEP and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert child.poll() is None, "the run ended before it could be killed part-way"
    child.send_signal(signal.SIGKILL)
    child.wait()
    killed_at = _checkpoint_step(cell)
    assert KILL_AT_STEP <= killed_at < 8
    assert not cell.exists(), "a killed run leaves no output a later rule could take as finished"

    rerun = subprocess.run(
        _command(folders, preferences, cell), env=_environment(), check=True, capture_output=True, text=True
    )
    assert f"resuming from {cell.parent}/.model.checkpoints-" in rerun.stdout + rerun.stderr
    expected, resumed = load_file(uninterrupted / "model.safetensors"), load_file(cell / "model.safetensors")
    assert set(expected) == set(resumed)
    assert all(torch.equal(expected[name], resumed[name]) for name in expected)
    history = json.loads((uninterrupted.parent / "training_log.json").read_text())["history"]
    assert [entry["step"] for entry in history] == list(range(1, 9))
    assert (cell.parent / "training_log.json").read_bytes() == (uninterrupted.parent / "training_log.json").read_bytes()
    assert "training: 8/8 steps (100%)" in rerun.stderr
    assert not list(cell.parent.glob(".model.checkpoints-*"))


def test_a_trained_cell_records_what_made_it(inputs, uninterrupted):
    folders, preferences = inputs
    record = json.loads((uninterrupted / "provenance.json").read_text())
    assert record["step"] == "train" and record["settings"] == SETTINGS
    assert record["inputs"]["preferences"]["sha256"] == {
        "train.json": hashlib.sha256(preferences.read_bytes()).hexdigest()
    }
    sft_weights = (folders[1] / "model.safetensors").read_bytes()
    assert record["inputs"]["sft"]["sha256"]["model.safetensors"] == hashlib.sha256(sft_weights).hexdigest()
    assert set(record["inputs"]) == {"sft", "base", "preferences"}
    assert record["git_commit"].startswith(
        subprocess.check_output(["git", "-C", ROOT, "rev-parse", "HEAD"], text=True).strip()
    )
    assert record["packages"]["torch"] == metadata.version("torch")
    assert record["seconds"] > 0
