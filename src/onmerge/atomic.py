"""Atomic outputs: a result appears whole or not at all, and a failed run never destroys the previous result.

A pipeline step that is killed half way must leave nothing a later step could take as finished. Folders are
built in a hidden staging sibling and renamed into place; files are written to a hidden sibling and `os.replace`d.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _sibling(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{kind}-{uuid.uuid4().hex}")


@contextmanager
def atomic_dir(out: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside `out`; if the body succeeds it becomes `out`, else it is removed.

    An existing `out` is renamed aside first (and restored if the final rename fails), then deleted. The staging
    folder is made with `mkdir`, not `tempfile.mkdtemp`, so the published folder follows the umask (not mode 0700).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
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
    if replaced.is_dir() and not replaced.is_symlink():
        shutil.rmtree(replaced)
    else:
        replaced.unlink()


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a hidden sibling of `path` to write; if the body succeeds it is `os.replace`d onto `path`, else removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
