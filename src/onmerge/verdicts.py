"""Does online merging work? Each of the paper's claims answered from this run, beside the paper's own effect.

A claim rests on comparisons between table rows (each a model per seed), every one a paired contrast with a
bootstrap interval (`onmerge.paired`), and says which side of zero the paper puts it on. The rule:
- a comparison is *supported* when its interval lies on the paper's side of zero (for a robustness comparison,
  above minus its margin), *contradicted* when it lies wholly on the other side, and *inconclusive* otherwise;
- the intervals of one claim are Bonferroni-adjusted (level 1 - 0.05 / comparisons), so that a claim resting on
  many comparisons is not called contradicted or supported by chance;
- a claim is *contradicted* if any of its comparisons is, *supported* if every comparison it requires is (checks
  of shape, such as each step of the interpolation curve, can only contradict), and *inconclusive* otherwise;
- a claim whose study the preset does not plan is *not planned*.
The paper's claims are universal ("for every backbone", "for IPO and KTO"): one significant counter-example
refutes one, and support needs every instance.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from onmerge import worlds
from onmerge.grid import Checkpoint, study_regimes, training_of
from onmerge.paired import PairedBootstrap, Term
from onmerge.tables.labels import LABELS, row_label
from onmerge.tables.published import published_backbone, read_published
from onmerge.tables.render import DIGITS, Grid, Part, html, markdown
from onmerge.tables.results import Results
from onmerge.tables.rows import choose, interpolation_curve, main_rows, row_candidates, select_by

FAMILY_LEVEL = 0.95  # each claim's comparisons together
SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_PLANNED = "supported", "contradicted", "inconclusive", "not planned"
HIGHER, LOWER, NOT_LOWER = "higher", "lower", "not lower"
ONLINE = ("onties", "ondare")  # the online optimizers the paper's claims name
BASELINE_GROUPS = ("regularization", "offline_merging")  # Table 1's groups whose rows C4 names
# "Robust": at most this much worse than at the default reserve rate (C5). Benchmark Avg. in points; MT-Bench five
# times the judge noise the paper quotes (0.05).
MARGINS = {"benchmark_avg": 2.0, "mt_bench": 0.25}
ROBUST_DOWN_TO = 5e-4  # the paper: robust down to a reserve rate of about 5e-4 (Figure 2)
# Figure 4, quoted in the paper's text: AdamW's MT-Bench at DPO beta 1e-3 (Qwen1.5-7B); the curve has no table.
FIGURE4_ADAMW_MT_BENCH = 6.25


@dataclass(frozen=True)
class Comparison:
    """One contrast a claim rests on, the side of zero the paper puts it on, and the paper's own value of it."""

    backbone: str
    label: str
    metric: str
    terms: tuple[Term, ...]
    expected: str
    margin: float = 0.0
    required: bool = True  # False: a check of shape, which can only contradict
    published: float = math.nan


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    studies: tuple[str, ...]  # it rests on the first of these the preset plans
    plan: Callable[[Context, str], list[Comparison]]


@dataclass
class Context:
    """What planning needs: the preset, the results (to pick a searched row's setting as the tables do) and the
    published tables in the tidy layout of `onmerge.tables.published`."""

    preset: Mapping[str, Any]
    results: Results
    paper_dir: Path
    _published: dict[str, pd.DataFrame] = field(default_factory=dict)

    def row(
        self, study: str, backbone: str, row: str, loss: str = "dpo", regime: str | None = None
    ) -> tuple[str, ...] | None:
        """A table row's models (one per seed; a searched row at its chosen setting), or None if not planned."""
        spec = self.preset["studies"][study]
        candidates = row_candidates(self.preset, spec, backbone, loss, row, regime)
        if not candidates:
            return None
        chosen, lacking = choose(self.results, candidates, select_by(self.preset))
        if chosen is None:  # verdicts run on a finished preset: a planned row without results is an error
            raise ValueError(f"{study}: {backbone} / {row} ({loss}) has no results for {', '.join(lacking)}")
        return _paths(chosen)

    def sweep(self, study: str, backbone: str, method: str) -> dict[float, tuple[str, ...]]:
        """A sweep study's models for one method, by the value of its varied hyper-parameter."""
        spec = self.preset["studies"][study]
        (param,) = spec["vary"]
        candidates = row_candidates(self.preset, spec, backbone, "dpo", method) or []
        return {float(dict(candidate[0].params)[param]): _paths(candidate) for candidate in candidates}

    def published_table(self, table: str) -> pd.DataFrame:
        """A published table in the tidy layout of `onmerge.tables.published`, read once."""
        if table not in self._published:
            self._published[table] = read_published(self.paper_dir, table)
        return self._published[table]

    def published(self, table: str, backbone: str, keys: Mapping[str, Any], column: str) -> float:
        """A value of a published table (NaN where the paper has none), for the backbone this one mirrors."""
        frame = self.published_table(table)
        selected = frame[(frame["backbone"] == published_backbone(self.preset, backbone)) & (frame["column"] == column)]
        for key, value in keys.items():
            selected = selected[selected[key] == value]
        return float(selected["value"].iloc[0]) if len(selected) == 1 else math.nan


def _paths(models) -> tuple[str, ...]:
    return tuple(model.path for model in models)


def _difference(treatment: tuple[str, ...], control: tuple[str, ...]) -> tuple[Term, ...]:
    return ((1.0, treatment), (-1.0, control))


def _label(context: Context, row: str) -> str:
    return row_label(context.preset, row)


def _roles(preset: Mapping[str, Any], study: str) -> dict[str, str]:
    """Which of a study's rows plays AdamW, OnDARE, OnTIES and OnDARE without the merge (alpha = 0, `dropout`), by
    the method each row trains with: the plain row of each kind (no search, no published semantics); AdamW
    preferably the row named `adamw`."""
    roles: dict[str, str] = {}
    for row in preset["studies"][study]["methods"]:
        setting = preset["methods"][row]
        if "search" in setting:
            continue
        kind = setting["method"]
        role = "dropout" if kind == "ondare" and setting.get("alpha") == 0 else kind
        if role in ("adamw", "ondare", "onties", "dropout") and (role not in roles or row == "adamw"):
            roles[role] = row
    return roles


def _regimes(preset: Mapping[str, Any], study: str, bf16: bool) -> list[str | None]:
    """A study's regimes in pure bf16 (`bf16`) or in fp32; None stands for the preset's own trainer settings."""
    return [
        regime
        for regime in study_regimes(preset["studies"][study])
        if bool(training_of(preset, regime).get("bf16", False)) == bf16
    ]


def _paper_regimes(preset: Mapping[str, Any], study: str) -> list[str | None]:
    """Where the paper's claims are tested: in a study's pure-bf16 regimes, the published fork's precision, if it
    has any; else in all of them."""
    return _regimes(preset, study, bf16=True) or study_regimes(preset["studies"][study])


def _in(regime: str | None) -> str:
    return "" if regime is None else f" ({regime})"


# ---- the claims -------------------------------------------------------------------------------------------------


def _interpolation(context: Context, study: str) -> list[Comparison]:
    """C1: along the interpolation weight (RLHF model's weight in a linear merge with its SFT model), reward falls and
    Benchmark Avg. rises; each step of the curve may not go against that."""
    spec = context.preset["studies"][study]
    comparisons = []
    for backbone in spec["backbones"]:
        for method in spec["methods"]:
            curve = [
                (weight, _paths(models))
                for weight, models in interpolation_curve(context.preset, spec, backbone, method)
            ]
            nearest_sft, rlhf_paths = curve[1], curve[-1][1]
            for metric, expected in (("benchmark_avg", HIGHER), ("mt_bench", LOWER)):
                label = f"{_label(context, method)} merged at weight {nearest_sft[0]:g} - {_label(context, method)}"
                terms = _difference(nearest_sft[1], rlhf_paths)
                comparisons.append(Comparison(backbone, label, metric, terms, expected))
                for (low_weight, low), (high_weight, high) in itertools.pairwise(curve):
                    label = f"step: weight {low_weight:g} - weight {high_weight:g}"
                    terms = _difference(low, high)
                    comparisons.append(Comparison(backbone, label, metric, terms, expected, required=False))
    return comparisons


def _online_against_adamw(metrics: tuple[str, ...]) -> Callable[[Context, str], list[Comparison]]:
    """C2 / C3: each online merging optimizer against AdamW (DPO), on each backbone of the study."""

    def plan(context: Context, study: str) -> list[Comparison]:
        roles = _roles(context.preset, study)
        if "adamw" not in roles:
            return []
        comparisons = []
        for backbone, regime in itertools.product(
            context.preset["studies"][study]["backbones"], _paper_regimes(context.preset, study)
        ):
            adamw = context.row(study, backbone, roles["adamw"], regime=regime)
            for online in ONLINE:
                if online not in roles:
                    continue
                ours = context.row(study, backbone, roles[online], regime=regime)
                for metric in metrics:
                    published = context.published("table4", backbone, {"row": online}, metric) - context.published(
                        "table4", backbone, {"row": "adamw"}, metric
                    )
                    label = f"{_label(context, roles[online])} - {_label(context, roles['adamw'])}{_in(regime)}"
                    comparisons.append(
                        Comparison(backbone, label, metric, _difference(ours, adamw), HIGHER, published=published)
                    )
        return comparisons

    return plan


def _merge_not_rounding(context: Context, study: str) -> list[Comparison]:
    """C10: in pure bf16, OnDARE beats OnDARE without the merge (alpha = 0: the same sparse 1/p-scaled updates, which
    survive bf16 rounding as well); in fp32, where no update rounds away, OnDARE still beats AdamW."""
    roles = _roles(context.preset, study)
    comparisons = []
    for backbone in context.preset["studies"][study]["backbones"]:
        planned = [(regime, "dropout") for regime in _regimes(context.preset, study, bf16=True)]
        planned += [(regime, "adamw") for regime in _regimes(context.preset, study, bf16=False)]
        for regime, control in planned:
            if "ondare" not in roles or control not in roles:
                continue
            ours = context.row(study, backbone, roles["ondare"], regime=regime)
            theirs = context.row(study, backbone, roles[control], regime=regime)
            label = f"{_label(context, roles['ondare'])} - {_label(context, roles[control])}{_in(regime)}"
            comparisons += [
                Comparison(backbone, label, metric, _difference(ours, theirs), HIGHER)
                for metric in ("benchmark_avg", "mt_bench")
            ]
    return comparisons


def _online_against_baselines(context: Context, study: str) -> list[Comparison]:
    """C4: each online optimizer above every regularisation and offline-merging baseline, on both axes."""
    comparisons = []
    for backbone in context.preset["studies"][study]["backbones"]:
        for online in ONLINE:
            ours = context.row(study, backbone, online)
            for baseline in (row.name for row in main_rows() if row.group in BASELINE_GROUPS):
                theirs = context.row(study, backbone, baseline)
                if ours is None or theirs is None:
                    continue
                for metric in ("benchmark_avg", "mt_bench"):
                    published = context.published("table4", backbone, {"row": online}, metric) - context.published(
                        "table4", backbone, {"row": baseline}, metric
                    )
                    label = f"{_label(context, online)} - {_label(context, baseline)}"
                    comparisons.append(
                        Comparison(backbone, label, metric, _difference(ours, theirs), HIGHER, published=published)
                    )
    return comparisons


def _reserve_rate(context: Context, study: str) -> list[Comparison]:
    """C5: down to p ~ 5e-4 each online optimizer stays within a margin of its default p; at the smallest p, OnTIES
    loses more than OnDARE (it breaks down first)."""
    spec = context.preset["studies"][study]
    comparisons = []
    for backbone in spec["backbones"]:
        drops = {}
        for method in spec["methods"]:
            sweep = context.sweep(study, backbone, method)
            default = float(context.preset["methods"][method]["reserve_p"])
            if default not in sweep:
                continue
            for p in sorted(value for value in sweep if ROBUST_DOWN_TO <= value < default):
                for metric, margin in MARGINS.items():
                    label = f"{_label(context, method)} p={p:g} - p={default:g}"
                    terms = _difference(sweep[p], sweep[default])
                    comparisons.append(Comparison(backbone, label, metric, terms, NOT_LOWER, margin=margin))
            smallest = min(sweep)
            drops[method] = (sweep[smallest], sweep[default], smallest)
        if set(ONLINE) <= set(drops):
            (ties_low, ties_default, p_ties), (dare_low, dare_default, p_dare) = drops["onties"], drops["ondare"]
            terms = ((1.0, ties_low), (-1.0, ties_default), (-1.0, dare_low), (1.0, dare_default))
            label = f"OnTIES' change at p={p_ties:g} - OnDARE's at p={p_dare:g} (each from its default p)"
            comparisons += [Comparison(backbone, label, metric, terms, LOWER) for metric in MARGINS]
    return comparisons


def _step_gap(context: Context, study: str) -> list[Comparison]:
    """C6: the largest step-K gap gives a lower reward than K = 1 (reward falls toward AdamW's as K grows)."""
    spec = context.preset["studies"][study]
    comparisons = []
    for backbone in spec["backbones"]:
        for method in spec["methods"]:
            sweep = context.sweep(study, backbone, method)
            smallest, largest = min(sweep), max(sweep)
            label = f"{_label(context, method)} K={largest:g} - K={smallest:g}"
            terms = _difference(sweep[largest], sweep[smallest])
            comparisons.append(Comparison(backbone, label, "mt_bench", terms, LOWER))
    return comparisons


def _other_losses(context: Context, study: str) -> list[Comparison]:
    """C7: with IPO and KTO, each online optimizer above AdamW on both axes (Table 3)."""
    spec = context.preset["studies"][study]
    comparisons = []
    for backbone in spec["backbones"]:
        for loss in spec.get("losses", ["dpo"]):
            adamw = context.row(study, backbone, "adamw", loss)
            for online in ONLINE:
                ours = context.row(study, backbone, online, loss)
                if ours is None or adamw is None:
                    continue
                for metric in ("benchmark_avg", "mt_bench"):
                    published = context.published("table3", backbone, {"group": loss, "row": online}, metric)
                    published -= context.published("table3", backbone, {"group": loss, "row": "adamw"}, metric)
                    label = f"{loss.upper()}: {_label(context, online)} - AdamW"
                    comparisons.append(
                        Comparison(backbone, label, metric, _difference(ours, adamw), HIGHER, published=published)
                    )
    return comparisons


def _merging_weight(context: Context, study: str) -> list[Comparison]:
    """C8: the largest merging weight alpha is worse than the smallest on both axes (Table 2)."""
    spec = context.preset["studies"][study]
    paper = context.published_table("table2")
    paper_alphas = sorted({float(label.removeprefix("alpha=")) for label in paper["label"]})
    comparisons = []
    for backbone in spec["backbones"]:
        for method in spec["methods"]:
            sweep = context.sweep(study, backbone, method)
            smallest, largest = min(sweep), max(sweep)
            for metric in ("benchmark_avg", "mt_bench"):
                keys = {"row": method}
                published = context.published(
                    "table2", backbone, keys | {"label": f"alpha={paper_alphas[-1]:g}"}, metric
                )
                published -= context.published(
                    "table2", backbone, keys | {"label": f"alpha={paper_alphas[0]:g}"}, metric
                )
                label = f"{_label(context, method)} alpha={largest:g} - alpha={smallest:g}"
                terms = _difference(sweep[largest], sweep[smallest])
                comparisons.append(Comparison(backbone, label, metric, terms, LOWER, published=published))
    return comparisons


def _small_beta(context: Context, study: str) -> list[Comparison]:
    """C9: at the smallest DPO beta, OnTIES' reward stays above the SFT reference's and AdamW's falls below it."""
    spec = context.preset["studies"][study]
    comparisons = []
    for backbone in spec["backbones"]:
        reference = (Checkpoint(backbone, "sft").path,)
        for method, expected in (("onties", HIGHER), ("adamw", LOWER)):
            if method not in spec["methods"]:
                continue
            sweep = context.sweep(study, backbone, method)
            smallest = min(sweep)
            published = math.nan
            if method == "adamw":
                published = FIGURE4_ADAMW_MT_BENCH - context.published(
                    "table4", backbone, {"row": "reference"}, "mt_bench"
                )
            label = f"{_label(context, method)} at beta={smallest:g} - Reference"
            terms = _difference(sweep[smallest], reference)
            comparisons.append(Comparison(backbone, label, "mt_bench", terms, expected, published=published))
    return comparisons


CLAIMS = (
    Claim(
        "C1",
        "Offline interpolation with the SFT model trades reward for benchmark score: along the interpolation weight "
        "reward falls and Benchmark Avg. rises, monotonically within noise.",
        ("interpolation",),
        _interpolation,
    ),
    Claim(
        "C2",
        "OnDARE and OnTIES reach a higher reward (MT-Bench, AlpacaEval LC) than AdamW.",
        ("precision", "table1"),
        _online_against_adamw(("mt_bench", "alpacaeval2_lc")),
    ),
    Claim(
        "C3",
        "OnDARE and OnTIES keep a higher Benchmark Avg. than AdamW (less alignment tax).",
        ("precision", "table1"),
        _online_against_adamw(("benchmark_avg",)),
    ),
    Claim(
        "C4",
        "OnDARE and OnTIES do better, on Benchmark Avg. and on MT-Bench, than every regularisation and offline "
        "merging baseline of Table 1.",
        ("table1",),
        _online_against_baselines,
    ),
    Claim(
        "C5",
        "The online optimizers stay robust as the reserve rate p falls to about 5e-4, and OnTIES breaks down first.",
        ("figure2",),
        _reserve_rate,
    ),
    Claim(
        "C6",
        "As the step-K gap grows, reward falls toward AdamW's.",
        ("figure3",),
        _step_gap,
    ),
    Claim(
        "C7",
        "The gains over AdamW hold for IPO and KTO (Table 3).",
        ("table3",),
        _other_losses,
    ),
    Claim(
        "C8",
        "Too large a merging weight alpha destroys the model; the best alpha is small (Table 2).",
        ("table2",),
        _merging_weight,
    ),
    Claim(
        "C9",
        "With a small DPO beta, OnTIES keeps the reward above the reference where AdamW falls below it (Figure 4).",
        ("figure4",),
        _small_beta,
    ),
    Claim(
        "C10",
        "(The mechanism; the paper implies it, tests it nowhere.) The gain comes from merging with tau_r, not from "
        "surviving bf16 rounding: in pure bf16 OnDARE beats OnDARE with alpha = 0 (the same sparse, 1/p-scaled updates "
        "without the merge), and in fp32, where no update rounds away, OnDARE still beats AdamW.",
        ("precision",),
        _merge_not_rounding,
    ),
)


# ---- judging ----------------------------------------------------------------------------------------------------


def outcome(expected: str, low: float, high: float, margin: float = 0.0) -> str:
    """Where an interval lies against the paper's side of zero (or of minus the margin, for `not lower`)."""
    threshold = -margin if expected == NOT_LOWER else 0.0
    above, below = low > threshold, high < threshold
    if expected == LOWER:
        above, below = below, above
    return SUPPORTED if above else CONTRADICTED if below else INCONCLUSIVE


def claim_verdict(outcomes: list[tuple[str, bool]]) -> str:
    """A claim's verdict from its comparisons' (outcome, required): see the module docstring."""
    if not outcomes:
        return NOT_PLANNED
    if any(result == CONTRADICTED for result, _ in outcomes):
        return CONTRADICTED
    if all(result == SUPPORTED for result, required in outcomes if required):
        return SUPPORTED
    return INCONCLUSIVE


COLUMNS = (
    "claim",
    "verdict",
    "study",
    "backbone",
    "comparison",
    "metric",
    "seeds",
    "estimate",
    "low",
    "high",
    "level",
    "expected",
    "margin",
    "required",
    "outcome",
    "published",
    "models",
)


def verdicts(context: Context, bootstrap: PairedBootstrap) -> pd.DataFrame:
    """One record per comparison (a `not planned` claim: one record without a comparison)."""
    records = []
    for claim in CLAIMS:
        study = next((name for name in claim.studies if name in context.preset["studies"]), None)
        comparisons = claim.plan(context, study) if study else []
        if not comparisons:
            records.append(
                dict.fromkeys(COLUMNS, "") | {"claim": claim.id, "verdict": NOT_PLANNED, "study": study or ""}
            )
            continue
        level = 1 - (1 - FAMILY_LEVEL) / len(comparisons)
        rows = []
        for comparison in comparisons:
            estimate = bootstrap.contrast(comparison.terms, comparison.metric, level)
            rows.append(
                {
                    "claim": claim.id,
                    "study": study,
                    "backbone": comparison.backbone,
                    "comparison": comparison.label,
                    "metric": comparison.metric,
                    "seeds": " vs ".join(str(count) for count in estimate.seeds),
                    "estimate": estimate.value,
                    "low": estimate.low,
                    "high": estimate.high,
                    "level": level,
                    "expected": comparison.expected,
                    "margin": comparison.margin,
                    "required": comparison.required,
                    "outcome": outcome(comparison.expected, estimate.low, estimate.high, comparison.margin),
                    "published": comparison.published,
                    "models": " ".join(f"{w:+g}*[{','.join(models)}]" for w, models in comparison.terms),
                }
            )
        verdict = claim_verdict([(row["outcome"], row["required"]) for row in rows])
        records += [row | {"verdict": verdict} for row in rows]
    return pd.DataFrame(records, columns=list(COLUMNS))


# ---- between worlds ---------------------------------------------------------------------------------------------

ACROSS_WORLDS = ("C2", "C3", "C10")  # the precision study's claims, compared between its worlds
WORLD_COLUMNS = ("claim", "comparison", "metric", "world", "other_world", "estimate", "other_estimate", "difference")
WORLD_COLUMNS += ("low", "high", "level", "seeds")


def between_worlds(context: Context, bootstrap: PairedBootstrap) -> pd.DataFrame:
    """How much rebuilding a toy backbone from another seed (a second world: `builds` in the preset) moves each effect
    the headline claims rest on: the effect in one world minus the same effect in the other, with its 95% paired
    bootstrap interval (both worlds are scored on the same items, so the contrast is paired). Empty for a preset
    with one world per backbone."""
    preset = context.preset
    world = worlds.of(preset)
    records = []
    for claim in CLAIMS:
        study = next((name for name in claim.studies if name in preset["studies"]), None)
        if claim.id not in ACROSS_WORLDS or study is None:
            continue
        comparisons: dict[tuple[str, str], list[Comparison]] = {}
        for comparison in claim.plan(context, study):
            comparisons.setdefault((comparison.label, comparison.metric), []).append(comparison)
        for (label, metric), instances in comparisons.items():
            for first, other in itertools.combinations(instances, 2):
                if world.builds(preset, first.backbone) != world.builds(preset, other.backbone):
                    continue
                terms = (*first.terms, *((-weight, models) for weight, models in other.terms))
                estimate = bootstrap.contrast(terms, metric)
                mine, theirs = (bootstrap.contrast(c.terms, metric).value for c in (first, other))
                records.append(
                    {
                        "claim": claim.id,
                        "comparison": label,
                        "metric": metric,
                        "world": first.backbone,
                        "other_world": other.backbone,
                        "estimate": mine,
                        "other_estimate": theirs,
                        "difference": estimate.value,
                        "low": estimate.low,
                        "high": estimate.high,
                        "level": estimate.level,
                        "seeds": " vs ".join(str(count) for count in estimate.seeds),
                    }
                )
    return pd.DataFrame(records, columns=list(WORLD_COLUMNS))


WORLDS_NOTE = (
    "Each effect in one world minus the same effect in the other (the backbone rebuilt from another seed, as a CPU "
    "of another kind also rebuilds it), with its 95% paired bootstrap interval (the same items, each world's seeds "
    "resampled). An interval away from zero: the effect depends on the world, not only on the method."
)


# ---- rendering ----------------------------------------------------------------------------------------------------

RULE = (
    "Each comparison: a paired contrast between table rows scored on the same items (items resampled together per "
    "column or prompt, each row's seeds resampled; onmerge.paired), ours with its bootstrap interval, the paper's "
    "published value beside it where the paper prints one.",
    "A comparison is supported when its interval lies on the paper's side of zero (a robustness comparison: above "
    "minus its margin), contradicted when wholly on the other side, inconclusive otherwise. The intervals of one claim "
    "are Bonferroni-adjusted to a 95% family level.",
    "A claim is contradicted if any comparison is, supported if every required comparison is (steps of a curve can "
    "only contradict), inconclusive otherwise; not planned if the preset has no study for it.",
    "Seeds: the number of seeds behind each term of the contrast (1 vs 1: only the items are resampled, so training "
    "noise is not in the interval).",
)


def document(frame: pd.DataFrame, preset: Mapping[str, Any], across: pd.DataFrame | None = None) -> list[Part]:
    """The verdicts as headings, bullets and grids: a summary, each claim's comparisons, then (given `across`,
    `between_worlds`) how much the headline effects move between worlds."""
    statements = {claim.id: claim.statement for claim in CLAIMS}
    parts: list[Part] = [("heading", f"Verdicts: the paper's claims — preset `{preset['name']}`")]
    parts += [("bullet", line) for line in RULE]
    summary = []
    for claim_id, records in frame.groupby("claim", sort=False):
        first = records.iloc[0]
        planned = first["verdict"] != NOT_PLANNED
        counts = records["outcome"].value_counts() if planned else {}
        tally = ", ".join(f"{counts.get(kind, 0)} {kind}" for kind in (SUPPORTED, INCONCLUSIVE, CONTRADICTED))
        seeds = ", ".join(sorted(set(records["seeds"]))) if planned else ""
        line = [claim_id, statements[claim_id], first["verdict"], first["study"], seeds, tally if planned else ""]
        summary.append([(text, 0) for text in line])
    parts.append(Grid("Summary", ["Claim", "Statement", "Verdict", "Study", "Seeds", "Comparisons"], summary, 0))
    for claim_id, records in frame.groupby("claim", sort=False):
        first = records.iloc[0]
        if first["verdict"] == NOT_PLANNED:
            continue
        lines = []
        for record in records.to_dict("records"):
            digits = DIGITS.get(record["metric"], 2)
            ours = f"{record['estimate']:+.{digits}f} [{record['low']:+.{digits}f}, {record['high']:+.{digits}f}]"
            paper = "n/a" if math.isnan(record["published"]) else f"{record['published']:+.{digits}f}"
            expected = record["expected"] + (f" than -{record['margin']:g}" if record["expected"] == NOT_LOWER else "")
            kind = "" if record["required"] else " (shape)"
            cells = [
                record["backbone"],
                record["comparison"],
                LABELS.get(record["metric"], record["metric"]),
                expected + kind,
                record["outcome"],
                record["seeds"],
                ours,
                paper,
            ]
            lines.append([(text, 0) for text in cells])
        title = f"{claim_id} — {first['verdict']} (level {first['level']:.4f} per comparison): {statements[claim_id]}"
        header = ["Backbone", "Comparison", "Metric", "Paper's side", "Outcome", "Seeds", "Ours [interval]", "Paper"]
        parts.append(Grid(title, header, lines, 3))
    if across is not None and len(across):
        parts += [("heading", "Between worlds: how much a rebuilt backbone moves each effect"), ("bullet", WORLDS_NOTE)]
        lines = []
        for record in across.to_dict("records"):
            digits = DIGITS.get(record["metric"], 2)
            cells = [
                record["claim"],
                record["comparison"],
                LABELS.get(record["metric"], record["metric"]),
                f"{record['world']} - {record['other_world']}",
                record["seeds"],
                f"{record['estimate']:+.{digits}f}",
                f"{record['other_estimate']:+.{digits}f}",
                f"{record['difference']:+.{digits}f} [{record['low']:+.{digits}f}, {record['high']:+.{digits}f}]",
            ]
            lines.append([(text, 0) for text in cells])
        header = ["Claim", "Effect", "Metric", "Worlds", "Seeds", "First world", "Second world", "Difference [95%]"]
        parts.append(Grid("The headline effects in each world", header, lines, 3))
    return parts


def write(frame: pd.DataFrame, preset: Mapping[str, Any], out_dir: Path, across: pd.DataFrame) -> None:
    """`verdicts.md`, `verdicts.csv` (one record per comparison), `verdicts_worlds.csv` (`between_worlds`) and
    `verdicts.html` (the report's), atomically."""
    from onmerge.atomic import write_text

    parts = document(frame, preset, across)
    write_text(Path(out_dir) / "verdicts.md", markdown(parts))
    write_text(Path(out_dir) / "verdicts.csv", frame.to_csv(index=False))
    write_text(Path(out_dir) / "verdicts_worlds.csv", across.to_csv(index=False))
    write_text(Path(out_dir) / "verdicts.html", html(parts))
