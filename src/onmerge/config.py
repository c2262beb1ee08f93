"""The run configuration outside Snakemake: the same YAML, validated against the same JSON schema, before any work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

DEFAULT_CONFIG = Path("workflow/config/config.yaml")


def load_config(path: Path, schema: Path | None = None) -> dict[str, Any]:
    """Read `path` and validate it; a bad file raises ValueError naming the file, the key and what is wrong.

    The schema defaults to the workflow's own (`<config>/../../schemas/config.schema.yaml` beside the Snakefile).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    schema = Path(schema) if schema else path.resolve().parent.parent / "schemas" / "config.schema.yaml"
    config = yaml.safe_load(path.read_text()) or {}
    try:
        jsonschema.validate(config, yaml.safe_load(schema.read_text()))
    except jsonschema.ValidationError as error:
        where = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        raise ValueError(f"{path}: {where}: {error.message}") from None
    return config
