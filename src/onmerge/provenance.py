"""What produced the tables: the environment (git commit, package versions, the resolved preset) and, for each cell,
its seed, its settings and the wall-clock time of each step (Snakemake's benchmark files).

Collected once the results are complete, so the report can show where each number came from.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from onmerge.atomic import write_json
from onmerge.grid import Checkpoint, MergeCell, Model, TrainCell, format_params, training_settings

PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "lm-eval",
    "snakemake",
    "mergekit",
    "peft",
    "accelerate",
    "pandas",
    "matplotlib",
    "onmerge",
)


CHECKOUT = Path(__file__).resolve().parents[2]  # this package's checkout, for the git commit
RECORD = "provenance.json"  # a step's record, inside the folder it made

STEPS = ("build", "train", "merge", "evaluate", "judge")


def git_commit(checkout: Path) -> str:
    """The checkout's commit, `+dirty` when it has uncommitted changes, or why there is none."""
    try:
        commit = _git(checkout, "rev-parse", "HEAD")
        dirty = _git(checkout, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + ("+dirty" if dirty else "")


def _git(checkout: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(checkout), *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def software(checkout: Path) -> dict[str, Any]:
    """The code that ran: git commit of the checkout, Python, platform and the pipeline's package versions."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "git_commit": git_commit(checkout),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
    }


def environment(preset: Mapping[str, Any], checkout: Path) -> dict[str, Any]:
    return software(checkout) | {"preset": dict(preset)}


def file_hashes(path: Path) -> dict[str, str]:
    """SHA-256 of a file, or of every file in a folder by relative name.

    Left out of a folder: this module's own record, and hidden files (Snakemake's `.snakemake_timestamp` marker).
    """
    path = Path(path)
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != RECORD and not p.name.startswith("."))
    hashes = {}
    for file in files:
        digest = hashlib.sha256()
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 24), b""):
                digest.update(block)
        hashes[file.name if file == path else str(file.relative_to(path))] = digest.hexdigest()
    return hashes


def record_path(out: Path) -> Path:
    """Where a step's record lies: inside the folder the step made, or beside its file as `<stem>.provenance.json`.

    Kept out of the result itself, so a result's bytes depend only on its inputs (the record holds timings).
    """
    out = Path(out)
    return out / RECORD if out.is_dir() else out.with_name(f"{out.stem}.{RECORD}")


def write_step_record(
    out: Path, step: str, settings: Mapping[str, Any], inputs: Mapping[str, Path | None], seconds: float
) -> None:
    """The record of the step that made `out`: what made it, from what, with which code, how long.

    The resolved settings include the seeds; inputs are named by role with the SHA-256 of each of their files.
    """
    record = {
        "step": step,
        "settings": dict(settings),
        "inputs": {
            role: {"path": str(Path(path).resolve()), "sha256": file_hashes(path)}
            for role, path in inputs.items()
            if path is not None
        },
        "seconds": round(seconds, 3),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    } | software(CHECKOUT)
    write_json(record_path(out), record)


def _step_files(model: Model) -> dict[str, str]:
    """The benchmark file of each step that made and measured `model`, relative to benchmarks/<preset>."""
    if isinstance(model, TrainCell):
        made = {"train": f"{model.path}/train.tsv"}
    elif isinstance(model, MergeCell):
        made = {"merge": f"{model.source.path}/merge/{model.merge}/{format_params(model.params)}.tsv"}
    else:
        made = {"build": f"{model.backbone}/{model.role}.tsv"}
    return made | {"evaluate": f"{model.path}/evaluate.tsv", "judge": f"{model.path}/judge.tsv"}


def _seconds(path: Path) -> float:
    if not path.is_file():
        return math.nan
    return float(pd.read_csv(path, sep="\t")["s"].iloc[0])


def cells(preset: Mapping[str, Any], models: list[Model], benchmarks: Path) -> pd.DataFrame:
    """One row per model: identity, seed, settings (JSON) and seconds per step (NaN where no benchmark file is)."""
    rows = []
    for model in models:
        if isinstance(model, Checkpoint):
            seed, settings = preset.get("world", {}).get("seed", ""), {"role": model.role}
        else:
            cell = model.source if isinstance(model, MergeCell) else model
            seed, settings = cell.seed, training_settings(preset, cell)
            if isinstance(model, MergeCell):
                settings |= {"merge": {"method": model.merge, **dict(model.params)}}
        timings = {f"{step}_s": _seconds(Path(benchmarks) / file) for step, file in _step_files(model).items()}
        rows.append({"path": model.path, "seed": seed, "settings": json.dumps(settings, sort_keys=True)} | timings)
    return pd.DataFrame(rows, columns=["path", "seed", "settings", *(f"{step}_s" for step in STEPS)])


def html(environment_record: Mapping[str, Any], table: pd.DataFrame) -> str:
    """The report's provenance page: the environment, then every cell."""
    from html import escape

    packages = "".join(
        f"<tr><td>{escape(name)}</td><td>{escape(version)}</td></tr>"
        for name, version in environment_record["packages"].items()
    )
    preset = escape(json.dumps(environment_record["preset"], indent=2, sort_keys=True))
    style = "table{border-collapse:collapse;font:12px sans-serif}td,th{border:1px solid #ccc;padding:2px 6px}"
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{style}</style></head><body>"
        f"<h2>Provenance</h2><p>git commit: <code>{escape(environment_record['git_commit'])}</code>; "
        f"Python {escape(environment_record['python'])} on {escape(environment_record['platform'])}</p>"
        f"<h3>Packages</h3><table>{packages}</table>"
        f"<h3>Cells: seed, settings and seconds per step</h3>{table.to_html(index=False, na_rep='', escape=True)}"
        f"<h3>Resolved preset</h3><pre>{preset}</pre></body></html>\n"
    )


def write(preset: Mapping[str, Any], models: list[Model], benchmarks: Path, checkout: Path, out_dir: Path) -> None:
    """`environment.json`, `cells.csv` and `provenance.html` under `out_dir`, each written atomically."""
    from onmerge.atomic import write_text

    record = environment(preset, checkout)
    table = cells(preset, models, benchmarks)
    write_text(Path(out_dir) / "environment.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
    write_text(Path(out_dir) / "cells.csv", table.to_csv(index=False))
    write_text(Path(out_dir) / "provenance.html", html(record, table))
