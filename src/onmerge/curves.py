"""Training curves: per study, the reward margin and the loss against the step, one line per method setting, from
the training logs its cells wrote (`onmerge.training.write_training_log`).

A study's rows and seeds are the tables' (`onmerge.tables.rows.row_candidates`): a line is the mean over the seeds
the preset plans for its setting, with each seed drawn thin behind it. A method that sweeps or searches a setting has
a line per value, in shades of its colour. A cell without a training log is left out and named under the figure.

Snakemake imports this module while it parses the workflow (`curve_names`, `training_logs`): matplotlib is imported
where a figure is drawn, as in `onmerge.figures`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onmerge import hyperparameters, methods
from onmerge.figures import FIGSIZE_WIDTH, footer, legend_entries, missing_note, save_png
from onmerge.grid import TrainCell, study_regimes
from onmerge.tables.labels import LABELS, backbone_title, regime_title, row_label
from onmerge.tables.rows import Candidate, row_candidates

if TYPE_CHECKING:
    from matplotlib.axes import Axes

LOG = "training_log.json"  # beside a training cell's model folder
PREFIX = "curves_"
# (trl's metric, axis label): the two panels of each row
PANELS = (("rewards/margins", "reward margin (chosen - rejected)"), ("loss", "training loss"))
# The colour of a row that is not named after its method (KL is AdamW at a searched beta); the others take their
# method's (`onmerge.methods.Style`).
ROW_COLORS = {"kl": "tab:cyan"}
PANEL_HEIGHT = 3.2


def curve_names(preset: Mapping[str, Any]) -> list[str]:
    """One figure per study, `curves_<study>`."""
    return [f"{PREFIX}{study}" for study in preset["studies"]]


def training_logs(preset: Mapping[str, Any], root: Path | str) -> list[str]:
    """Every training log the curve figures read, under `root` (results/<preset>), each once."""
    paths = {
        f"{root}/{cell.path}/{LOG}": None
        for study in preset["studies"]
        for _, _, curves in study_curves(preset, study)
        for curve in curves
        for cell in curve.cells
    }
    return list(paths)


@dataclass(frozen=True)
class Curve:
    """A method at one setting: its cells (one per seed), and its place among the method's settings (0 = first)."""

    row: str
    label: str
    cells: Candidate
    shade: int
    shades: int


def study_curves(preset: Mapping[str, Any], study_name: str) -> list[tuple[str, str, list[Curve]]]:
    """(panel title, loss, its curves) for each backbone, regime and loss the study trains, in the study's order."""
    study = preset["studies"][study_name]
    panels = []
    for backbone, regime in itertools.product(study["backbones"], study_regimes(study)):
        title = backbone_title(preset, backbone) + ("" if regime is None else f", {regime_title(preset, regime)}")
        for loss in study.get("losses", ["dpo"]):
            curves = []
            for row in study["methods"]:
                candidates = row_candidates(preset, study, backbone, loss, row, regime)
                curves += [
                    Curve(row, _label(preset, row, candidate, candidates), candidate, i, len(candidates))
                    for i, candidate in enumerate(candidates)
                ]
            panels.append((title, loss, curves))
    return panels


def _label(preset: Mapping[str, Any], row: str, candidate: Candidate, candidates: list[Candidate]) -> str:
    """The row's name, and the hyper-parameters that tell its settings apart (`OnDARE p=0.01`)."""
    settings = [dict(cells[0].params) for cells in candidates]
    differing = [name for name in settings[0] if len({setting[name] for setting in settings}) > 1]
    own = dict(candidate[0].params)
    spelled = (f"{hyperparameters.get(name).path_key}={own[name]:g}" for name in differing)
    return " ".join([row_label(preset, row), *spelled])


def read_history(root: Path, cell: TrainCell) -> list[dict[str, float]] | None:
    """A cell's logged steps, or None if it has no training log."""
    path = Path(root) / cell.path / LOG
    return json.loads(path.read_text())["history"] if path.is_file() else None


def points(histories: list[list[dict[str, float]]], metric: str) -> list[tuple[int, float]]:
    """(step, mean over the histories) at every step where each of them logged `metric`."""
    by_step = [{entry["step"]: entry[metric] for entry in history if metric in entry} for history in histories]
    steps = sorted(set.intersection(*(set(values) for values in by_step)))
    return [(step, sum(values[step] for values in by_step) / len(by_step)) for step in steps]


def _color(preset: Mapping[str, Any], curve: Curve) -> tuple[float, float, float]:
    """The row's colour (by name, else by its method), lighter for a method's earlier settings."""
    from matplotlib.colors import to_rgb

    setting = preset["methods"][curve.row]
    unmerged = setting["method"] == "ondare" and setting.get("alpha") == 0  # update dropout: ChildTuning's grey
    kind = "childtuning" if unmerged else setting["method"]
    named = methods.get(curve.row).style.color if curve.row in methods.names() else ROW_COLORS.get(curve.row)
    base = to_rgb(named or methods.get(kind).style.color)
    lighten = 0.6 * (1 - curve.shade / (curve.shades - 1)) if curve.shades > 1 else 0.0
    return tuple(channel + (1 - channel) * lighten for channel in base)


def _draw_panel(ax: Axes, preset: Mapping[str, Any], drawn: list[tuple[Curve, list]], metric: str) -> None:
    from matplotlib.ticker import MaxNLocator

    for curve, histories in drawn:
        method = methods.get(preset["methods"][curve.row]["method"])
        style = {"color": _color(preset, curve), "linestyle": method.style.linestyle}  # dashed: as published
        seeds = [points([history], metric) for history in histories] if len(histories) > 1 else []
        for line in filter(None, seeds):
            ax.plot(*zip(*line, strict=True), **style, linewidth=0.6, alpha=0.35)
        line = points(histories, metric)
        if line:
            ax.plot(*zip(*line, strict=True), **style, linewidth=1.6, label=curve.label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)


def draw(root: Path, preset: Mapping[str, Any], name: str, out: Path) -> list[str]:
    """Draw curve figure `name` (one of `curve_names(preset)`) to the PNG `out`; return the cells without a log."""
    from matplotlib.figure import Figure

    if name not in curve_names(preset):
        raise ValueError(f"no curve figure {name!r} in preset {preset['name']!r} (figures: {curve_names(preset)})")
    study_name = name.removeprefix(PREFIX)
    panels = study_curves(preset, study_name)
    figure = Figure(figsize=(FIGSIZE_WIDTH, PANEL_HEIGHT * len(panels) + 1.0), layout="constrained")
    figure.suptitle(f"Training curves of study {study_name}, preset {preset['name']}", fontsize=12)
    rows = figure.subfigures(len(panels), 1, squeeze=False)[:, 0]
    missing, handles, seeds = [], {}, set()
    for row, (title, loss, curves) in zip(rows, panels, strict=True):
        row.suptitle(f"{title}, {LABELS.get(loss, loss)}", fontsize=11)
        drawn = []
        for curve in curves:
            histories = [read_history(root, cell) for cell in curve.cells]
            missing += [cell.path for cell, history in zip(curve.cells, histories, strict=True) if history is None]
            found = [history for history in histories if history is not None]
            if found:
                drawn.append((curve, found))
                seeds.add(len(found))
        for ax, (metric, axis_label) in zip(row.subplots(1, len(PANELS)), PANELS, strict=True):
            _draw_panel(ax, preset, drawn, metric)
            ax.set(xlabel="optimizer step", ylabel=axis_label, title=axis_label.split(" (")[0].capitalize())
            handles |= legend_entries(ax)
    if handles:
        rows[-1].legend(handles.values(), handles.keys(), loc="outside lower center", ncol=min(len(handles), 5))
    missing = list(dict.fromkeys(missing))
    counts = " or ".join(str(count) for count in sorted(seeds)) or "no"
    caption = (
        f"Lines: trl's logged values (each a mean over the steps since the previous log), mean over {counts}"
        f" seed(s) per setting" + ("; thin lines: each seed." if max(seeds, default=1) > 1 else ".")
    )
    footer(figure, [caption, *missing_note(missing, "no training log")])
    save_png(figure, out)
    return missing
