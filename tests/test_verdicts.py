"""Verdicts on the paper's claims: the rule for each outcome, the comparisons each claim plans, and a whole run of
the rule on the hand-made results of test_tables (exact paired differences, two seeds)."""

import math

import pandas as pd
import pytest
from test_tables import PAPER, hand_made_bootstrap, hand_made_preset, hand_made_results

from onmerge import verdicts
from onmerge.config import load_preset
from onmerge.tables.results import Results
from onmerge.verdicts import CONTRADICTED, HIGHER, INCONCLUSIVE, LOWER, NOT_LOWER, NOT_PLANNED, SUPPORTED


@pytest.mark.parametrize(
    "expected, low, high, margin, result",
    [
        (HIGHER, 0.1, 0.5, 0.0, SUPPORTED),
        (HIGHER, -0.5, -0.1, 0.0, CONTRADICTED),
        (HIGHER, -0.1, 0.2, 0.0, INCONCLUSIVE),
        (LOWER, -0.5, -0.1, 0.0, SUPPORTED),
        (LOWER, 0.1, 0.5, 0.0, CONTRADICTED),
        (LOWER, -0.1, 0.2, 0.0, INCONCLUSIVE),
        (NOT_LOWER, -0.9, 0.5, 1.0, SUPPORTED),  # within the margin
        (NOT_LOWER, -1.5, -1.1, 1.0, CONTRADICTED),  # surely worse than the margin
        (NOT_LOWER, -1.2, 0.3, 1.0, INCONCLUSIVE),
    ],
)
def test_each_outcome_of_a_comparison(expected, low, high, margin, result):
    assert verdicts.outcome(expected, low, high, margin) == result


@pytest.mark.parametrize(
    "outcomes, verdict",
    [
        ([], NOT_PLANNED),
        ([(SUPPORTED, True), (SUPPORTED, True)], SUPPORTED),
        ([(SUPPORTED, True), (INCONCLUSIVE, False)], SUPPORTED),  # a shape check that does not contradict
        ([(SUPPORTED, True), (INCONCLUSIVE, True)], INCONCLUSIVE),
        ([(SUPPORTED, True), (CONTRADICTED, False)], CONTRADICTED),  # a step against the curve
        ([(SUPPORTED, True), (SUPPORTED, True), (CONTRADICTED, True)], CONTRADICTED),  # one counter-example
    ],
)
def test_a_claim_needs_every_instance_and_falls_to_one_counter_example(outcomes, verdict):
    assert verdicts.claim_verdict(outcomes) == verdict


@pytest.fixture(scope="module")
def hand_made():
    context = verdicts.Context(hand_made_preset(), hand_made_results(), PAPER)
    return verdicts.verdicts(context, hand_made_bootstrap())


def rows(frame: pd.DataFrame, claim: str) -> pd.DataFrame:
    return frame[frame["claim"] == claim]


def test_hand_made_verdicts_each_outcome(hand_made):
    by_claim = hand_made.groupby("claim", sort=False)["verdict"].first().to_dict()
    assert by_claim == {
        "C1": NOT_PLANNED,  # no interpolation study
        "C2": SUPPORTED,  # OnDARE 55/57 against AdamW 50/52: higher on every seed draw
        "C3": SUPPORTED,
        "C4": CONTRADICTED,  # KL's best setting (60/62) and DARE (58/60) are above OnDARE
        "C5": NOT_PLANNED,
        "C6": NOT_PLANNED,
        # IPO: OnDARE 33/35 above AdamW 30/32; KTO: OnDARE 34/36 below AdamW 36/38, but a draw of seeds ties them
        # (OnDARE's seed 1 twice, AdamW's seed 0 twice: p = 1/16), so the interval reaches zero
        "C7": INCONCLUSIVE,
        "C8": SUPPORTED,  # alpha 1e-4 (10) far below alpha 1e-7 (55)
        "C9": NOT_PLANNED,
        "C10": NOT_PLANNED,
    }
    c2 = rows(hand_made, "C2").set_index("metric")
    assert list(c2.index) == ["mt_bench", "alpacaeval2_lc"] and (c2["level"] == 0.975).all()
    # MT-Bench is a tenth of the level: OnDARE's seed means 5.5-5.7 against AdamW's 5.0-5.2, exactly paired.
    assert c2.loc["mt_bench", "estimate"] == pytest.approx(0.5)
    assert (c2.loc["mt_bench", "low"], c2.loc["mt_bench", "high"]) == pytest.approx((0.3, 0.7))
    assert c2.loc["mt_bench", "seeds"] == "2 vs 2"
    assert c2.loc["mt_bench", "published"] == pytest.approx(7.3 - 7.18)  # Qwen1.5-7B's OnDARE - AdamW
    kto = rows(hand_made, "C7").query("comparison == 'KTO: OnDARE - AdamW' and metric == 'benchmark_avg'").iloc[0]
    assert (kto["estimate"], kto["high"], kto["outcome"]) == (pytest.approx(-2.0), pytest.approx(0.0), INCONCLUSIVE)
    assert kto["published"] == pytest.approx(58.6 - 58.3)
    c4 = rows(hand_made, "C4")
    assert set(c4["comparison"]) == {f"OnDARE - {row}" for row in ("KL", "Linear", "DARE", "TIES")}
    assert len(c4) == 8 and (c4["level"] == pytest.approx(1 - 0.05 / 8)).all()
    assert math.isnan(rows(hand_made, "C8")["published"].iloc[0])  # the published sweep is another backbone's


def test_verdicts_are_written_with_their_rule_and_summary(hand_made, tmp_path):
    verdicts.write(hand_made, hand_made_preset(), tmp_path, pd.DataFrame(columns=list(verdicts.WORLD_COLUMNS)))
    text = (tmp_path / "verdicts.md").read_text()
    assert "| C5 | " in text and "| not planned |" in text
    assert "## C4 — contradicted" in text and "## C7 — inconclusive" in text and "Bonferroni" in text
    kto = "| qwen1.5-7b | KTO: OnDARE - AdamW | Benchmark Avg. | higher | inconclusive |"
    assert f"{kto} 2 vs 2 | -2.0 [-4.0, +0.0] | +0.3 |" in text
    assert pd.read_csv(tmp_path / "verdicts.csv")["claim"].nunique() == 10
    assert "<table>" in (tmp_path / "verdicts.html").read_text()


def test_the_toy_preset_plans_every_claim_from_its_studies():
    preset = load_preset("toy")
    context = verdicts.Context(preset, Results(pd.DataFrame(columns=["path", "metric", "value", "stderr"])), PAPER)
    planned = {
        claim.id: claim.plan(context, next(s for s in claim.studies if s in preset["studies"]))
        for claim in verdicts.CLAIMS
        if claim.id != "C4"  # picks searched rows by their results
    }
    assert {claim: len(comparisons) for claim, comparisons in planned.items()} == {
        "C1": 14,  # 2 metrics x (the merge nearest the SFT model against AdamW, and 6 steps SFT -> 0.1 ... -> AdamW)
        "C2": 8,  # OnTIES, OnDARE x MT-Bench, AlpacaEval LC, in the precision study's pure bf16, in two worlds
        "C3": 4,
        "C5": 6,  # p = 1e-3 against p = 0.01 for each optimizer x 2 metrics, and OnTIES' drop against OnDARE's
        "C6": 2,
        "C7": 8,
        "C8": 2,
        "C9": 2,
        "C10": 8,  # per world: OnDARE - its alpha = 0 in bf16, OnDARE - AdamW in fp32, x Benchmark Avg., MT-Bench
    }
    headline = planned["C2"][0]
    assert headline.terms[0][1] == tuple(
        f"qwen-s/regime~small-step-bf16/dpo/onties/beta~0.1_p~0.01_alpha~3.6e-06_k~1/seed~{s}" for s in range(3)
    )
    assert headline.terms[1][1] == tuple(f"qwen-s/regime~small-step-bf16/dpo/adamw/beta~0.1/seed~{s}" for s in range(3))
    assert headline.label == "OnTIES - AdamW (small-step-bf16)"
    assert headline.published == pytest.approx(4.74 - 4.59)  # Qwen1.5-1.8B, the backbone qwen-s mirrors
    assert {c.backbone for c in planned["C2"]} == {"qwen-s", "qwen-s-w1"}
    merge, fp32 = planned["C10"][0], planned["C10"][2]
    assert merge.label == "OnDARE - OnDARE, alpha = 0 (small-step-bf16)"
    assert merge.terms[1][1][0] == "qwen-s/regime~small-step-bf16/dpo/ondare/beta~0.1_p~0.01_alpha~0_k~1/seed~0"
    assert fp32.label == "OnDARE - AdamW (small-step)" and fp32.expected == "higher"
    steps = [c for c in planned["C1"] if not c.required]
    assert steps[0].terms == (
        (1.0, ("qwen-s/sft",)),
        (-1.0, ("qwen-s/dpo/adamw/beta~0.1/seed~0/merge/linear/weight~0.1",)),
    )
    assert all(len(models) == 1 for c in planned["C1"] for _, models in c.terms)  # the study merges seed 0 only
    ties_first = planned["C5"][-1]
    assert [weight for weight, _ in ties_first.terms] == [1.0, -1.0, -1.0, 1.0] and ties_first.expected == LOWER
    assert planned["C9"][1].published == pytest.approx(6.25 - 6.97)  # Figure 4's AdamW against Qwen1.5-7B's reference


def test_a_rerun_writes_the_same_bytes(hand_made, tmp_path):
    again = verdicts.verdicts(verdicts.Context(hand_made_preset(), hand_made_results(), PAPER), hand_made_bootstrap())
    no_worlds = pd.DataFrame(columns=list(verdicts.WORLD_COLUMNS))
    verdicts.write(hand_made, hand_made_preset(), tmp_path / "first", no_worlds)
    verdicts.write(again, hand_made_preset(), tmp_path / "second", no_worlds)
    for name in ("verdicts.md", "verdicts.csv", "verdicts.html"):
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes()
