"""The tables as pages: each a list of parts (headings, bullets and grids of cells) from the tidy frames, written as
Markdown, LaTeX (booktabs) and HTML (for Snakemake's report); `write` adds the tidy frame itself as CSV. The verdicts
are rendered with the same parts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from onmerge import worlds
from onmerge.aggregate import CATEGORIES, JUDGED, PAPER_COLUMNS
from onmerge.atomic import write_text
from onmerge.tables import STUDY_OF_TABLE, TITLES
from onmerge.tables.frames import MISSING, NOT_RUN
from onmerge.tables.labels import GROUP_LABELS, LABELS, backbone_title, label_of, regime_title
from onmerge.tables.published import published_backbone
from onmerge.tables.rows import select_by

# Decimals as the paper prints them: per-benchmark scores and judged rewards to 2, categories and averages to 1.
DIGITS = {column: 2 for column in (*PAPER_COLUMNS, *JUDGED)} | {column: 1 for column in (*CATEGORIES, "benchmark_avg")}

LEGEND = (
    "Each value: the mean over seeds ± lm-eval's standard error, propagated to the categories and the Benchmark Avg.; "
    "with several seeds, (sd over seeds, n) follows. The judged AlpacaEval LC win rate has no standard error.",
    "Best and second best per column marked (bold, underlined); the Reference is not ranked.",
)
DIFFERENCES_NOTE = (
    "Table 1: each row minus AdamW, with its 95% paired bootstrap interval in brackets (both rows scored on the same "
    "items, resampled together per column; each row's seeds resampled; onmerge.paired); † where the interval "
    "excludes zero. No correction for the many cells: see the verdicts for claims."
)
_MINUS_ADAMW = {"table1": "Table 1: each row minus AdamW", "precision": "Each row minus the AdamW of its regime"}
PRECISION_NOTE = (
    "The paper's claims are about its own regime, pure bf16 (the published fork trains bf16 weights without an fp32 "
    "copy). OnDARE with alpha = 0 is OnDARE without the merge: OnDARE minus it is the merge's share of OnDARE's "
    "effect, and the fp32 block shows what is left when no update rounds away. Each backbone block is one world."
)
EXPLORATORY_NOTE = (
    "Exploratory: one seed per cell, so the uncertainties hold the items' noise only, not the training seed's; read "
    "this table for its shape."
)
JUDGE_NOTE = (
    "MT-Bench here is the toy judge's mean score, 1 + content + language + manner. Manner is a closing offer of help "
    "after the answer (the bare answer on IFEval and tool calls), so it never displaces content: reward can rise "
    "without tax. A content or Benchmark Avg. that falls as reward rises is a tax that training pays."
)
SEARCH_NOTE = "A searched row (KL, EMA, offline merges) reports its setting with the highest {select_by}: see Setting."


@dataclass(frozen=True)
class Layout:
    """What one rendered block shows: its rows (each a list of records, one per column) and the column labels."""

    title: str
    columns: list[str]
    rows: list[pd.DataFrame]


def _blocks(frame: pd.DataFrame) -> list[Layout]:
    blocks = []
    for backbone, records in frame.groupby("backbone", sort=False):
        columns = list(dict.fromkeys(records["column"]))
        keys = ["group", "row", "label", "setting"]
        rows = [row for _, row in records.groupby(keys, sort=False)]
        blocks.append(Layout(backbone, columns, rows))
    return blocks


def _number(value: float, digits: int, signed: bool) -> str:
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def cell_text(record: Mapping[str, Any], signed: bool, plus_minus: str = "±") -> str:
    """A cell as printed: `value ± stderr (sd s, n=k)`, a difference as `value [low, high]†` (its paired interval,
    † where it excludes zero), or `missing` / `not run`."""
    if record["status"] in (MISSING, NOT_RUN):
        return record["status"]
    digits = DIGITS.get(record["column"], 2)
    text = _number(record["value"], digits, signed)
    if not math.isnan(record["stderr"]):
        text += f" {plus_minus} {record['stderr']:.{digits}f}"
    if not math.isnan(record["low"]):
        low, high = (_number(record[bound], digits, signed) for bound in ("low", "high"))
        text += f" [{low}, {high}]" + ("†" if record["significant"] else "")
    if record["seeds"] > 1:
        text += f" (sd {record['seed_sd']:.{digits}f}, n={record['seeds']})"
    return text


def _signed(table: str, row: str) -> bool:
    return table in ("table1", "precision") and row != "adamw"


def _grid(
    block: Layout, table: str, with_published: bool, preset: Mapping[str, Any]
) -> tuple[list[str], list[list[tuple[str, int]]]]:
    """Header and cells (text, rank) of one block, with `paper` and `Δ` lines under each row when asked."""
    has_setting = any(row["setting"].iloc[0] for row in block.rows)
    lead_header = {
        "table2": ["Optimizer", "Setting"],
        "table3": ["Algorithm", "Optimizer"],
        "precision": ["Regime", "Method"],
        "judge": ["Study", "Model"],
    }.get(table, ["Group", "Method"])
    header = [*lead_header, *(["Setting"] if has_setting else []), *(LABELS.get(c, c) for c in block.columns)]
    lines, previous_group = [], None
    for row in block.rows:
        first = row.iloc[0]
        group = GROUP_LABELS.get(first["group"], label_of(first["group"]))
        if table in ("precision", "judge") and first["group"] != "interpolation":
            group = regime_title(preset, first["group"])
        lead = [group if first["group"] != previous_group else "", first["label"]]
        previous_group = first["group"]
        setting = [first["setting"]] if has_setting else []
        by_column = {record["column"]: record for record in row.to_dict("records")}
        signed = _signed(table, first["row"])
        lines.append(
            [(text, 0) for text in lead + setting]
            + [(cell_text(by_column[c], signed), by_column[c]["rank"]) for c in block.columns]
        )
        if with_published:
            for name, field in (("paper", "published"), ("Δ", "difference")):
                cells = []
                for column in block.columns:
                    value = by_column[column][field]
                    digits = DIGITS.get(column, 2)
                    cells.append(("n/a" if math.isnan(value) else _number(value, digits, signed or name == "Δ"), 0))
                lines.append([("", 0), (f"↳ {name}", 0), *([("", 0)] if has_setting else []), *cells])
    return header, lines


def _notes(frame: pd.DataFrame) -> list[str]:
    """One line per row with a missing or not-run cell, naming the columns and the cells without results."""
    notes = []
    for (backbone, group, _, label, _), records in frame.groupby(
        ["backbone", "group", "row", "label", "setting"], sort=False
    ):
        what = f"{backbone} / {label}" + ("" if group in GROUP_LABELS else f" / {label_of(group)}")
        missing = records[records["status"] == MISSING]
        if len(missing):
            columns = ", ".join(LABELS.get(column, column) for column in missing["column"])
            cells = sorted({cell for cells in missing["missing_cells"] for cell in cells.split(";") if cell})
            notes.append(f"Missing: {what}: {columns}; no result for {', '.join(cells)}")
        if (records["status"] == NOT_RUN).any():
            notes.append(f"Not run: {what} (the preset does not plan this row)")
    return notes


def _shape_title(preset: Mapping[str, Any], backbone: str) -> str:
    for ours in preset["backbones"]:
        if published_backbone(preset, ours) == backbone:
            return f"{backbone} (published; mirrored here by {ours})"
    return f"{backbone} (published)"


def _published_for_shape(paper: pd.DataFrame, ours: pd.DataFrame, preset: Mapping[str, Any]) -> pd.DataFrame:
    mirrored = [published_backbone(preset, backbone) for backbone in dict.fromkeys(ours["backbone"])]
    return paper[paper["backbone"].isin(mirrored)]


@dataclass(frozen=True)
class Grid:
    title: str
    header: list[str]
    lines: list[list[tuple[str, int]]]  # (text, rank) per cell
    numeric: int  # how many trailing columns hold numbers


Part = tuple[str, str] | Grid  # ("heading" | "bullet", text) or a table


def document(name: str, ours: pd.DataFrame, paper: pd.DataFrame, preset: Mapping[str, Any]) -> list[Part]:
    """A table as headings, bullets and grids: ours, its notes, and the published values under ours or, where the
    world's numbers are not comparable with the paper's (the toy's), the published table apart."""
    beside = worlds.of(preset).published_beside_ours
    selected_by = LABELS[select_by(preset)]
    parts: list[Part] = [("heading", f"{TITLES[name]} — preset `{preset['name']}`")]
    parts += [("bullet", line) for line in LEGEND if name not in ("precision", "judge") or line != LEGEND[1]]
    if name in ("table1", "precision"):
        parts.append(("bullet", DIFFERENCES_NOTE.replace("Table 1: each row minus AdamW", _MINUS_ADAMW[name])))
    if name == "precision":
        parts.append(("bullet", PRECISION_NOTE))
    if name == "judge":
        parts.append(("bullet", JUDGE_NOTE))
    if name not in ("table2", "precision", "judge"):
        parts.append(("bullet", SEARCH_NOTE.format(select_by=selected_by)))
    seeds = preset["studies"][STUDY_OF_TABLE[name]].get("seeds", preset["seeds"]) if name in STUDY_OF_TABLE else []
    if len(seeds) == 1:
        parts.append(("bullet", EXPLORATORY_NOTE))
    if beside:
        parts.append(("bullet", "Under each row: the published value (↳ paper) and ours minus it (↳ Δ)."))

    def grids(frame: pd.DataFrame, with_published: bool, title_of) -> list[Grid]:
        return [
            Grid(title_of(block.title), *_grid(block, name, with_published, preset), len(block.columns))
            for block in _blocks(frame)
        ]

    parts += grids(ours, beside, lambda backbone: backbone_title(preset, backbone))
    parts += [("bullet", note) for note in _notes(ours)]
    if not beside and len(paper):
        parts.append(("heading", "The published table, for shape only (the paper's numbers, not this run's)"))
        parts += grids(_published_for_shape(paper, ours, preset), False, lambda b: _shape_title(preset, b))
    return parts


def markdown(parts: list[Part]) -> str:
    lines = []
    for part in parts:
        if isinstance(part, Grid):
            lines += [f"## {part.title}", "", "| " + " | ".join(part.header) + " |"]
            lines.append("|" + "|".join(["---"] * (len(part.header) - part.numeric) + ["---:"] * part.numeric) + "|")
            lines += ["| " + " | ".join(_md_mark(text, rank) for text, rank in cells) + " |" for cells in part.lines]
            lines.append("")
        elif part[0] == "heading":
            lines += ["" if lines and lines[-1] else None, f"# {part[1]}", ""]
        else:
            lines.append(f"- {part[1]}")
    return "\n".join(line for line in lines if line is not None).strip() + "\n"


def _md_mark(text: str, rank: int) -> str:
    return f"**{text}**" if rank == 1 else f"<u>{text}</u>" if rank == 2 else text


def html(parts: list[Part]) -> str:
    """One HTML page, for Snakemake's report (which shows HTML, not Markdown)."""
    from html import escape

    body = []
    for part in parts:
        if isinstance(part, Grid):
            rows = ["".join(f"<th>{escape(cell)}</th>" for cell in part.header)]
            rows += [
                "".join(f"<td>{_html_mark(escape(text), rank)}</td>" for text, rank in cells) for cells in part.lines
            ]
            table = "".join(f"<tr>{row}</tr>" for row in rows)
            body.append(f"<h3>{escape(part.title)}</h3><table>{table}</table>")
        elif part[0] == "heading":
            body.append(f"<h2>{escape(part[1])}</h2>")
        else:
            body.append(f"<p>{escape(part[1])}</p>")
    style = "table{border-collapse:collapse;font:13px sans-serif}td,th{border:1px solid #ccc;padding:2px 6px}"
    head = f"<meta charset='utf-8'><style>{style}</style>"
    return f"<!DOCTYPE html><html><head>{head}</head><body>{''.join(body)}</body></html>\n"


def _html_mark(text: str, rank: int) -> str:
    return f"<b>{text}</b>" if rank == 1 else f"<u>{text}</u>" if rank == 2 else text


_LATEX_ESCAPES = {
    "_": r"\_",
    "%": r"\%",
    "&": r"\&",
    "#": r"\#",
    "~": r"\textasciitilde{}",
    "Δ": r"$\Delta$",
    "†": r"$^\dagger$",
}


def _tex(text: str) -> str:
    text = "".join(_LATEX_ESCAPES.get(char, char) for char in text)
    return text.replace("±", r"$\pm$").replace("↳", r"$\hookrightarrow$")


def latex(name: str, parts: list[Part]) -> str:
    """booktabs tabulars, one per heading: ours (with the published lines for the paper presets), then the paper's."""
    lines = [f"% {TITLES[name]}; generated by onmerge.tables from results.csv"]
    open_tabular = False
    for part in parts:
        if isinstance(part, Grid):
            width = len(part.header)
            if not open_tabular:
                lines += [rf"\begin{{tabular}}{{{'l' * (width - part.numeric)}{'r' * part.numeric}}}", r"\toprule"]
                lines.append(" & ".join(_tex(cell) for cell in part.header) + r" \\")
                open_tabular = True
            lines.append(rf"\midrule \multicolumn{{{width}}}{{l}}{{\textit{{{_tex(part.title)}}}}} \\")
            lines += [" & ".join(_tex_mark(_tex(text), rank) for text, rank in cells) + r" \\" for cells in part.lines]
        else:
            if open_tabular:
                lines += [r"\bottomrule", r"\end{tabular}"]
                open_tabular = False
            lines.append(f"% {_tex(part[1])}")
    if open_tabular:
        lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _tex_mark(text: str, rank: int) -> str:
    return rf"\textbf{{{text}}}" if rank == 1 else rf"\underline{{{text}}}" if rank == 2 else text


def write(built: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]], preset: Mapping[str, Any], out_dir: Path) -> None:
    """`<name>.md`, `<name>.csv` (ours, tidy), `<name>.tex` and `<name>.html` for each table, written atomically."""
    for name, (ours, paper) in built.items():
        parts = document(name, ours, paper, preset)
        write_text(Path(out_dir) / f"{name}.md", markdown(parts))
        write_text(Path(out_dir) / f"{name}.csv", ours.to_csv(index=False))
        write_text(Path(out_dir) / f"{name}.tex", latex(name, parts))
        write_text(Path(out_dir) / f"{name}.html", html(parts))
