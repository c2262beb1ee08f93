"""The paper's figures from the pipeline's results.csv: Figures 2-4 (sweeps) and Section 3's interpolation plane.

Each figure is first its data, seed-mean estimates looked up with onmerge.tables (so a figure and a table never
disagree on what a row's value is), then a PNG. A point the preset plans but the results lack is left out of its
line and named on the figure and in `draw`'s return value; nothing is filled in. The figures are DPO, as the paper's.

Matplotlib is used through `matplotlib.figure.Figure`, never pyplot: no GUI backend is ever chosen (PNG output is
Agg's), and no global figure registry keeps figures alive between draws. It is imported where a figure is drawn:
Snakemake imports this module while it parses the workflow (`figure_names`), and needs no matplotlib for that.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onmerge import methods
from onmerge.atomic import atomic_file
from onmerge.grid import MERGES, Checkpoint, MergeCell
from onmerge.tables.labels import LABELS, backbone_title, label_of, row_label
from onmerge.tables.rows import Candidate, choose, row_candidates, select_by, setting_of

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from onmerge.tables.results import Estimate, Results

LOSS = "dpo"
REWARD, BENCHMARK = "mt_bench", "benchmark_avg"
PANELS = (BENCHMARK, REWARD)  # the two panels of every sweep figure, in the paper's order
AXIS_LABELS = {BENCHMARK: "Benchmark Avg. (%)", REWARD: "MT-Bench (1-10)"}
# The sweep figures and the row each draws as a level across its sweep (None: no level).
SWEEP_LEVELS: dict[str, str | None] = {"figure2": None, "figure3": "adamw", "figure4": "reference"}
LEVEL_LABELS = {"adamw": "AdamW (default settings)", "reference": "Reference (SFT)"}
FIGURE_TITLES = {"figure2": "Figure 2", "figure3": "Figure 3", "figure4": "Figure 4"}
VARIED = {"reserve_p": "reserve rate p", "merge_every": "step-K gap K (steps between merges)", "beta": "DPO β"}
INTERPOLATION = "interpolation"
# Interpolation plane: the style of each offline merge's points (colour, marker, filled); a method's is its own
# (`onmerge.methods.Style`), filled.
MERGE_STYLES = {
    "linear": ("tab:orange", "s", False),
    "dare": ("tab:green", "^", True),
    "ties": ("tab:red", "v", True),
}
MARKER_SIZE = 7
CURVE_COLORS = ("tab:blue", "tab:cyan", "tab:olive")
FIGSIZE_WIDTH, PANEL_HEIGHT, DPI = 10.0, 4.0, 120
MISSING_LISTED = 6  # missing paths written out on a figure; the rest are counted (all are in draw's return value)


def figure_names(preset: Mapping[str, Any]) -> list[str]:
    """The figures a preset's studies make, each named after its study."""
    return [name for name in (*SWEEP_LEVELS, INTERPOLATION) if name in preset["studies"]]


# ---- the data ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """A line of a sweep figure: (value of the varied hyper-parameter, estimate) where measured, and what is not."""

    label: str
    points: list[tuple[float, Estimate]]
    missing: list[str]


@dataclass(frozen=True)
class Level:
    """A fixed row drawn across a sweep; `estimate` None with `missing` empty means the preset has no such row."""

    label: str
    estimate: Estimate | None
    missing: list[str]


@dataclass(frozen=True)
class Mark:
    """A point of the interpolation plane."""

    text: str  # its annotation: the interpolation weight, the optimizer, or the merge setting
    reward: Estimate
    benchmark: Estimate


@dataclass(frozen=True)
class Group:
    """Points of the plane drawn alike: the interpolation curve, one offline merge's grid, or an online optimizer.

    An overlay comes from other studies (the offline merges and online optimizers are Table 1's): it is drawn only
    where it has results, and only then are its unmeasured cells missing; without any it is noted as not drawn.
    """

    style: str  # "curve", a merge (MERGE_STYLES) or a method (onmerge.methods)
    label: str
    marks: list[Mark]
    missing: list[str]
    overlay: bool


def _measure(
    results: Results, candidates: list[Candidate], metric: str, select_by: str
) -> tuple[Estimate | None, list[str]]:
    """A row's estimate at its setting (the best by `select_by` if it searches several, as the tables report it)."""
    chosen, lacking = choose(results, candidates, select_by)
    if chosen is None:
        return None, lacking
    estimate = results.estimate(chosen, metric)
    return estimate, [] if estimate is not None else results.lacking(chosen, metric)


def _whole_preset(preset: Mapping[str, Any], study: Mapping[str, Any]) -> dict[str, Any]:
    """A study of every method row and the offline merges at their default settings, with `study`'s seeds.

    It lets `row_candidates` find the rows a figure shows besides its own study's (AdamW's level, the overlays).
    """
    return {"methods": list(preset["methods"]), "offline": True, "seeds": study.get("seeds", preset["seeds"])}


def sweep_series(results: Results, preset: Mapping[str, Any], name: str, backbone: str, metric: str) -> list[Series]:
    """One line per method of a sweep study: `metric` at each value of the study's varied hyper-parameter."""
    study = preset["studies"][name]
    (param,) = study["vary"]
    lines = []
    for method in study["methods"]:
        at: dict[float, list[Candidate]] = {}  # a method that also searches has several settings at one value
        for candidate in row_candidates(preset, study, backbone, LOSS, method):
            at.setdefault(float(dict(candidate[0].params)[param]), []).append(candidate)
        points, missing = [], []
        for x, candidates in sorted(at.items()):  # then the best is drawn, as the tables report a searched row
            estimate, lacking = _measure(results, candidates, metric, select_by(preset))
            missing += lacking
            if estimate is not None:
                points.append((x, estimate))
        lines.append(Series(row_label(preset, method), points, missing))
    return lines


def sweep_level(results: Results, preset: Mapping[str, Any], name: str, backbone: str, metric: str) -> Level | None:
    """The row a sweep figure draws across (Figure 3: AdamW, Figure 4: the SFT reference), or None if it draws none."""
    row = SWEEP_LEVELS[name]
    if row is None:
        return None
    candidates = row_candidates(preset, _whole_preset(preset, preset["studies"][name]), backbone, LOSS, row)
    if candidates is None:
        return Level(LEVEL_LABELS[row], None, [])
    estimate, lacking = _measure(results, candidates, metric, select_by(preset))
    return Level(LEVEL_LABELS[row], estimate, lacking)


def plane(results: Results, preset: Mapping[str, Any], backbone: str) -> list[Group]:
    """Section 3's reward-tax plane on one backbone: the SFT-to-RLHF interpolation curve, then the overlays."""
    study = preset["studies"][INTERPOLATION]
    whole = _whole_preset(preset, study)
    selection = select_by(preset)

    def group(style: str, label: str, steps: list[tuple[str, list[Candidate]]], overlay: bool) -> Group:
        marks, missing = [], []
        for text, candidates in steps:
            reward, lacks_reward = _measure(results, candidates, REWARD, selection)
            benchmark, lacks_benchmark = _measure(results, candidates, BENCHMARK, selection)
            missing += [path for path in dict.fromkeys(lacks_reward + lacks_benchmark) if path not in missing]
            if reward is not None and benchmark is not None:
                marks.append(Mark(text, reward, benchmark))
        return Group(style, label, marks, missing, overlay)

    groups = []
    sft: Candidate = (Checkpoint(backbone, "sft"),)
    for method in study["methods"]:
        sources = row_candidates(preset, study, backbone, LOSS, method)
        for source in sources:
            merges = [
                (f"{weight:g}", [tuple(MergeCell(cell, "linear", (("weight", float(weight)),)) for cell in source)])
                for weight in study["interpolate"]
            ]
            name = label_of(method)
            steps = [("SFT (0)", [sft]), *merges, (f"{name} (1)", [source])]
            label = f"SFT → {name}, linear merge weight w" + (f" ({setting_of(source)})" if len(sources) > 1 else "")
            groups.append(group("curve", label, steps, overlay=False))
    source = label_of(preset["offline"]["source"])
    for merge in MERGES:
        candidates = row_candidates(preset, whole, backbone, LOSS, merge)
        steps = [(setting_of(candidate), [candidate]) for candidate in candidates]
        groups.append(group(merge, f"{LABELS[merge]} (offline grid on {source})", steps, overlay=True))
    for method in online_rows():
        candidates = row_candidates(preset, whole, backbone, LOSS, method)
        if candidates is not None:
            name = label_of(method)
            groups.append(group(method, f"{name} (online, default settings)", [(name, candidates)], overlay=True))
    return groups


def online_rows() -> list[str]:
    """The online optimizers the plane shows at their default settings: Table 1's (`onmerge.methods`)."""
    return [method.name for method in methods.registered() if method.online and method.group is not None]


def _plane_missing(groups: list[Group]) -> tuple[list[str], list[str]]:
    """(missing paths, labels of overlays not drawn for want of any result)."""
    missing = [path for g in groups if g.marks or not g.overlay for path in g.missing]
    absent = [g.label for g in groups if g.overlay and not g.marks]
    return list(dict.fromkeys(missing)), absent


# ---- drawing -------------------------------------------------------------------------------------------------------


def footer(figure: Figure, lines: list[str]) -> None:
    """The caption and notes under the figure (kept inside the PNG by the tight bounding box)."""
    text = "\n".join(wrapped for line in lines for wrapped in textwrap.wrap(line, 150, subsequent_indent="    "))
    figure.text(0.01, 0.0, text, ha="left", va="top", fontsize=8)


def _seeds(seeds: list[int]) -> str:
    return "1 seed" if len(seeds) == 1 else f"{len(seeds)} seeds"


def missing_note(missing: list[str], why: str = "no result in results.csv") -> list[str]:
    if not missing:
        return []
    listed = "; ".join(missing[:MISSING_LISTED])
    more = f"; and {len(missing) - MISSING_LISTED} more" if len(missing) > MISSING_LISTED else ""
    return [f"Missing, left out ({why}): {listed}{more}."]


def legend_entries(ax: Axes) -> dict[str, Any]:
    """An axes' legend entries by label, so panels that share them give one figure legend."""
    handles, labels = ax.get_legend_handles_labels()
    return dict(zip(labels, handles, strict=True))


def _log_axis(ax: Axes, values: list[float]) -> None:
    """A log axis ticked at the study's own values, so each point sits on a labelled tick."""
    from matplotlib.ticker import NullLocator

    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(values, [_tick(value) for value in values], rotation=30 if len(values) > 6 else 0)


def _tick(value: float) -> str:
    """A short tick label: 0.1, 16, and 5e-4 rather than 0.0005, so half-decade neighbours do not collide."""
    if value >= 0.01:
        return f"{value:g}"
    mantissa, exponent = f"{value:.6e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _seed_spread(ax: Axes, xs: list[float], ys: list[float], color: str, **errors: list[float] | None) -> None:
    """The sd over seeds as faint wide bars behind the standard-error bars (visible for a lone point too)."""
    ax.errorbar(xs, ys, **errors, fmt="none", ecolor=color, elinewidth=5, alpha=0.2)


def _draw_sweep_panel(ax: Axes, lines: list[Series], level: Level | None) -> bool:
    """One metric against the varied setting; True if a seed sd was drawn."""
    spread_drawn = False
    if level is not None and level.estimate is not None:
        value, stderr = level.estimate.value, level.estimate.stderr
        ax.axhline(value, color="0.35", linestyle="--", linewidth=1.2, label=f"{level.label} ± s.e.")
        ax.axhspan(value - stderr, value + stderr, color="0.35", alpha=0.12, linewidth=0)
    for line in lines:
        if not line.points:
            continue
        xs = [x for x, _ in line.points]
        ys = [estimate.value for _, estimate in line.points]
        errors = [estimate.stderr for _, estimate in line.points]
        drawn = ax.errorbar(xs, ys, yerr=errors, marker="o", markersize=5, capsize=3, linewidth=1.5, label=line.label)
        several = [(x, estimate) for x, estimate in line.points if estimate.seeds > 1]
        if several:
            color = drawn.lines[0].get_color()
            sds = [estimate.seed_sd for _, estimate in several]
            _seed_spread(ax, [x for x, _ in several], [estimate.value for _, estimate in several], color, yerr=sds)
            spread_drawn = True
    ax.grid(True, alpha=0.3)
    return spread_drawn


def _draw_sweep(results: Results, preset: Mapping[str, Any], name: str, figure: Figure) -> list[str]:
    study = preset["studies"][name]
    (param,) = study["vary"]
    values = sorted(float(value) for value in study["vary"][param])
    methods = ", ".join(row_label(preset, method) for method in study["methods"])
    figure.suptitle(
        f"{FIGURE_TITLES[name]}: {methods} against the {VARIED.get(param, param)} (DPO), preset {preset['name']}",
        fontsize=12,
    )
    backbones = study["backbones"]
    rows = figure.subfigures(len(backbones), 1, squeeze=False)[:, 0]
    missing, notes, spread, handles = [], {}, False, {}
    for row, backbone in zip(rows, backbones, strict=True):
        row.suptitle(backbone_title(preset, backbone), fontsize=11)
        for ax, metric in zip(row.subplots(1, 2), PANELS, strict=True):
            lines = sweep_series(results, preset, name, backbone, metric)
            level = sweep_level(results, preset, name, backbone, metric)
            spread |= _draw_sweep_panel(ax, lines, level)
            _log_axis(ax, values)
            ax.set(title=LABELS[metric], xlabel=VARIED.get(param, param), ylabel=AXIS_LABELS[metric])
            handles |= legend_entries(ax)
            missing += [path for series in [*lines, *([level] if level else [])] for path in series.missing]
            for series in lines:
                if not series.points:
                    notes.setdefault(f"{backbone}: {series.label} not drawn (no result)", []).append(LABELS[metric])
            if level is not None and level.estimate is None:
                why = "no result" if level.missing else "the preset has no such row"
                notes.setdefault(f"{backbone}: {level.label} level not drawn ({why})", []).append(LABELS[metric])
    rows[-1].legend(handles.values(), handles.keys(), loc="outside lower center", ncol=len(handles), fontsize=9)
    seeds = study.get("seeds", preset["seeds"])
    caption = (
        f"Points: mean over {_seeds(seeds)}; error bars: lm-eval standard error"
        + ("; faint wide bars: ± sd over seeds" if spread else "")
        + ("; dashed line: a fixed row, shaded ± its standard error." if SWEEP_LEVELS[name] else ".")
    )
    missing = list(dict.fromkeys(missing))
    notes_lines = [f"{note} in {', '.join(metrics)}." for note, metrics in notes.items()]
    footer(figure, [caption, *notes_lines, *missing_note(missing)])
    return missing


def _draw_plane_axes(ax: Axes, groups: list[Group]) -> bool:
    """The plane's points with error bars both ways; True if seed sd bars were drawn."""
    spread_drawn = False
    curves = 0
    for group in groups:
        if not group.marks:
            continue
        xs = [mark.reward.value for mark in group.marks]
        ys = [mark.benchmark.value for mark in group.marks]
        size = MARKER_SIZE
        if group.style == "curve":
            color, marker, filled = CURVE_COLORS[curves % len(CURVE_COLORS)], "o", True
            curves += 1
        elif group.style in MERGE_STYLES:
            color, marker, filled = MERGE_STYLES[group.style]
        else:
            style = methods.get(group.style).style
            color, marker, filled, size = style.color, style.marker, True, style.markersize or MARKER_SIZE
        drawn = ax.errorbar(
            xs,
            ys,
            xerr=[mark.reward.stderr for mark in group.marks],
            yerr=[mark.benchmark.stderr for mark in group.marks],
            fmt=marker + ("-" if group.style == "curve" else ""),
            color=color,
            markerfacecolor=color if filled else "none",
            markersize=size,
            elinewidth=0.8,
            capsize=2,
            label=group.label,
            zorder=3 if group.style == "curve" else 4,
        )
        for bars in drawn.lines[2]:
            bars.set_alpha(0.45)  # the points stay legible where their error bars cross
        several = [mark for mark in group.marks if mark.reward.seeds > 1]
        if several:
            _seed_spread(
                ax,
                [mark.reward.value for mark in several],
                [mark.benchmark.value for mark in several],
                color,
                xerr=[mark.reward.seed_sd for mark in several],
                yerr=[mark.benchmark.seed_sd for mark in several],
            )
            spread_drawn = True
        if group.style not in MERGE_STYLES:  # the curve's weights and the online optimizers' names
            offset = (6, 4) if group.style == "curve" else (7, -12)  # online names below, apart from the curve's
            for mark, x, y in zip(group.marks, xs, ys, strict=True):
                ax.annotate(
                    mark.text,
                    (x, y),
                    xytext=offset,
                    textcoords="offset points",
                    fontsize=8,
                    color=color,
                    zorder=2,  # under every marker: a label never hides a point
                )
    ax.set(xlabel=f"reward: {AXIS_LABELS[REWARD]}", ylabel=f"{AXIS_LABELS[BENCHMARK]}, higher: less alignment tax")
    ax.grid(True, alpha=0.3)
    return spread_drawn


def _draw_interpolation(results: Results, preset: Mapping[str, Any], figure: Figure) -> list[str]:
    study = preset["studies"][INTERPOLATION]
    figure.suptitle(
        f"Section 3: reward against benchmarks from SFT to RLHF (DPO), preset {preset['name']}", fontsize=12
    )
    backbones = study["backbones"]
    axes = figure.subplots(1, len(backbones), squeeze=False)[0]
    missing, absent, spread, handles = [], [], False, {}
    for ax, backbone in zip(axes, backbones, strict=True):
        groups = plane(results, preset, backbone)
        spread |= _draw_plane_axes(ax, groups)
        ax.set_title(backbone_title(preset, backbone), fontsize=11)
        handles |= legend_entries(ax)
        lacking, not_drawn = _plane_missing(groups)
        missing += lacking
        absent += [f"{backbone}: {label}" for label in not_drawn]
    figure.legend(handles.values(), handles.keys(), loc="outside right center", fontsize=9)
    seeds = study.get("seeds", preset["seeds"])
    caption = (
        f"Points: mean over {_seeds(seeds)} ± lm-eval standard error, both ways"
        + ("; faint wide bars: ± sd over seeds" if spread else "")
        + ". The curve's labels are w in (1 - w)·SFT + w·RLHF model;"
        + " the offline merges are the preset's grid of densities and weights."
    )
    notes = [f"Not in results.csv, not drawn: {'; '.join(absent)}."] if absent else []
    missing = list(dict.fromkeys(missing))
    footer(figure, [caption, *notes, *missing_note(missing)])
    return missing


def save_png(figure: Figure, out: Path) -> None:
    with atomic_file(out) as partial:
        figure.savefig(partial, format="png", dpi=DPI, bbox_inches="tight")


def draw(results: Results, preset: Mapping[str, Any], name: str, out: Path) -> list[str]:
    """Draw figure `name` (one of `figure_names(preset)`) to the PNG `out`; return the model paths it lacks."""
    from matplotlib.figure import Figure

    if name not in figure_names(preset):
        raise ValueError(f"no figure {name!r} in preset {preset['name']!r} (figures: {figure_names(preset)})")
    rows = len(preset["studies"][name]["backbones"])
    if name == INTERPOLATION:
        figure = Figure(figsize=(FIGSIZE_WIDTH * (0.6 * rows + 0.4), PANEL_HEIGHT * 1.5), layout="constrained")
        missing = _draw_interpolation(results, preset, figure)
    else:
        figure = Figure(figsize=(FIGSIZE_WIDTH, PANEL_HEIGHT * rows + 0.9), layout="constrained")
        missing = _draw_sweep(results, preset, name, figure)
    save_png(figure, out)
    return missing
