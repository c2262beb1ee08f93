"""The package's import structure: no cycles among module-level imports, and the modules Snakemake imports while it
parses the workflow stay light (no torch, transformers or pandas at import), so `snakemake -n` answers quickly.

Imports inside functions are the package's way to defer heavy libraries and are left out of the graph: they run
when called, after every module has loaded.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "onmerge"
WORKFLOW = PACKAGE.parents[1] / "workflow"
HEAVY = ("torch", "transformers", "trl", "peft", "pandas", "matplotlib", "lm_eval", "mergekit")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imported_at_load(path: Path, module: str, known: set[str]) -> set[str]:
    """The package's modules that `module` imports when it loads: top-level import statements (and those nested in
    top-level if/try blocks), not those inside functions or under `if TYPE_CHECKING`."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                    )
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)

    visit(ast.parse(path.read_text()).body)
    return {name for name in found if name in known and name != module}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {module: _imported_at_load(path, module, set(modules)) for module, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_the_packages_imports():
    graph = _graph()
    assert "onmerge.grid" in graph["onmerge.config"], "config imports grid at load"
    assert "onmerge.hyperparameters" in graph["onmerge.grid"]
    assert len(graph) > 40


def test_no_module_level_import_cycles():
    assert _cycles(_graph()) == []


def _parse_time_modules() -> list[str]:
    """What the workflow's .smk files and the Snakefile import from the package while Snakemake parses them."""
    sources = [WORKFLOW.parent / "Snakefile", *sorted((WORKFLOW / "rules").glob("*.smk"))]
    found: set[str] = set()
    for source in sources:
        for line in source.read_text().splitlines():
            match = re.match(r"\s*from (onmerge[\w.]*) import ([\w, ]+)", line)
            if match:
                found.add(match.group(1))
                found.update(f"{match.group(1)}.{name.strip()}" for name in match.group(2).split(","))
    return sorted(name for name in found if name in _modules())


def test_snakemake_imports_part_of_the_package_at_parse_time():
    assert {"onmerge.grid", "onmerge.config"} <= set(_parse_time_modules())


@pytest.mark.parametrize("module", _parse_time_modules())
def test_what_snakemake_imports_at_parse_time_is_light(module):
    script = f"import sys, {module}; print(' '.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == [], f"importing {module} loads {loaded}"
