"""What produced the tables: the environment (git commit, package versions, the resolved preset) and, for each cell,
its seed, its settings and the wall-clock time of each step (Snakemake's benchmark files).

Collected once the results are complete, so the report can show where each number came from. Each step also writes a
record naming its inputs by SHA-256 (`write_step_record`); digests are cached per file version (`file_sha256`), so a
model that dozens of jobs read is hashed once, not by every job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from onmerge import worlds
from onmerge.atomic import write_json
from onmerge.grid import Checkpoint, MergeCell, Model, TrainCell, format_params, training_settings

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


_REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a PEP 508 requirement starts with its name


def pipeline_packages() -> list[str]:
    """This package and the distributions it requires (pyproject.toml's dependencies, extras left out), by name: from
    the installed distribution's metadata or, where the package runs from a checkout without being installed in the
    environment (`snakemake --sdm conda` jobs), from the checkout's pyproject.toml."""
    try:
        requirements = [r for r in metadata.requires("onmerge") or [] if "extra ==" not in r]
    except metadata.PackageNotFoundError:
        requirements = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]["dependencies"]
    return ["onmerge", *(_REQUIREMENT_NAME.match(requirement).group() for requirement in requirements)]


def software(checkout: Path) -> dict[str, Any]:
    """The code that ran: git commit of the checkout, Python, platform and the pipeline's package versions."""
    versions = {}
    for package in pipeline_packages():
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


HASH_CACHE_ENV = "ONMERGE_HASH_CACHE"  # a folder; default: $XDG_CACHE_HOME/onmerge/sha256 (~/.cache/...)
# A file changed less than this long ago is hashed but not cached: filesystem clocks tick coarsely (a few ms), so a
# second same-size write within one tick would keep the size and times the cache entry was stored under.
RACY_SECONDS = 2.0


def hash_cache_dir() -> Path:
    """Where file hashes are remembered: `$ONMERGE_HASH_CACHE`, else the user's cache folder.

    One cache serves every job, preset and checkout of a user (on a cluster, every host sharing the home folder), so a
    model's weights are hashed once, not by each of the dozens of jobs that read them.
    """
    configured = os.environ.get(HASH_CACHE_ENV)
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "onmerge" / "sha256"


def _stat_key(stat: os.stat_result) -> dict[str, int]:
    """What identifies one version of a file. The device number is left out: NFS clients number a mount each their
    own way, and the inode and times come from the server, so hosts sharing a filesystem share entries."""
    return {"inode": stat.st_ino, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns}


def _sha256_of(handle: BinaryIO) -> str:
    return hashlib.file_digest(handle, "sha256").hexdigest()


def _cached_sha256(entry: Path, real: str, key: dict[str, int]) -> str | None:
    """The digest `entry` holds for this exact version of `real`; None if missing, stale or unreadable."""
    try:
        stored = json.loads(entry.read_text())
        digest = stored["sha256"]
        if stored["path"] == real and stored["stat"] == key and re.fullmatch("[0-9a-f]{64}", digest):
            return digest
    except (OSError, ValueError, TypeError, KeyError):  # absent, unreadable, corrupted
        pass
    return None


def file_sha256(file: Path, cache: Path | None = None) -> str:
    """SHA-256 of a file's bytes, remembered in `cache` (default `hash_cache_dir()`) for that version of the file.

    An entry is one small JSON file per real path (symlinks resolved, so a model linked into several presets is one
    entry), holding the inode, size, mtime and ctime the digest was computed for; any change to them, a replaced file
    included, is a miss. Entries are written atomically, so concurrent jobs (and hosts) at worst hash a file twice; a
    corrupted entry is a miss and is overwritten. A file that changed while it was read is not cached.
    """
    real = Path(file).resolve()
    cache = hash_cache_dir() if cache is None else Path(cache)
    entry = cache / f"{hashlib.sha256(str(real).encode()).hexdigest()}.json"
    with real.open("rb") as handle:
        before = _stat_key(os.fstat(handle.fileno()))
        digest = _cached_sha256(entry, str(real), before)
        if digest is not None:
            return digest
        digest = _sha256_of(handle)
        after = _stat_key(os.fstat(handle.fileno()))
    settled = time.time_ns() - max(after["mtime_ns"], after["ctime_ns"]) >= RACY_SECONDS * 1e9
    if after == before and settled:
        with contextlib.suppress(OSError):  # a read-only or full cache costs time, never the record
            write_json(entry, {"path": str(real), "stat": after, "sha256": digest})
    return digest


def file_hashes(path: Path, cache: Path | None = None) -> dict[str, str]:
    """SHA-256 of a file, or of every file in a folder by relative name (through `file_sha256`'s cache).

    Left out of a folder: this module's own record, and hidden files (Snakemake's `.snakemake_timestamp` marker).
    """
    path = Path(path)
    if path.is_file():
        return {path.name: file_sha256(path, cache)}
    return {str(file.relative_to(path)): file_sha256(file, cache) for file in _record_files(path)}


def _record_files(folder: Path) -> list[Path]:
    """The files a folder's record names, sorted, following linked subfolders (a linked model folder links each of
    its items, `original/` included); a folder reached twice through links is walked once."""
    files, seen = [], set()
    for root, folders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            folders.clear()
            continue
        seen.add(real)
        files += [Path(root, name) for name in names if name != RECORD and not name.startswith(".")]
    return sorted(file for file in files if file.is_file())


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
            built_from = worlds.of(preset).checkpoint_seed(preset, model.backbone)  # None: fetched
            seed, settings = "" if built_from is None else built_from, {"role": model.role}
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
