"""Tests for normalcy.core.threshold against hand-worked scores and a brute-force F1 search."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from normalcy.core.errors import DataError
from normalcy.core.threshold import F1Optimal, FalseAlarmRate, Fixed, parse_threshold


def _flagged(scores, threshold) -> int:
    return int(np.count_nonzero(np.asarray(scores) >= threshold))


# --- FalseAlarmRate ----------------------------------------------------------------------


def test_false_alarm_rate_flags_exactly_five_of_hundred():
    scores = np.random.default_rng(0).permutation(np.arange(100.0))  # order must not matter
    t = FalseAlarmRate(0.05).compute(scores)
    assert _flagged(scores, t) == 5
    # "just above 94": 94 itself is not flagged, 95 is.
    assert 94.0 < t <= 95.0
    assert t - 94.0 < 1e-9


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
