"""Run configuration and experiment presets: YAML validated against the workflow's JSON schemas, before any work.

Snakemake validates the run configuration itself; `load_preset` is shared by the workflow and the command line, so
a bad preset fails the same way in both, naming the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / "workflow"
DEFAULT_CONFIG = WORKFLOW / "config" / "config.yaml"
PRESETS = WORKFLOW / "config" / "presets"
SCHEMAS = WORKFLOW / "schemas"


def load_config(path: Path, schema: Path | None = None) -> dict[str, Any]:
    """Read `path` and validate it against `schema` (default: the run configuration's); ValueError names the key."""
    return _load_validated(Path(path), Path(schema) if schema else SCHEMAS / "config.schema.yaml")


def preset_path(preset: str, presets_dir: Path = PRESETS) -> Path:
    """A preset by name (`toy`, `smoke`, `qwen1.5-7b`, ...) or by the path of a YAML file."""
    if preset.endswith((".yaml", ".yml")):
        return Path(preset)
    path = Path(presets_dir) / f"{preset}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in Path(presets_dir).glob("*.yaml")))
        raise ValueError(f"preset {preset!r}: no {path} (presets: {known}; or give the path of a YAML file)")
    return path


def load_preset(preset: str, presets_dir: Path = PRESETS) -> dict[str, Any]:
    """The preset, validated by the schema and by `onmerge.grid.check_preset` (names that refer to each other)."""
    from onmerge.grid import check_preset
    from onmerge.toyworld.backbones import BACKBONES

    path = preset_path(preset, presets_dir)
    loaded = _load_validated(path, SCHEMAS / "preset.schema.yaml")
    try:
        check_preset(loaded, frozenset(BACKBONES))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return loaded


def _load_validated(path: Path, schema: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    loaded = yaml.safe_load(path.read_text()) or {}
    try:
        jsonschema.validate(loaded, yaml.safe_load(schema.read_text()))
    except jsonschema.ValidationError as error:
        where = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        raise ValueError(f"{path}: {where}: {error.message}") from None
    return loaded
