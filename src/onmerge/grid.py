"""The experiment grid: every model a preset's studies need, and the path that names it.

A model's path says what it is, so one table cell is one output and `snakemake <path>` reruns that cell alone.
Under `results/<preset>/`:

    <backbone>/base                                           the pre-trained model
    <backbone>/sft                                            the SFT model: reference and starting point
    <backbone>/<loss>/<method>/<params>/seed~<seed>           an RLHF training cell
    <backbone>/regime~<name>/<loss>/<method>/<params>/seed~<seed>
                                                              one trained with a named regime's trainer settings
    <training cell>/merge/<linear|dare|ties>/<params>         an offline merge of that cell with its SFT model

each holding `model/` and `eval/`. `<params>` lists the method's own hyper-parameters as `key~value` pairs joined by
`_`, always all of them and in its order (`onmerge.methods`; e.g. `beta~0.1_p~0.01_alpha~2e-05_k~1`), so every cell
has one path. Trainer settings every cell shares (epochs, batch size, ...) are not in the path; the workflow passes
them as rule params, so changing one reruns the cells it touches. A study that trains with other settings (the
precision study's small steps in fp32 and pure bf16) names a *regime*, a named set of overrides of the preset's
`training`, and its cells live under `regime~<name>/`, apart from the cells trained with the preset's own settings.

This module imports nothing heavy: Snakemake reads it while it parses the workflow.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from onmerge import hyperparameters, merges, methods, worlds

# A name that becomes a path segment, a wildcard or a file name (the preset's, its backbones', methods' and
# studies'): letters, digits, '.', '_' and '-', starting with a letter or digit, so never '.', '..', a hidden folder or
# an option. `(?!\n)` because Python's `$` also matches before a final newline. The preset schema's $defs/name holds
# the same pattern (tests/test_grid.py keeps the two equal).
NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
NAME_PATTERN = rf"^{NAME}(?!\n)$"
# One segment of a model's path below results/<preset>/: a name, `seed~0`, or hyper-parameters (`beta~0.1_p~0.01`).
# The workflow's wildcards match only these, so no requested path reaches a rule with `..` or shell syntax in it.
PATH_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._~-]*"
LOSSES = ("dpo", "ipo", "kto")
MERGES = tuple(merges.MERGES)
ROLES = ("base", "sft")

MERGE_PARAMS: dict[str, tuple[str, ...]] = {merge.name: merge.params for merge in merges.MERGES.values()}
# Trainer settings that size a training job (its devices, time and memory): one value per preset, not per regime.
PER_PRESET_RESOURCES = frozenset({"gpus", "runtime_minutes", "mem_mb"})

Params = tuple[tuple[str, float | int], ...]


@dataclass(frozen=True)
class Checkpoint:
    """A backbone's pre-trained (`base`) or SFT (`sft`) model."""

    backbone: str
    role: str

    @property
    def path(self) -> str:
        return f"{self.backbone}/{self.role}"


@dataclass(frozen=True)
class TrainCell:
    """One RLHF run: an SFT model trained on the preference data with one method and its hyper-parameters, with the
    preset's trainer settings or, given `regime`, with that regime's."""

    backbone: str
    loss: str
    method: str
    params: Params
    seed: int
    regime: str | None = None

    @property
    def path(self) -> str:
        regime = "" if self.regime is None else f"regime~{self.regime}/"
        return f"{self.backbone}/{regime}{self.loss}/{self.method}/{format_params(self.params)}/seed~{self.seed}"

    @property
    def hyperparameters(self) -> dict[str, float | int]:
        return dict(self.params)


@dataclass(frozen=True)
class MergeCell:
    """An offline merge of a training cell's model with its SFT model (through mergekit)."""

    source: TrainCell
    merge: str
    params: Params

    @property
    def backbone(self) -> str:
        return self.source.backbone

    @property
    def path(self) -> str:
        return f"{self.source.path}/merge/{self.merge}/{format_params(self.params)}"


Model = Checkpoint | TrainCell | MergeCell


def format_value(value: float | int) -> str:
    """Shortest stable spelling: 0.1, 1e-05, 2e-05, 16 (what `float(...)` reads back)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else format(float(value), "g")


def format_params(params: Params) -> str:
    return "_".join(f"{hyperparameters.get(name).path_key}~{format_value(value)}" for name, value in params)


def parse_params(text: str, expected: tuple[str, ...], where: str) -> Params:
    """The inverse of `format_params`, checking the keys are exactly `expected`, in order, and each value as
    `path_value` does."""
    pairs = [part.split("~", 1) for part in text.split("_")]
    names = tuple(hyperparameters.named_by_path_key(key) or key for key, *_ in pairs)
    if names != expected or any(len(pair) != 2 for pair in pairs):
        wanted = "_".join(f"{hyperparameters.get(name).path_key}~<value>" for name in expected)
        raise ValueError(f"{where}: parameters {text!r} should read {wanted}")
    return tuple((name, path_value(name, value, where)) for name, (_, value) in zip(names, pairs, strict=True))


def path_value(name: str, text: str, where: str) -> float | int:
    """A hyper-parameter's value as a hand-written path spells it: a finite number in the range the optimizers and
    trainer accept, written as `format_value` writes it. Another spelling of the same setting (`beta~0.10`) would be
    another cell of identical settings, so it is refused, naming the canonical one."""
    key = hyperparameters.get(name).path_key
    try:
        value = _typed(name, text)
    except ValueError:
        kind = "an integer" if hyperparameters.get(name).bounds.integer else "a number"
        raise ValueError(f"{where}: {key}~{text} is not {kind}") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: {key}~{text} is not a finite number")
    try:
        hyperparameters.check(name, value)
    except ValueError as error:
        raise ValueError(f"{where}: {key}~{text}: {error}") from None
    if text != format_value(value):
        raise ValueError(f"{where}: {key}~{text} is not canonical: the grid writes {key}~{format_value(value)}")
    return value


def parse(path: str) -> Model:
    """The model a path under `results/<preset>/` names (without `/model` or `/eval`); ValueError says what is wrong."""
    parts = path.strip("/").split("/")
    if not re.match(NAME_PATTERN, parts[0]):
        raise ValueError(f"{path!r}: {parts[0]!r} is not a backbone name (letters, digits, '.', '_', '-')")
    if len(parts) == 2 and parts[1] in ROLES:
        return Checkpoint(parts[0], parts[1])
    regime = None
    if len(parts) > 1 and parts[1].startswith("regime~"):
        regime = parts.pop(1).removeprefix("regime~")
        if not re.match(NAME_PATTERN, regime):
            raise ValueError(f"{path!r}: {regime!r} is not a regime name (letters, digits, '.', '_', '-')")
    if len(parts) not in (5, 8) or (len(parts) == 8 and parts[5] != "merge"):
        raise ValueError(f"{path!r} is not a model path (see onmerge.grid)")
    backbone, loss, method, params, seed = parts[:5]
    if loss not in LOSSES:
        raise ValueError(f"{path!r}: unknown loss {loss!r} (one of {', '.join(LOSSES)})")
    try:
        expected = methods.get(method).params
    except ValueError as error:
        raise ValueError(f"{path!r}: {error}") from None
    hyper = parse_params(params, expected, path)
    cell = TrainCell(backbone, loss, method, hyper, _seed(seed, path), regime)
    if len(parts) == 5:
        return cell
    merge = parts[6]
    if merge not in MERGES:
        raise ValueError(f"{path!r}: unknown merge {merge!r} (one of {', '.join(MERGES)})")
    return MergeCell(cell, merge, parse_params(parts[7], MERGE_PARAMS[merge], path))


def _seed(text: str, path: str) -> int:
    """`seed~<integer>` as the grid writes it (no sign, no leading zeros)."""
    if not re.fullmatch(r"seed~[0-9]+", text):
        raise ValueError(f"{path!r}: {text!r} should read seed~<integer>")
    seed = int(text[5:])
    if text != f"seed~{seed}":
        raise ValueError(f"{path!r}: {text} is not canonical: the grid writes seed~{seed}")
    return seed


def check_preset(preset: Mapping[str, Any]) -> None:
    """What the schema cannot check: names that refer to each other (a method row's method among those registered in
    `onmerge.methods`), what the preset's world needs (`onmerge.worlds`: a toy preset's backbones among those it can
    build), every hyper-parameter value against the range its optimizer or trainer accepts (their own check, not a
    copy), a global batch that the cell's processes cannot split, and the trl fields under `training.trainer`
    (`onmerge.trainer_config`).

    ValueError names the key.
    """
    worlds.of(preset).check(preset)
    _check_methods(preset["methods"])
    if preset["offline"]["source"] not in preset["methods"]:
        raise ValueError(f"offline.source: {preset['offline']['source']!r} is not one of the methods")
    for study_name, study in preset["studies"].items():
        where = f"studies.{study_name}"
        for regime in study.get("regimes", ()):
            if regime not in preset.get("regimes", {}):
                raise ValueError(f"{where}.regimes: {regime!r} is not one of the preset's regimes")
        for backbone in study["backbones"]:
            if backbone not in preset["backbones"]:
                raise ValueError(f"{where}.backbones: {backbone!r} is not one of the preset's backbones")
        for method in study["methods"]:
            if method not in preset["methods"]:
                raise ValueError(f"{where}.methods: {method!r} is not one of the preset's methods")
            for param in study.get("vary", {}):
                if param not in methods.get(preset["methods"][method]["method"]).params:
                    raise ValueError(f"{where}.vary.{param}: method {method!r} has no such hyper-parameter")
    for where, name, value in _set_values(preset):
        try:
            hyperparameters.check(name, value)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
    _check_batch("training", preset["training"])
    for regime, overrides in preset.get("regimes", {}).items():
        for key in PER_PRESET_RESOURCES & set(overrides):
            raise ValueError(f"regimes.{regime}.{key}: a job's resources are the preset's (training.{key})")
        _check_batch(f"regimes.{regime}", training_of(preset, regime))
    if preset["training"].get("trainer"):
        from onmerge import trainer_config  # imports trl: only for a preset that passes trainer fields

        trainer_config.check(preset["training"]["trainer"], trainer_config.losses_trained(preset))


def _check_methods(rows: Mapping[str, Any]) -> None:
    """Each method row names a registered method (`onmerge.methods`) and sets, or searches, exactly its
    hyper-parameters (the trainer's may come from `training`)."""
    for name, row in rows.items():
        try:
            params = methods.get(row["method"]).params
        except ValueError as error:
            raise ValueError(f"methods.{name}.method: {error}") from None
        for param in set(row) - {"method", "search", "label"}:
            if param not in params:
                raise ValueError(f"methods.{name}.{param}: {row['method']} has no such hyper-parameter")
        for param in params:
            if param not in row and param not in row.get("search", {}) and param not in methods.TRAINER_PARAMS:
                raise ValueError(f"methods.{name}: {row['method']} needs {param}")
        for param in row.get("search", {}):
            if param not in params:
                raise ValueError(f"methods.{name}.search.{param}: {row['method']} has no such hyper-parameter")


def _set_values(preset: Mapping[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(key, hyper-parameter, value) for every value the preset sets, searches, varies or merges at: each is checked
    against the range its optimizer or trainer accepts (`onmerge.hyperparameters`), before any job."""
    for param in methods.TRAINER_PARAMS:
        yield f"training.{param}", param, preset["training"][param]
    for regime, overrides in preset.get("regimes", {}).items():
        yield from (
            (f"regimes.{regime}.{param}", param, overrides[param])
            for param in methods.TRAINER_PARAMS
            if param in overrides
        )
    for name, row in preset["methods"].items():
        params = methods.get(row["method"]).params
        yield from ((f"methods.{name}.{param}", param, row[param]) for param in params if param in row)
        for param, values in row.get("search", {}).items():
            yield from ((f"methods.{name}.search.{param}.{i}", param, value) for i, value in enumerate(values))
    for name, study in preset["studies"].items():
        for param, values in study.get("vary", {}).items():
            yield from ((f"studies.{name}.vary.{param}.{i}", param, value) for i, value in enumerate(values))
        yield from (
            (f"studies.{name}.interpolate.{i}", "weight", w) for i, w in enumerate(study.get("interpolate", ()))
        )
    offline = preset["offline"]
    yield from ((f"offline.linear.weights.{i}", "weight", w) for i, w in enumerate(offline["linear"]["weights"]))
    for merge, (key, param) in itertools.product(("dare", "ties"), (("densities", "density"), ("weights", "weight"))):
        yield from ((f"offline.{merge}.{key}.{i}", param, value) for i, value in enumerate(offline[merge][key]))


def _check_batch(where: str, training: Mapping[str, Any]) -> None:
    """The global batch must split over the cell's processes (one, or one per GPU under FSDP) as the trainer will."""
    processes = max(1, training.get("gpus", 0))
    try:
        hyperparameters.split_batch(training["batch_size"], training.get("per_device_batch_size"), processes)
    except ValueError as error:
        raise ValueError(f"{where}.batch_size: {error}") from None


def training_of(preset: Mapping[str, Any], regime: str | None) -> dict[str, Any]:
    """The trainer settings of a regime's cells: the preset's `training`, with the regime's overrides."""
    return dict(preset["training"]) | (preset["regimes"][regime] if regime is not None else {})


def method_cells(
    preset: Mapping[str, Any],
    name: str,
    backbone: str,
    loss: str,
    seed: int,
    vary: Mapping | None = None,
    regime: str | None = None,
) -> list[TrainCell]:
    """The training cells of one method row: its setting, each searched value, and `vary`'s values if given; with
    the preset's trainer settings, or a regime's."""
    row = preset["methods"][name]
    method = row["method"]
    params = methods.get(method).params
    training = training_of(preset, regime)
    base = {param: row.get(param, training.get(param)) for param in params}
    sweeps = {**row.get("search", {}), **(vary or {})}
    cells = []
    for values in itertools.product(*sweeps.values()):
        setting = {**base, **dict(zip(sweeps, values, strict=True))}
        typed = tuple((param, _typed(param, setting[param])) for param in params)
        cells.append(TrainCell(backbone, loss, method, typed, seed, regime))
    return cells


def study_regimes(study: Mapping[str, Any]) -> list[str | None]:
    """The regimes a study trains with; None is the preset's own `training`."""
    return list(study.get("regimes", [None]))


def study_models(preset: Mapping[str, Any], study_name: str) -> list[Model]:
    """Every model one study (a table or figure) reads, SFT references included, each once, in a stable order."""
    study = preset["studies"][study_name]
    seeds = study.get("seeds", preset["seeds"])
    models: dict[str, Model] = {}
    for backbone in study["backbones"]:
        models[f"{backbone}/sft"] = Checkpoint(backbone, "sft")
        combinations = itertools.product(study_regimes(study), study.get("losses", ["dpo"]), study["methods"], seeds)
        for regime, loss, method, seed in combinations:
            for cell in method_cells(preset, method, backbone, loss, seed, study.get("vary"), regime):
                models.setdefault(cell.path, cell)
                for merge in _interpolations(cell, study.get("interpolate", ())):
                    models.setdefault(merge.path, merge)
        if study.get("offline"):
            for loss, seed in itertools.product(study.get("losses", ["dpo"]), seeds):
                for cell in method_cells(preset, preset["offline"]["source"], backbone, loss, seed):
                    models.setdefault(cell.path, cell)
                    for merge in offline_merges(preset["offline"], cell):
                        models.setdefault(merge.path, merge)
    return list(models.values())


def all_models(preset: Mapping[str, Any]) -> list[Model]:
    """The union of every study's models: what a full run of the preset evaluates."""
    models: dict[str, Model] = {}
    for study in preset["studies"]:
        for model in study_models(preset, study):
            models.setdefault(model.path, model)
    return list(models.values())


def seed_replicates(preset: Mapping[str, Any], cell: TrainCell) -> tuple[TrainCell, ...]:
    """The cell at every seed that some study of the preset plans for its setting, in seed order: a row of a table
    shows the mean over all of them, and a verdict resamples them."""
    seeds = {cell.seed} | {
        model.seed
        for model in all_models(preset)
        if isinstance(model, TrainCell) and dataclasses.replace(model, seed=cell.seed) == cell
    }
    return tuple(dataclasses.replace(cell, seed=seed) for seed in sorted(seeds))


def offline_merges(offline: Mapping[str, Any], cell: TrainCell) -> Iterator[MergeCell]:
    yield from _interpolations(cell, offline["linear"]["weights"])
    for merge in ("dare", "ties"):
        for density, weight in itertools.product(offline[merge]["densities"], offline[merge]["weights"]):
            yield MergeCell(cell, merge, (("density", float(density)), ("weight", float(weight))))


def _interpolations(cell: TrainCell, weights) -> Iterator[MergeCell]:
    for weight in weights:
        yield MergeCell(cell, "linear", (("weight", float(weight)),))


def _typed(param: str, value: float | int | str) -> float | int:
    return int(value) if hyperparameters.get(param).bounds.integer else float(value)


def training_settings(preset: Mapping[str, Any], cell: TrainCell) -> dict[str, dict[str, Any]]:
    """Everything a training job needs besides its inputs: trainer settings and the optimizer's (plain JSON).

    These are the training rule's params, so a change to any of them reruns exactly the cells it concerns.
    """
    shared = training_of(preset, cell.regime)
    hyper = cell.hyperparameters
    training = {
        "loss": cell.loss,
        "beta": hyper["beta"],
        "learning_rate": hyper.get("learning_rate", shared["learning_rate"]),
        "epochs": shared["epochs"],
        "batch_size": shared["batch_size"],
        "per_device_batch_size": shared.get("per_device_batch_size"),
        "warmup_steps": shared["warmup_steps"],
        "max_length": shared["max_length"],
        "weight_decay": shared.get("weight_decay", 0.0),
        "bf16": shared.get("bf16", False),
        "seed": cell.seed,
        "trainer": shared.get("trainer", {}),  # trl config fields, passed on unchanged (onmerge.trainer_config)
    }
    method = methods.get(cell.method)
    optimizer = {"name": method.optimizer} | {param: hyper[param] for param in method.optimizer_params}
    if method.published_semantics:
        optimizer["published_semantics"] = True
    return {"training": training, "optimizer": optimizer}


def describe(model: Model) -> dict[str, Any]:
    """A model's identity as flat columns for the results table (empty where a field does not apply)."""
    if isinstance(model, Checkpoint):
        return {"backbone": model.backbone, "model": model.role}
    cell = model.source if isinstance(model, MergeCell) else model
    row = {"backbone": cell.backbone, "model": "trained", "loss": cell.loss, "method": cell.method, "seed": cell.seed}
    if cell.regime is not None:
        row["regime"] = cell.regime
    row |= cell.hyperparameters
    if isinstance(model, MergeCell):
        row |= {"model": "merged", "merge": model.merge} | {f"merge_{k}": v for k, v in model.params}
    return row
