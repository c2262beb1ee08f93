"""Atomic outputs: a result appears whole or not at all, and a failed run never destroys the previous result.

A pipeline step that is killed half way must leave nothing a later step could take as finished. Folders are
built in a hidden staging sibling and renamed into place; files are written to a hidden sibling and `os.replace`d.

A SIGKILL leaves the staging sibling behind (at 7B scale a 15 GB folder), so the next write of the same output
removes what killed writers left. A folder has one writer at a time (Snakemake runs one job per output and locks
its working directory), so every staging sibling of a folder is stale when its next write starts. A file may have
concurrent writers (two judge jobs caching the same judgment), so only the siblings of writers on this host that
are no longer running are removed; the writer's host and process id are part of the sibling's name.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_STAGING_KINDS = ("partial", "replaced")


def _sibling(path: Path, kind: str) -> Path:
    """`.<name>.<kind>-<host>.<pid>.<random>`: hidden, and naming the process that writes it."""
    return path.with_name(f".{path.name}.{kind}-{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:12]}")


def _abandoned_siblings(path: Path, *, sole_writer: bool) -> list[Path]:
    """Staging siblings of `path` left by killed writers: all of them for a sole writer, else those whose writer
    on this host has exited. A name without a host and pid (older versions) counts as abandoned by a sole writer."""
    found = []
    for kind in _STAGING_KINDS:
        for sibling in path.parent.glob(f".{glob.escape(path.name)}.{kind}-*"):
            writer = sibling.name.removeprefix(f".{path.name}.{kind}-").rsplit(".", 2)
            if sole_writer or (len(writer) == 3 and writer[0] == socket.gethostname() and not _running(writer[1])):
                found.append(sibling)
    return found


def _running(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: a check, nothing is sent
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process, alive
        pass
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_dir(out: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside `out`; if the body succeeds it becomes `out`, else it is removed.

    An existing `out` is renamed aside first (and restored if the final rename fails), then deleted. The staging
    folder is made with `mkdir`, not `tempfile.mkdtemp`, so the published folder follows the umask (not mode 0700).
    Staging folders a killed earlier write of `out` left are removed first.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for abandoned in _abandoned_siblings(out, sole_writer=True):
        _remove(abandoned)
    staging = _sibling(out, "partial")
    staging.mkdir()
    try:
        yield staging
        _move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _move_into_place(staging: Path, out: Path) -> None:
    if not (out.exists() or out.is_symlink()):
        staging.rename(out)
        return
    replaced = _sibling(out, "replaced")
    out.rename(replaced)
    try:
        staging.rename(out)
    except OSError:
        replaced.rename(out)
        raise
    _remove(replaced)


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a hidden sibling of `path` to write; if the body succeeds it is `os.replace`d onto `path`, else removed.

    Siblings that killed writers of `path` on this host left are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for abandoned in _abandoned_siblings(path, sole_writer=False):
        _remove(abandoned)
    partial = _sibling(path, "partial")
    try:
        yield partial
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_file(path) as partial:
        partial.write_text(text)


def write_json(path: Path, payload: Any, indent: int | None = 2) -> None:
    """`payload` as JSON at `path`, atomically."""
    write_text(path, json.dumps(payload, indent=indent) + "\n")
