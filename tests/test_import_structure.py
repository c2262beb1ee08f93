"""The package's import structure: no cycles among module-level imports, the modules Snakemake imports while it
parses the workflow stay light (no torch, transformers or pandas at import), so `snakemake -n` answers quickly,
only the worlds' adapters know which world a preset runs in, and no module uses another's private names.

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


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {_module_name(path, package): path for path in sorted(package.rglob("*.py"))}


def _absolute(node: ast.ImportFrom, path: Path, module: str) -> str:
    """The module an `from ... import` statement imports from, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if not node.level:
        return node.module or ""
    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def _imported_at_load(path: Path, module: str, known: set[str]) -> set[str]:
    """The package's modules that `module` imports when it loads: top-level import statements (and those nested in
    top-level if/try blocks), not those inside functions or under `if TYPE_CHECKING`."""
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, path, module)
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
    sources = [WORKFLOW.parent / "Snakefile", *sorted((WORKFLOW / "rules").rglob("*.smk"))]
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


def test_the_tables_job_loads_no_model_library():
    """`onmerge tables` reads results.csv and the training logs: pandas, but no torch (seconds of import a job)."""
    modules = "onmerge.tables.build, onmerge.tables.render, onmerge.tables.regime"
    script = f"import sys, {modules}; print(' '.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == ["pandas"]


# The modules that may know which world a preset runs in: the adapters (onmerge.worlds), the toy world's own code and
# the paper world's commands (its adapter's `commands`).
WORLD_ADAPTERS = ("onmerge.worlds", "onmerge.toyworld", "onmerge.paper_cli")
WORLD_KEYS = ("world", "kind")  # the preset keys that say which world it is
TOY_BACKBONE_KEYS = ("mirrors", "builds")  # a toy backbone's keys: what it mirrors of the paper's, what it rebuilds


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def _world_knowledge(package: Path) -> list[str]:
    """Where a module outside the adapters tells the worlds apart itself: a test `"world" in ...` (or "kind"), a
    preset's `["world"]`/`["kind"]` (or `.get` of them) read, a toy backbone's `mirrors`/`builds` read (by any name:
    a backbone's settings have none of their own), or an import, even deferred, of the toy world (`onmerge.toyworld`)
    or of a world's metric names (`PAPER_METRICS`). Each as `module:line: what`."""
    found = []
    for module, path in _modules(package).items():
        if any(_within(module, adapter) for adapter in WORLD_ADAPTERS):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            what = None
            if isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) and node.left.value in WORLD_KEYS:
                if any(isinstance(op, ast.In | ast.NotIn) for op in node.ops):
                    what = f"tests {node.left.value!r} in ..."
            elif isinstance(node, ast.Subscript) and _reads_world_key(node.value, node.slice):
                what = f"reads {ast.unparse(node)}"
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
                if node.args and _reads_world_key(node.func.value, node.args[0]):
                    what = f"reads {ast.unparse(node)}"
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names = (
                    [alias.name for alias in node.names]
                    if isinstance(node, ast.Import)
                    else [f"{_absolute(node, path, module)}.{alias.name}" for alias in node.names]
                )
                imported = [
                    name for name in names if _within(name, "onmerge.toyworld") or name.endswith(".PAPER_METRICS")
                ]
                what = f"imports {', '.join(imported)}" if imported else None
            if what:
                found.append(f"{module}:{node.lineno}: {what}")
    return found


def _reads_world_key(container: ast.expr, key: ast.expr) -> bool:
    """`preset["kind"]`, `preset.get("world")`, `anything["mirrors"]`: a key only a world's adapter may read."""
    if not isinstance(key, ast.Constant):
        return False
    return key.value in TOY_BACKBONE_KEYS or (key.value in WORLD_KEYS and _names_a_preset(container))


def _names_a_preset(node: ast.expr) -> bool:
    """`preset`, `PRESET`, `context.preset`, ...: the package's one name for a preset."""
    return ast.unparse(node).lower().rpartition(".")[2] == "preset"


def _module_level_imports(statements: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module loads (also in top-level if/try blocks, not TYPE_CHECKING's)."""
    imports: list[ast.Import | ast.ImportFrom] = []
    for node in statements:
        if isinstance(node, ast.Import | ast.ImportFrom):
            imports.append(node)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            imports += _module_level_imports(node.body) + _module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            imports += _module_level_imports(node.body)
            for handler in node.handlers:
                imports += _module_level_imports(handler.body)
    return imports


def test_only_the_adapters_know_which_world_a_preset_runs_in():
    assert _world_knowledge(PACKAGE) == []


def _planted_package(tmp_path: Path, files: dict[str, str]) -> Path:
    """A package `onmerge` with a `toyworld` subpackage and `files` (path within it -> source), for a check to find
    what was planted in it."""
    package = tmp_path / "onmerge"
    (package / "toyworld").mkdir(parents=True)
    for name, source in {"__init__.py": "", "toyworld/__init__.py": "", **files}.items():
        (package / name).write_text(source)
    return package


def test_the_world_check_finds_planted_world_knowledge(tmp_path):
    tables = (
        "from onmerge.toyworld import world\n"
        "from .toyworld.world import PAPER_METRICS\n"
        "from onmerge import worlds\n"
        "def names(preset, context, record, backbone):\n"
        "    from onmerge.toyworld.judge import judge_points  # deferred: still the toy world's code\n"
        '    toy = "world" in preset\n'
        '    paper = "kind" not in context.preset\n'
        '    mirrors, builds = backbone.get("mirrors"), preset["backbones"]["qwen-s"]["builds"]\n'
        '    return preset["world"], context.preset.get("kind"), record["world"], worlds.of(preset), record["seed"]\n'
    )
    package = _planted_package(
        tmp_path,
        {
            "toyworld/world.py": 'PAPER_METRICS = {}\nTOY = "world" in {}\n',
            "worlds.py": "from onmerge.toyworld.world import PAPER_METRICS\n",
            "tables.py": tables,
        },
    )
    assert sorted(_world_knowledge(package)) == [
        "onmerge.tables:1: imports onmerge.toyworld.world",
        "onmerge.tables:2: imports onmerge.toyworld.world.PAPER_METRICS",
        "onmerge.tables:5: imports onmerge.toyworld.judge.judge_points",
        "onmerge.tables:6: tests 'world' in ...",
        "onmerge.tables:7: tests 'kind' in ...",
        "onmerge.tables:8: reads backbone.get('mirrors')",
        "onmerge.tables:8: reads preset['backbones']['qwen-s']['builds']",
        "onmerge.tables:9: reads context.preset.get('kind')",
        "onmerge.tables:9: reads preset['world']",
    ]


def _private(name: str) -> bool:
    """`_name`, a module's own; dunders such as `__version__` are public."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _package_imports(tree: ast.Module, path: Path, module: str, package: str) -> list[tuple[int, str, str | None]]:
    """Every import of the package's modules and names anywhere in a module, deferred ones too, as (line, what it
    imports, the local name it binds: None for `import a.b`, which binds `a`)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = _absolute(node, path, module)
            if _within(base, package):
                found += [(node.lineno, f"{base}.{alias.name}", alias.asname or alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, alias.asname) for alias in node.names if _within(alias.name, package)]
    return found


def _private_names_used(package: Path) -> list[str]:
    """Where a module reaches into another module of the package for a private name: `from onmerge.x import _y`
    (relative or deferred imports too), or `x._y` / `onmerge.x._y` on an imported module. Each as
    `module:line: what`."""
    modules = _modules(package)
    found = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        bound = {}  # local name -> the package's module it names
        for line, name, local in _package_imports(tree, path, module, package.name):
            if any(_private(part) for part in name.split(".")):
                found.append(f"{module}:{line}: imports {name}")
            if local is not None and name in modules:
                bound[local] = name
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                head, _, rest = ast.unparse(node.value).partition(".")
                owner = ".".join(filter(None, (bound.get(head, head), rest)))
                if owner in modules and owner != module:
                    found.append(f"{module}:{node.lineno}: uses {owner}.{node.attr}")
    return sorted(found)


def test_no_module_uses_another_modules_private_names():
    """What one module shares with others is public (the commands' machinery is `onmerge.commands`), so a private
    name can change with its module alone."""
    assert _private_names_used(PACKAGE) == []


def test_the_private_name_check_finds_planted_uses(tmp_path):
    toy_cli = (
        "from onmerge.cli import _MODEL, __version__\n"
        "from ..cli import _helper\n"
        "import onmerge.cli\n"
        "from onmerge import cli as command_line\n"
        "def run(record):\n"
        "    from onmerge.cli import _helper  # a deferred import too\n"
        "    return onmerge.cli._helper, command_line._MODEL, command_line.__doc__, record._fields\n"
    )
    cli = "__version__ = '1'\n_MODEL = 1\ndef _helper():\n    return _MODEL\n"
    package = _planted_package(tmp_path, {"cli.py": cli, "toyworld/cli.py": toy_cli})
    assert _private_names_used(package) == [
        "onmerge.toyworld.cli:1: imports onmerge.cli._MODEL",
        "onmerge.toyworld.cli:2: imports onmerge.cli._helper",
        "onmerge.toyworld.cli:6: imports onmerge.cli._helper",
        "onmerge.toyworld.cli:7: uses onmerge.cli._MODEL",
        "onmerge.toyworld.cli:7: uses onmerge.cli._helper",
    ]


def test_no_module_imports_the_command_line():
    """`python -m onmerge.cli` runs cli.py as `__main__`, whose commands register in `onmerge.commands`: a module
    importing `onmerge.cli` would register them a second time, and argparse refuses the duplicates."""
    imports = [
        f"{module}:{line}: imports {name}"
        for module, path in _modules().items()
        for line, name, _ in _package_imports(ast.parse(path.read_text()), path, module, "onmerge")
        if _within(name, "onmerge.cli")
    ]
    assert imports == []
