"""Paired bootstrap contrasts: hand-computed cases, scipy's bootstrap, the paper's category weighting, seeds."""

import numpy as np
import pytest
from scipy import stats

from onmerge.aggregate import PAPER_COLUMNS
from onmerge.items import Items
from onmerge.paired import MeanMeasure, PairedBootstrap, metric_weights
from onmerge.toyworld.judge import WinRateMeasure, length_controlled_win_rates


def column(scores, ids=None) -> MeanMeasure:
    scores = np.asarray(scores, dtype=float)
    ids = ids or tuple(f"doc-{index}" for index in range(len(scores)))
    return MeanMeasure(Items(tuple(ids), scores, np.ones(len(scores))))


def bootstrap(models: dict, **options) -> PairedBootstrap:
    return PairedBootstrap(lambda path: models[path], **options)


def test_two_items_give_the_hand_computed_interval():
    # Paired differences 0 and 1: a resample's mean is 0 (p = 1/4), 0.5 (1/2) or 1 (1/4), so the 2.5th and 97.5th
    # percentiles are exactly 0 and 1, and the estimate is 0.5.
    models = {"a": {"gsm8k_acc": column([1.0, 1.0])}, "b": {"gsm8k_acc": column([1.0, 0.0])}}
    estimate = bootstrap(models).contrast([(1.0, ("a",)), (-1.0, ("b",))], "gsm8k_acc")
    assert (estimate.value, estimate.low, estimate.high) == (0.5, 0.0, 1.0)
    assert estimate.seeds == (1, 1) and estimate.level == 0.95


def test_a_constant_paired_difference_has_no_width_where_quadrature_would_be_wide():
    rng = np.random.default_rng(0)
    control = rng.uniform(0, 1, 50)
    models = {"a": {"gsm8k_acc": column(control + 0.1)}, "b": {"gsm8k_acc": column(control)}}
    estimate = bootstrap(models).contrast([(1.0, ("a",)), (-1.0, ("b",))], "gsm8k_acc")
    assert estimate.value == pytest.approx(0.1)
    assert estimate.low == pytest.approx(0.1) and estimate.high == pytest.approx(0.1)
    unpaired = np.hypot(*(np.std(x, ddof=1) / np.sqrt(50) for x in (control + 0.1, control)))
    assert unpaired > 0.05  # what Table 1 used to print


def test_matches_scipy_paired_percentile_bootstrap():
    rng = np.random.default_rng(1)
    a, b = rng.binomial(1, 0.6, 300).astype(float), rng.binomial(1, 0.5, 300).astype(float)
    ours = bootstrap({"a": {"mbpp_pass1": column(a)}, "b": {"mbpp_pass1": column(b)}}).contrast(
        [(1.0, ("a",)), (-1.0, ("b",))], "mbpp_pass1"
    )
    theirs = stats.bootstrap(
        (a, b),
        lambda x, y, axis: x.mean(axis=axis) - y.mean(axis=axis),
        paired=True,
        vectorized=True,
        method="percentile",
        n_resamples=10_000,
        random_state=np.random.default_rng(2),
    ).confidence_interval
    assert ours.value == pytest.approx(a.mean() - b.mean())
    width = theirs.high - theirs.low
    assert ours.low == pytest.approx(theirs.low, abs=0.03 * width)
    assert ours.high == pytest.approx(theirs.high, abs=0.03 * width)


def full_model(shift: dict[str, float], n: int = 20, seed: int = 0) -> dict[str, MeanMeasure]:
    """All 14 columns on the same noisy items, each column shifted by `shift` (default 0)."""
    rng = np.random.default_rng(seed)
    base = {name: rng.uniform(0, 1, n) for name in PAPER_COLUMNS}
    return {name: column(base[name] + shift.get(name, 0.0)) for name in PAPER_COLUMNS}


@pytest.mark.parametrize(
    "shifted, metric, expected",
    [
        ("mmlu_acc", "benchmark_avg", 0.3 / 7),  # Knowledge has one column: a seventh of the average
        ("gsm8k_acc", "benchmark_avg", 0.3 / 21),  # Math has three: a twenty-first
        ("humaneval_pass1", "benchmark_avg", 0.3 / 28),  # Code has four
        ("gsm8k_acc", "math", 0.1),
        ("gsm8k_acc", "code", 0.0),
    ],
)
def test_categories_and_the_average_weight_columns_as_the_paper_does(shifted, metric, expected):
    models = {"a": full_model({shifted: 0.3}), "b": full_model({})}
    estimate = bootstrap(models).contrast([(1.0, ("a",)), (-1.0, ("b",))], metric)
    assert estimate.value == pytest.approx(expected)
    assert estimate.low == pytest.approx(expected) and estimate.high == pytest.approx(expected)


def test_metric_weights_sum_to_one_and_unknown_metrics_are_refused():
    assert sum(metric_weights("benchmark_avg").values()) == pytest.approx(1.0)
    assert metric_weights("agent") == {"agent_nous_function_call_acc": 1.0}
    with pytest.raises(ValueError, match="no paired estimate"):
        metric_weights("alpacaeval2_raw")


def test_seeds_are_the_outer_level():
    # Three seeds of the treatment, identical but for offsets 0, 1, 2 on every item; one control seed. Seed means of
    # a resample run from 0 (all three draws seed 0: p = 1/27 > 2.5%) to 2, so the interval is [0, 2].
    items = np.linspace(0, 1, 10)
    models = {f"t{s}": {"mt_bench": column(items + s)} for s in range(3)} | {"c": {"mt_bench": column(items)}}
    estimate = bootstrap(models).contrast([(1.0, ("t0", "t1", "t2")), (-1.0, ("c",))], "mt_bench")
    assert estimate.value == pytest.approx(1.0)
    assert (estimate.low, estimate.high) == pytest.approx((0.0, 2.0))
    assert estimate.seeds == (3, 1)


def test_items_are_paired_by_id_not_by_position_and_must_match():
    ids = ("x", "y", "z")
    models = {
        "a": {"gsm8k_acc": column([1.0, 0.0, 0.0], ids)},
        "b": {"gsm8k_acc": column([0.0, 0.0, 1.0], tuple(reversed(ids)))},  # the same scores, listed backwards
        "c": {"gsm8k_acc": column([1.0, 0.0], ("x", "w"))},
    }
    same = bootstrap(models).contrast([(1.0, ("a",)), (-1.0, ("b",))], "gsm8k_acc")
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="different items"):
        bootstrap(models).contrast([(1.0, ("a",)), (-1.0, ("c",))], "gsm8k_acc")
    with pytest.raises(ValueError, match="no per-item outcomes for 'mt_bench'"):
        bootstrap(models).contrast([(1.0, ("a",)), (-1.0, ("b",))], "mt_bench")


def test_reruns_give_the_same_numbers_and_the_level_widens_the_interval():
    models = {"a": full_model({"coqa_acc": 0.05}, seed=3), "b": full_model({}, seed=4)}
    terms = [(1.0, ("a",)), (-1.0, ("b",))]
    first, again = (bootstrap(models).contrast(terms, "benchmark_avg") for _ in range(2))
    assert first == again
    wide = bootstrap(models).contrast(terms, "benchmark_avg", level=0.999)
    assert wide.low < first.low and wide.high > first.high
    with pytest.raises(ValueError, match="level"):
        bootstrap(models).contrast(terms, "benchmark_avg", level=1.0)


def test_the_win_rate_is_refit_in_every_resample():
    outcomes = np.array([1.0, 1.0, 0.5, 0.0, 1.0, 0.0, 1.0, 0.5])
    lengths = np.array([3.0, -2.0, 0.0, 4.0, 1.0, -1.0, 6.0, 0.0])
    measure = WinRateMeasure(tuple(map(str, range(8))), outcomes, lengths)
    assert measure.value == pytest.approx(float(length_controlled_win_rates(outcomes, lengths)))
    draws = np.array([np.arange(8), np.zeros(8, dtype=int), np.array([0, 0, 3, 3, 5, 5, 6, 7])])
    expected = [float(length_controlled_win_rates(outcomes[row], lengths[row])) for row in draws]
    assert measure.resampled(draws) == pytest.approx(expected)
    assert measure.resampled(draws)[1] > 99  # every draw a win: the refit follows the resample
