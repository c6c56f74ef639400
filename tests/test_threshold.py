"""Tests for normalcy.core.threshold against hand-worked scores and a brute-force F1 search."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import f1_score

from normalcy.core.errors import DataError
from normalcy.core.threshold import F1Optimal, FalseAlarmRate, Fixed, parse_threshold, thresholds_of_sorted


def _flagged(scores, threshold) -> int:
    return int(np.count_nonzero(np.asarray(scores) >= threshold))


# --- FalseAlarmRate ----------------------------------------------------------------------


def test_false_alarm_rate_flags_exactly_five_of_hundred():
    scores = np.random.default_rng(0).permutation(np.arange(100.0))  # order must not matter
    t = FalseAlarmRate(0.05).compute(scores)
    assert _flagged(scores, t) == 5
    # Plotting position (n + 1)(1 - rate) = 95.95: 95 % of the way from the 95th smallest score
    # (94) to the 96th (95). The old rule put it just above 94, which flags 6/101 of new normal
    # items on average instead of 5/100 (the k-th of n leaves (n + 1 - k)/(n + 1) above it).
    assert t == pytest.approx(94.95)


def test_false_alarm_rate_zero_flags_nothing():
    scores = np.arange(100.0)
    t = FalseAlarmRate(0.0).compute(scores)
    assert _flagged(scores, t) == 0
    assert 99.0 < t < 99.0 + 1e-9


def test_false_alarm_rate_with_labels_uses_only_normals():
    normals = np.arange(100.0)
    # Anomalies far above and far below the normals would move the threshold if they counted.
    scores = np.concatenate([normals, [1000.0, 2000.0, -50.0, 94.5]])
    labels = np.r_[np.zeros(100), np.ones(4)].astype(int)
    with_labels = FalseAlarmRate(0.05).compute(scores, labels)
    assert with_labels == FalseAlarmRate(0.05).compute(normals)
    assert _flagged(normals, with_labels) == 5


def test_false_alarm_rate_with_labels_but_no_normals_raises():
    with pytest.raises(DataError, match="label 0"):
        FalseAlarmRate(0.1).compute([1.0, 2.0, 3.0], [1, 1, 1])


@pytest.mark.parametrize("rate", [0.01, 0.07, 0.1, 0.29, 0.5, 0.57, 0.58, 0.9])
def test_false_alarm_rate_is_the_largest_count_within_rate(rate):
    # Distinct scores: the strategy should flag as many as the rate allows, and no more.
    n = 100
    scores = np.random.default_rng(1).normal(size=n)
    k = _flagged(scores, FalseAlarmRate(rate).compute(scores))
    assert k / n <= rate
    assert (k + 1) / n > rate


@pytest.mark.parametrize("seed", range(5))
def test_false_alarm_rate_never_exceeds_rate_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=37).astype(float)  # heavy ties
    for rate in (0.0, 0.05, 0.2, 0.5, 0.8):
        k = _flagged(scores, FalseAlarmRate(rate).compute(scores))
        assert k / scores.size <= rate


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_false_alarm_rate_outside_range_raises(rate):
    with pytest.raises(DataError):
        FalseAlarmRate(rate)


@pytest.mark.parametrize("bad", [[1.0, float("nan"), 2.0], [1.0, float("inf")], []])
def test_false_alarm_rate_rejects_nan_inf_and_empty(bad):
    with pytest.raises(DataError):
        FalseAlarmRate(0.1).compute(bad)


def test_false_alarm_rate_caps_the_interpolation_at_the_held_out_count():
    # 1..37 at rate 0.8: position 38 * 0.2 = 7.6 lies between 7 and 8 and would flag 30 of 37
    # (0.81 > 0.8); the cap puts it just above 8, flagging floor(0.8 * 37) = 29.
    scores = np.arange(1.0, 38.0)
    t = FalseAlarmRate(0.8).compute(scores)
    assert t == np.nextafter(8.0, np.inf)
    assert _flagged(scores, t) == 29


def test_false_alarm_rate_on_uniform_scores_flags_the_rate_on_average():
    # For uniform scores the k-th of n has mean k / (n + 1), so the interpolated position
    # flags exactly `rate` of new items on average; the old order statistic flagged 6/101.
    draws = np.sort(np.random.default_rng(3).random((20000, 100)), axis=1)
    thresholds = thresholds_of_sorted(draws, 0.05)  # compute's rule, one row per held-out set
    assert [FalseAlarmRate(0.05).compute(d) for d in draws[:20]] == list(thresholds[:20])
    assert np.mean(1 - thresholds) == pytest.approx(0.05, abs=0.0006)


# --- FalseAlarmRate with fewer held-out items than 1 / rate: the tail model ---------------------


def test_tail_threshold_hand_worked_on_twenty_scores():
    # n = 20, rate 0.01: the tail is the upper quarter, k = 5 scores over u = 14 (excesses 1..5);
    # the largest excess (5) is censored at the second largest (4): total 1+2+3+4+4 = 14 over
    # d = 4 degrees of freedom; a new item exceeds u with probability 6/21 on average, so the
    # multiple c solves 6/21 * (1 + c/4) ** -4 = 0.01.
    c = 4 * ((6 / 21 / 0.01) ** 0.25 - 1)
    calibration = FalseAlarmRate(0.01).calibrate(np.arange(20.0))
    assert calibration.threshold == pytest.approx(14 + c * 14 / 4)
    assert calibration.method == "exponential tail model"
    assert calibration.n_items == 20 and calibration.flagged == 0.0


def test_tail_threshold_counts_only_excesses_above_ties():
    # Eighteen zeros and 1, 2: u = 0 and two scores lie above it (d = 1, total 1 + 1 censored).
    scores = np.r_[np.zeros(18), 1.0, 2.0]
    c = 1 * ((3 / 21 / 0.01) ** 1 - 1)
    assert FalseAlarmRate(0.01).compute(scores) == pytest.approx(0 + c * 2 / 1)


@pytest.mark.parametrize("scores", [np.zeros(10), np.r_[np.zeros(9), 1.0], [3.0], [1.0, 2.0]])
def test_no_spread_above_the_tail_base_gives_just_above_the_largest_with_a_note(scores):
    calibration = FalseAlarmRate(0.01).calibrate(scores)
    assert calibration.threshold == np.nextafter(np.max(scores), np.inf)
    assert calibration.method == "largest held-out score"
    assert "too few distinct values" in calibration.note


def test_tail_threshold_flags_the_rate_on_average_for_exponential_scores():
    # The predictive multiple is exact for exponential scores: averaged over held-out sets,
    # a new item exceeds the threshold with probability `rate` (here exp(-t) for Exp(1)).
    # The largest score flags 1/11 and the provisional plug-in tail about 3x the rate.
    rng = np.random.default_rng(4)
    for n, rate in ((10, 0.01), (40, 0.01), (10, 0.05)):
        draws = np.sort(rng.exponential(size=(40000, n)), axis=1)
        thresholds = thresholds_of_sorted(draws, rate)  # compute's rule, one row per held-out set
        assert [FalseAlarmRate(rate).compute(d) for d in draws[:20]] == list(thresholds[:20])
        assert np.mean(np.exp(-thresholds)) == pytest.approx(rate, rel=0.06)


def test_tail_threshold_converges_to_the_true_quantile():
    # 5,000 exponential scores cannot resolve rate 1e-4 empirically (n * rate = 0.5), but the
    # tail does: the true quantile is -log(1e-4) = 9.21.
    scores = np.random.default_rng(5).exponential(size=5000)
    assert FalseAlarmRate(1e-4).compute(scores) == pytest.approx(-math.log(1e-4), rel=0.05)


@pytest.mark.parametrize("n, rate", [(20, 0.01), (50, 0.05), (200, 0.01)])
def test_one_outlying_held_out_score_does_not_move_the_threshold(n, rate):
    # The largest held-out score set the old threshold (a bright normal image: recall 0.08).
    # Now it is censored (tail) or beyond the interpolation (n * rate >= 2): moving it far out
    # leaves the threshold where it was.
    scores = np.random.default_rng(6).normal(size=n)
    before = FalseAlarmRate(rate).compute(scores)
    outlying = scores.copy()
    outlying[np.argmax(scores)] += 1000.0
    assert FalseAlarmRate(rate).compute(outlying) == before
    assert before < np.max(outlying) - 900


@pytest.mark.parametrize("rate, needed", [(0.01, 100), (0.05, 20), (0.03, 34), (0.3, 4)])
def test_note_exactly_when_the_held_out_count_cannot_resolve_the_rate(rate, needed):
    scores = np.random.default_rng(7).normal(size=needed)
    short = FalseAlarmRate(rate).calibrate(scores[:-1])
    assert short.note.startswith(f"{needed - 1} held-out normal items cannot resolve a false-alarm rate of "
                                 f"{rate:g} (that needs at least {needed})")
    assert f"hold out {needed} or more" in short.note
    enough = FalseAlarmRate(rate).calibrate(scores)
    assert enough.note is None and enough.method == "empirical quantile"
    assert FalseAlarmRate(rate).resolved_by(needed) and not FalseAlarmRate(rate).resolved_by(needed - 1)


@pytest.mark.parametrize("n, rate", [(7, 0.01), (30, 0.01), (100, 0.05), (37, 0.8)])
def test_flagged_share_is_the_held_out_share_at_or_above_the_threshold(n, rate):
    scores = np.round(np.random.default_rng(8).normal(size=n), 1)  # ties too
    calibration = FalseAlarmRate(rate).calibrate(scores)
    assert calibration.flagged == np.count_nonzero(scores >= calibration.threshold) / n
    assert calibration.n_items == n and calibration.rule == f"fpr:{rate:g}"


@pytest.mark.parametrize("low", [1e307, -1.7e308])
@pytest.mark.parametrize("n, rate", [(10, 0.01), (10, 0.5), (200, 0.05)])
def test_threshold_stays_finite_near_the_float_limit(low, n, rate):
    # A model file refuses a non-finite threshold, and spreads near 2 * DBL_MAX overflow.
    scores = np.r_[np.linspace(low, 0.0, n // 2), np.linspace(1e307, 1.7e308, n - n // 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = FalseAlarmRate(rate).compute(scores)
    assert math.isfinite(t) and low <= t


# --- F1Optimal -----------------------------------------------------------------------------


def _brute_force_f1_threshold(labels, scores) -> tuple[float, float]:
    """Every distinct score as a candidate threshold; ties in F1 go to the lowest threshold."""
    best_f1, best_t = -1.0, None
    for t in np.unique(scores):  # ascending
        f1 = f1_score(labels, (scores >= t).astype(int), zero_division=0)
        if f1 > best_f1 + 1e-12:
            best_f1, best_t = f1, float(t)
    return best_f1, best_t


@pytest.mark.parametrize("seed", range(6))
def test_f1_optimal_matches_brute_force_search(seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random(60) < 0.35).astype(int)
    labels[:2] = [0, 1]
    scores = np.round(labels * 1.0 + rng.normal(size=60), 1)  # rounded: ties occur
    best_f1, best_t = _brute_force_f1_threshold(labels, scores)
    t = F1Optimal().compute(scores, labels)
    assert t == best_t
    assert f1_score(labels, (scores >= t).astype(int)) == pytest.approx(best_f1)


def test_f1_optimal_on_separable_scores_flags_exactly_the_anomalies():
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.9])
    labels = np.array([0, 0, 0, 1, 1])
    t = F1Optimal().compute(scores, labels)
    np.testing.assert_array_equal((scores >= t).astype(int), labels)


def test_f1_optimal_needs_labels():
    with pytest.raises(DataError, match="labels"):
        F1Optimal().compute([0.1, 0.2])


def test_f1_optimal_rejects_nan_scores():
    with pytest.raises(DataError):
        F1Optimal().compute([0.1, float("nan"), 0.3], [0, 1, 1])


# --- Fixed and parse_threshold ---------------------------------------------------------------


def test_fixed_ignores_the_scores():
    assert Fixed(2.5).compute([100.0, 200.0]) == 2.5
    assert Fixed(-1).compute() == -1.0
    assert isinstance(Fixed(3).compute(), float)


def test_fixed_nan_raises():
    with pytest.raises(DataError):
        Fixed(float("nan"))


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("fpr:0.01", FalseAlarmRate(0.01)),
        ("fpr:0", FalseAlarmRate(0.0)),
        ("fpr", FalseAlarmRate(0.01)),
        ("f1", F1Optimal()),
        ("  f1 ", F1Optimal()),
        ("fixed:2.5", Fixed(2.5)),
        ("fixed:-3", Fixed(-3.0)),
    ],
)
def test_parse_threshold_good_specs(spec, expected):
    assert parse_threshold(spec) == expected


@pytest.mark.parametrize(
    "spec",
    ["", "fpr:abc", "fpr:1", "fpr:1.5", "fpr:-0.1", "fpr:nan", "f1:0.5", "fixed", "fixed:",
     "fixed:abc", "fixed:nan", "pct:5", "0.01"],
)
def test_parse_threshold_bad_specs_raise_data_error(spec):
    with pytest.raises(DataError):
        parse_threshold(spec)


@pytest.mark.parametrize("strategy", [FalseAlarmRate(0.05), FalseAlarmRate(0.0), F1Optimal(), Fixed(2.5)])
def test_spec_round_trips_through_parse_threshold(strategy):
    assert parse_threshold(strategy.spec()) == strategy


def test_strategy_threshold_reproduces_flags_via_calibrate_scores():
    # The threshold a strategy returns is what a detector stores and predicts with.
    from normalcy.core.results import Prediction

    scores = np.arange(20.0)
    t = FalseAlarmRate(0.1).compute(scores)
    pred = Prediction.from_scores(scores, t)
    assert pred.labels.sum() == math.floor(0.1 * 20)
    np.testing.assert_array_equal(pred.labels, (scores >= 18).astype(np.int8))
