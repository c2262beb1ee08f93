"""The two worlds a preset runs in, one adapter each behind one interface, chosen by the preset's `kind:`.

- `toy`: the offline toy world (`onmerge.toyworld`), which the pipeline builds: tiny backbones, their preference
  data, 14 benchmark analogues and a programmatic judge.
- `paper`: the paper's setting: models and UltraFeedback fetched, the 14 columns through lm-eval, MT-Bench and
  AlpacaEval 2.0 through an OpenAI-compatible judge.

Both produce the same artefacts (models, preference files, metrics keyed by the paper's column names once
aggregated, judged files `{"metrics", "provenance", "judgments"}`); an adapter holds what differs: its metric names,
its judged files, its workflow rules and the resources of its jobs. The grid, the tables, the aggregation, the
command line and the workflow ask `of(preset)` instead of testing the preset for its world, as
tests/test_import_structure.py checks.

Snakemake imports this module while it parses the workflow, so it imports nothing heavy: the metric maps are named
by dotted path and imported when asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from onmerge.toyworld.backbones import BACKBONES

if TYPE_CHECKING:
    from onmerge.paired import Measure


def _imported(dotted: str) -> Any:
    """`module:attribute`, imported."""
    module, _, attribute = dotted.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class Judged:
    """A judged benchmark: its file `<name>.json` in an eval folder, the paper's column it gives, and how its
    per-prompt judgments become a paired measure (`onmerge.paired.Measure`) for the verdicts' intervals."""

    name: str
    metric: str  # onmerge.aggregate.JUDGED
    measure_from: str  # `module:function` taking the file's `judgments` list

    def measure(self, judgments: Sequence[Mapping[str, Any]]) -> Measure:
        """The paired measure of one model's judgments."""
        return _imported(self.measure_from)(judgments)


@dataclass(frozen=True)
class World:
    """What differs between the worlds; one registered instance per preset `kind`."""

    kind: str  # the preset's `kind:`
    # Whose metric names its evaluation files use: the `--world` that the aggregate, tables and verdicts rules pass
    # (a rule param, so spelled as it always was) and that `onmerge failures` takes.
    metric_names: str
    paper_metrics_from: str  # `module:attribute` of its metric names -> the paper's columns (onmerge.aggregate)
    judged: tuple[Judged, ...]  # the judged benchmarks an eval folder may hold
    rules: str  # the workflow file with its rules, relative to the Snakefile
    training_threads: int  # torch threads of a training job (the toy's tiny models run fastest on one)
    judge_components: bool  # its judge scores content, language and manner apart (the `judge` table)
    # Its numbers are comparable with the published ones: the tables print the paper's value and the difference under
    # each of ours. The toy world's are not: its tables show the published one apart, for shape only.
    published_beside_ours: bool
    commands: str | None = None  # the module whose import registers its `onmerge` commands outside onmerge.cli

    def paper_metrics(self) -> dict[str, str]:
        """Its evaluations' metric names -> the paper's columns (`onmerge.aggregate.PAPER_COLUMNS`, `JUDGED`)."""
        return _imported(self.paper_metrics_from)

    def judged_files(self, preset: Mapping[str, Any]) -> list[str]:
        """The judged files a finished evaluation of one of the preset's models leaves beside `metrics.json`."""
        return [f"{judged.name}.json" for judged in self.judged]

    def builds(self, preset: Mapping[str, Any], backbone: str) -> str:
        """The backbone whose models a preset's backbone builds or fetches: two that build the same one are two
        worlds of it (the verdicts compare their effects)."""
        return backbone

    def published_backbone(self, preset: Mapping[str, Any], backbone: str) -> str:
        """The paper's name for a backbone (`backbone` in results/paper/*.csv), whose published numbers it faces."""
        return backbone

    def backbone_title(self, preset: Mapping[str, Any], backbone: str) -> str:
        """A backbone as tables and figures name it."""
        return backbone

    def checkpoint_seed(self, preset: Mapping[str, Any], backbone: str) -> int | None:
        """The seed a backbone's base and SFT models are built from; None where they are fetched."""
        return None

    def check(self, preset: Mapping[str, Any]) -> None:
        """What this kind's presets need beyond the schema's rules; ValueError names the key."""

    def register_commands(self) -> None:
        """Import the module whose `onmerge` commands are this world's own (the toy world's `toy ...`, the paper's
        `fetch-model`, `evaluate lm-eval`, ...), if any."""
        if self.commands is not None:
            importlib.import_module(self.commands)


@dataclass(frozen=True)
class ToyWorld(World):
    """The toy world: its backbones are built from seeds, and only those of `onmerge.toyworld.backbones`."""

    def checkpoint_seed(self, preset: Mapping[str, Any], backbone: str) -> int:
        """Its own `seed`, or the world's: another seed rebuilds the same backbone as a second world would (what a
        CPU of another kind also does: its floats differ)."""
        return preset["backbones"][backbone].get("seed", preset["world"]["seed"])

    def builds(self, preset: Mapping[str, Any], backbone: str) -> str:
        """The toy backbone (`onmerge.toyworld.backbones`) it builds: its `builds`, or its own name."""
        return preset["backbones"][backbone].get("builds", backbone)

    def published_backbone(self, preset: Mapping[str, Any], backbone: str) -> str:
        """The paper's backbone it `mirrors` (`Qwen1.5-7B` -> `qwen1.5-7b`, `Meta-Llama-3-8B` -> `llama-3-8b`)."""
        mirrors = preset["backbones"][backbone].get("mirrors")
        return mirrors.lower().removeprefix("meta-") if mirrors else backbone

    def backbone_title(self, preset: Mapping[str, Any], backbone: str) -> str:
        """Its name, and which of the paper's backbones it mirrors."""
        mirrors = preset["backbones"][backbone].get("mirrors")
        return f"{backbone} (toy, mirrors {mirrors})" if mirrors else backbone

    def check(self, preset: Mapping[str, Any]) -> None:
        """Every backbone builds one of the toy backbones (`onmerge.toyworld.backbones`)."""
        for name, backbone in preset["backbones"].items():
            if self.builds(preset, name) not in BACKBONES:
                where = f"backbones.{name}" + (".builds" if "builds" in backbone else "")
                raise ValueError(f"{where}: a toy world builds only {', '.join(sorted(BACKBONES))}")


@dataclass(frozen=True)
class PaperWorld(World):
    """The paper's setting: a preset configures which judges run."""

    def judged_files(self, preset: Mapping[str, Any]) -> list[str]:
        """One per judge the preset configures."""
        return [f"{name}.json" for name in preset.get("judges", {})]


_REGISTRY: dict[str, World] = {}


def register(world: World) -> World:
    """Add `world`; ValueError if its kind or its metric names are taken."""
    for taken in _REGISTRY.values():
        if world.kind == taken.kind or world.metric_names == taken.metric_names:
            raise ValueError(f"world {world.kind!r}: its kind or metric names are {taken.kind!r}'s")
    _REGISTRY[world.kind] = world
    return world


def get(kind: str) -> World:
    """The world of a preset `kind`; ValueError naming the known kinds if there is none."""
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r} (one of {', '.join(_REGISTRY)})") from None


def of(preset: Mapping[str, Any]) -> World:
    """The world a preset runs in, by its `kind:` (the schema requires one)."""
    if "kind" not in preset:
        raise ValueError(f"kind: a preset says which world it runs in (one of {', '.join(_REGISTRY)})")
    return get(preset["kind"])


def writing(metric_names: str) -> World:
    """The world whose evaluation files use `metric_names` (a `--world` argument)."""
    for world in _REGISTRY.values():
        if world.metric_names == metric_names:
            return world
    raise ValueError(f"no world writes {metric_names!r} metric names (one of {', '.join(metric_name_choices())})")


def metric_name_choices() -> tuple[str, ...]:
    """Every world's metric names: the choices of `--world`."""
    return tuple(world.metric_names for world in _REGISTRY.values())


def registered() -> tuple[World, ...]:
    """Every world, in registration order."""
    return tuple(_REGISTRY.values())


register(
    ToyWorld(
        kind="toy",
        metric_names="toy",
        paper_metrics_from="onmerge.toyworld.world:PAPER_METRICS",
        # The toy MT-Bench is a task of its lm-eval run (metrics.json, items.json.gz), not a judged file.
        judged=(Judged("alpacaeval", "alpacaeval2_lc", "onmerge.toyworld.judge:win_rate_measure"),),
        rules="workflow/rules/worlds/toy.smk",
        training_threads=1,
        judge_components=True,
        published_beside_ours=False,
        commands="onmerge.toyworld.cli",
    )
)
register(
    PaperWorld(
        kind="paper",
        metric_names="lm-eval",
        paper_metrics_from="onmerge.lm_evaluation:PAPER_METRICS",
        judged=(
            Judged("mt_bench", "mt_bench", "onmerge.judges.mt_bench:question_measure"),
            Judged("alpacaeval", "alpacaeval2_lc", "onmerge.judges.alpacaeval:preference_measure"),
        ),
        rules="workflow/rules/worlds/paper.smk",
        training_threads=8,
        judge_components=False,
        published_beside_ours=True,
        commands="onmerge.paper_cli",
    )
)
