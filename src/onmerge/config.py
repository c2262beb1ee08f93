"""Run configuration and experiment presets: YAML read strictly and validated against the workflow's JSON schemas,
before any work.

Snakemake reads and validates the run configuration itself, and `check_config_files` adds what its reader lets
through; `load_preset` is shared by the workflow and the command line, so a bad preset fails the same way in both,
naming the file and the key.

The presets and schemas are package data, found through importlib.resources, so an installed wheel has them too. In
a checkout, src/onmerge/presets and src/onmerge/schemas link to workflow/config/presets and workflow/schemas: one
copy, which `PRESETS` and `SCHEMAS` name by its real path, as the workflow's rules do.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from onmerge import hyperparameters, methods
from onmerge.grid import NAME_PATTERN, check_preset

# pip installs a package as a folder, so its resources are files: Snakemake and error messages can name them.
PRESETS = Path(str(resources.files("onmerge") / "presets")).resolve()
SCHEMAS = Path(str(resources.files("onmerge") / "schemas")).resolve()


def preset_path(preset: str) -> Path:
    """A preset by name (`toy`, `smoke`, `qwen1.5-7b`, ...) or by the path of a YAML file."""
    if preset.endswith((".yaml", ".yml")):
        return Path(preset)
    path = PRESETS / f"{preset}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
        raise ValueError(f"preset {preset!r}: no {path} (presets: {known}; or give the path of a YAML file)")
    return path


def load_preset(preset: str) -> dict[str, Any]:
    """The preset, validated by the schema and by `onmerge.grid.check_preset` (names that refer to each other)."""
    path = preset_path(preset)
    loaded = load_validated(path, preset_schema())
    try:
        check_preset(loaded)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return loaded


def check_config_files(paths: Iterable[str | Path]) -> None:
    """The run configuration files Snakemake read, read again strictly: its reader keeps the last of a key given
    twice and lets NaN and infinities through (they pass every schema bound). ValueError names the file and key."""
    for path in paths:
        read_yaml(Path(path))


def read_yaml(path: Path) -> Any:
    """A YAML file's content, refused with a ValueError naming the file and where when it is not UTF-8, does not
    parse, gives a key twice in one mapping (PyYAML would keep the last silently), or holds NaN or an infinity
    anywhere (a schema cannot refuse them: NaN compares false to every bound)."""
    try:
        loaded = _strict_yaml(_utf8(path.read_bytes()))
        _refuse_non_finite(loaded, ())
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return loaded


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(f"not UTF-8 text (byte 0x{data[error.start]:02x} on line {line})") from None


def _strict_yaml(text: str) -> Any:
    """yaml.safe_load, refusing duplicate keys, which only the node graph still shows."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_duplicate_keys(node, (), frozenset())
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = ", ".join(part for part in (error.context, error.problem) if part)
        raise ValueError(f"not valid YAML{where}: {what}") from None
    except yaml.YAMLError as error:  # e.g. a character YAML does not allow, with its position in the message
        raise ValueError(f"not valid YAML: {error}") from None
    finally:
        loader.dispose()


def _refuse_duplicate_keys(node: yaml.Node, where: tuple, ancestors: frozenset[int]) -> None:
    """Walk the node graph with each node's key path; an alias inside its own anchor would make the walk (and the
    schema's) endless, so it is refused too. Merge keys (`<<`) may be overridden, as YAML allows."""
    if id(node) in ancestors:
        raise ValueError(f"{_dotted(where)}: a YAML alias that contains itself")
    ancestors |= {id(node)}
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_duplicate_keys(item, (*where, index), ancestors)
    if not isinstance(node, yaml.MappingNode):
        return
    lines: dict[tuple[str, str], int] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if key is not None and key_node.tag != "tag:yaml.org,2002:merge":
            line, seen = key_node.start_mark.line + 1, (key_node.tag, key)  # the tag: 1 and "1" are two keys
            if seen in lines:
                raise ValueError(f"{_dotted((*where, key))}: the key is given twice (lines {lines[seen]} and {line})")
            lines[seen] = line
        _refuse_duplicate_keys(value_node, (*where, key), ancestors)


def _refuse_non_finite(value: Any, where: tuple) -> None:
    """NaN or an infinity anywhere (`.nan`, `.inf`, a literal too large such as 1.0e+999), named by its key path."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{_dotted(where)}: {value} is not a finite number (NaN and infinities are refused)")
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        _refuse_non_finite(child, (*where, key))


def _dotted(where: tuple) -> str:
    return ".".join(str(part) for part in where) or "(top level)"


def preset_schema() -> dict[str, Any]:
    """The preset schema (`SCHEMAS/preset.schema.yaml`) with each method hyper-parameter's range filled in from its
    registry entry (`onmerge.hyperparameters`): the keys a method row may set and the values a search may try. A
    hyper-parameter is one registry entry, and no copy of its range can drift from the optimizers' own check."""
    schema = yaml.safe_load((SCHEMAS / "preset.schema.yaml").read_text())
    taken = {param for method in methods.registered() for param in method.params}
    params = {entry.name: entry.schema() for entry in hyperparameters.registered() if entry.name in taken}
    definitions = schema["$defs"]
    definitions["method_params"] = params
    definitions["sweep"]["properties"] = {
        name: {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"$ref": f"#/$defs/method_params/{name}"}}
        for name in params
    }
    row = schema["properties"]["methods"]["additionalProperties"]["properties"]
    row |= {name: {"$ref": f"#/$defs/method_params/{name}"} for name in params}
    return schema


def load_validated(path: Path, schema: Mapping[str, Any]) -> dict[str, Any]:
    """A YAML file read strictly (`read_yaml`) and validated against a JSON schema; ValueError names the file and
    the key."""
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    loaded = read_yaml(path) or {}
    try:
        jsonschema.validate(loaded, schema)
    except jsonschema.ValidationError as error:
        raise ValueError(f"{path}: {_dotted(tuple(error.absolute_path))}: {_explained(error)}") from None
    return loaded


def _explained(error: jsonschema.ValidationError) -> str:
    """jsonschema's message, with what a reader needs where it is cryptic: the rule for names, why YAML 1.1 reads a
    number such as 1e-5 as text, and the description of a key the schema refuses outright (`not: {}`: a key of
    the other kind of preset)."""
    if error.validator == "not" and error.validator_value == {} and "description" in error.schema:
        return error.schema["description"]
    if error.validator == "pattern" and error.validator_value == NAME_PATTERN:
        return f"{error.instance!r} is not a name: letters, digits, '.', '_', '-', starting with a letter or digit"
    if error.validator == "maxProperties" and list(error.absolute_path)[-1:] == ["vary"]:
        return f"{error.message}: a study varies one hyper-parameter (its figure's x axis)"
    if error.validator == "type" and isinstance(error.instance, str) and _EXPONENT_AS_TEXT.fullmatch(error.instance):
        return f"{error.message} (YAML 1.1 reads it as text: write a decimal point and a signed exponent, as 1.0e-5)"
    return error.message


# What YAML 1.1 (PyYAML) reads as a string though it looks like a number: an exponent without a decimal point in
# the mantissa or without a sign.
_EXPONENT_AS_TEXT = re.compile(r"[-+]?[0-9._]+[eE][-+]?[0-9]+")
