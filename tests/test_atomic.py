"""Atomic outputs: whole or absent, and a failure never destroys the previous result."""

import ast
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import onmerge
from onmerge.atomic import atomic_dir, write_json, write_text


def test_folder_appears_whole_and_replaces_the_old_one(tmp_path):
    out = tmp_path / "model"
    with atomic_dir(out) as staging:
        (staging / "a.txt").write_text("first")
        assert not out.exists(), "nothing is visible before the body finishes"
    with atomic_dir(out) as staging:
        (staging / "b.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"], "no staging or replaced folder left behind"


def test_failure_keeps_the_previous_result_and_leaves_nothing_else(tmp_path):
    out = tmp_path / "model"
    with atomic_dir(out) as staging:
        (staging / "good.txt").write_text("kept")
    with pytest.raises(RuntimeError, match="killed"), atomic_dir(out) as staging:
        (staging / "half.txt").write_text("partial")
        raise RuntimeError("killed")
    assert (out / "good.txt").read_text() == "kept"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_files_are_replaced_atomically(tmp_path):
    path = tmp_path / "deep" / "metrics.json"
    write_json(path, {"a": 1})
    write_text(path, "not json")
    assert path.read_text() == "not json"
    write_json(path, {"b": [1, 2]})
    assert json.loads(path.read_text()) == {"b": [1, 2]}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


# Every call in the package that writes a file, and where its destination is: the receiver (`path.write_text()`),
# a positional argument (`model.save_pretrained(path)`, `shutil.copyfile(src, path)`) or a keyword.
WRITERS: dict[str, tuple[str, int | str]] = {
    "write_text": ("receiver", 0),
    "write_bytes": ("receiver", 0),
    "symlink_to": ("receiver", 0),
    "save_pretrained": ("argument", 0),
    "savefig": ("argument", 0),
    "to_csv": ("argument", 0),
    "to_parquet": ("argument", 0),
    "save": ("argument", 1),  # torch.save(obj, path)
    "save_file": ("argument", 1),  # safetensors
    "copyfile": ("argument", 1),
    "copytree": ("argument", 1),
    "run_merge": ("argument", 1),
    "snapshot_download": ("keyword", "local_dir"),
}
STAGING = {"atomic_dir", "atomic_file", "TemporaryDirectory"}  # context managers whose `as` name is safe to fill
# Functions that write into a folder staged elsewhere, each with where it is staged.
STAGED_BY_CALLER = {
    "onmerge/toyworld/models.py::_write_losses": "build_base and build_sft pass their atomic_dir staging folder",
}


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _destination(call: ast.Call) -> ast.AST | None:
    kind, where = WRITERS[_name(call.func)]
    if kind == "receiver":
        return call.func.value if isinstance(call.func, ast.Attribute) else None
    if kind == "argument":
        return call.args[where] if len(call.args) > where else None  # `to_csv()` returns text: not a write
    return next((keyword.value for keyword in call.keywords if keyword.arg == where), None)


def _unstaged_writes(module: Path, root: Path) -> list[str]:
    """`path::function:line` of each write whose destination names no staging folder of an enclosing `with`."""
    found = []

    def visit(node: ast.AST, function: str, staged: frozenset[str]) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function, staged = node.name, frozenset()
        if isinstance(node, ast.With):
            staged |= {
                item.optional_vars.id
                for item in node.items
                if isinstance(item.context_expr, ast.Call)
                and _name(item.context_expr.func) in STAGING
                and isinstance(item.optional_vars, ast.Name)
            }
        if isinstance(node, ast.Call) and _name(node.func) in WRITERS:
            destination = _destination(node)
            names = (
                {child.id for child in ast.walk(destination) if isinstance(child, ast.Name)} if destination else set()
            )
            where = f"{module.relative_to(root)}::{function}"
            if destination is not None and not names & staged and where not in STAGED_BY_CALLER:
                found.append(f"{where}:{node.lineno}")
        if isinstance(node, ast.Call) and _name(node.func) == "open":
            mode = (
                node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
            )
            if isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax"):
                found.append(f"{module.relative_to(root)}::{function}:{node.lineno} (open for writing)")
        for child in ast.iter_child_nodes(node):
            visit(child, function, staged)

    visit(ast.parse(module.read_text()), "<module>", frozenset())
    return found


def test_every_results_writer_goes_through_a_staging_folder_or_file():
    """A file the package writes is either built inside atomic_dir/atomic_file (or a scratch TemporaryDirectory) and
    moved into place whole, or written by a function whose caller staged the folder: so a killed step never leaves a
    partial result that a later rule or a table could read."""
    root = Path(onmerge.__file__).parents[1]
    unstaged = [
        write for module in sorted(root.joinpath("onmerge").rglob("*.py")) for write in _unstaged_writes(module, root)
    ]
    assert unstaged == []


# A writer killed with SIGKILL inside the staging block: what it leaves, and what the next write of the same output
# removes. The child prints its staging path, then waits to be killed.
_KILLED_WRITER = """\
import sys, time
from pathlib import Path
from onmerge.atomic import atomic_dir, atomic_file
kind, out = sys.argv[1], Path(sys.argv[2])
with (atomic_dir if kind == "dir" else atomic_file)(out) as staging:
    if kind == "dir":
        (staging / "weights.bin").write_bytes(b"half")
    else:
        staging.write_text("half")
    print(staging, flush=True)
    time.sleep(60)
"""


def _writer(kind: str, out: Path) -> tuple[subprocess.Popen, Path]:
    child = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, kind, str(out)], stdout=subprocess.PIPE, text=True)
    return child, Path(child.stdout.readline().strip())


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_the_next_write_removes_what_a_killed_writer_left(tmp_path, kind):
    out = tmp_path / ("model" if kind == "dir" else "metrics.json")
    child, staging = _writer(kind, out)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert staging.exists() and staging.name.startswith(f".{out.name}.partial-"), "the kill left its staging"
    if kind == "dir":
        with atomic_dir(out) as fresh:
            (fresh / "weights.bin").write_bytes(b"whole")
    else:
        write_text(out, "whole")
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_a_running_writer_of_the_same_file_keeps_its_staging(tmp_path):
    """Files may have concurrent writers (a shared judge cache): only a dead writer's staging is removed."""
    out = tmp_path / "judgment.json"
    child, staging = _writer("file", out)
    try:
        write_text(out, "mine")
        assert staging.is_file(), "a live writer's staging file was removed"
    finally:
        child.kill()
        child.wait()
    write_text(out, "again")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["judgment.json"]


def test_a_folder_write_removes_staging_left_by_any_earlier_writer(tmp_path):
    """One writer per folder: staging from another host, or named by an older version, is removed too."""
    out = tmp_path / "model"
    left = [f".model.partial-{'0' * 32}", ".model.partial-node17.1234.abcdef", ".model.replaced-node17.99.abc"]
    for name in left:
        (tmp_path / name).mkdir()
        (tmp_path / name / "shard.safetensors").write_bytes(b"x")
    (tmp_path / ".other.partial-node17.1.a").mkdir()  # another output's staging is not ours to remove
    with atomic_dir(out) as staging:
        (staging / "config.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.partial-node17.1.a", "model"]
