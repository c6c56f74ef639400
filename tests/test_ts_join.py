"""Subsequence joins (normalcy.timeseries.join): the engine equals a brute-force search, the
window comes from the period, new data is joined against the training data, and the batch
form (`_batch_variable_scores`) equals the reading-by-reading stream."""

from __future__ import annotations

import math

import numpy as np
import pytest

from normalcy.core.checks import assert_same_scores
from normalcy.timeseries import SubsequenceJoin
from normalcy.timeseries.baselines import ab_join
from normalcy.timeseries.join import FALLBACK_WINDOW, nearest, period


def _brute_force(series, end, first, last, m, normalize):
    def z(w):
        sd = w.std()
        return np.zeros(m) if sd <= 1e-8 * (abs(w.mean()) + 1) else (w - w.mean()) / sd

    q = series[end - m + 1 : end + 1]
    best = math.inf
    for j in range(first, last + 1):
        r = series[j : j + m]
        best = min(best, float(np.linalg.norm(z(r) - z(q) if normalize else r - q)))
    return best


@pytest.mark.parametrize("normalize", [False, True])
def test_nearest_equals_a_brute_force_search(normalize):
    rng = np.random.default_rng(0)
    series = np.cumsum(rng.normal(size=300)) + 1e4  # a level far above the wiggle
    series[100:130] = 2.0  # constant stretches exercise the flat-subsequence convention
    series[200:215] = 2.0
    m = 12
    ends = np.arange(40, 300, 3)
    first = np.maximum(ends - 150, 0)
    last = ends - m - 3
    got = nearest(series, ends, first, last, m, normalize)
    want = [_brute_force(series, e, f, l, m, normalize) for e, f, l in zip(ends, first, last)]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    # an empty candidate range has no neighbour
    assert nearest(series, np.array([50]), np.array([10]), np.array([9]), m, normalize)[0] == math.inf


def test_period_is_the_autocorrelation_peak_and_noise_has_none():
    rng = np.random.default_rng(1)
    t = np.arange(2000)
    assert period(np.sin(2 * np.pi * t / 37) + 0.2 * rng.normal(size=t.size)) == 37
    assert period(rng.normal(size=2000)) == FALLBACK_WINDOW
    # several variables: the periods found, not the noise
    both = np.c_[np.sin(2 * np.pi * t / 24), rng.normal(size=t.size)]
    assert period(both) == 24


def _seasonal(n, seed, period_=30):
    rng = np.random.default_rng(seed)
    return np.sin(2 * np.pi * np.arange(n) / period_) + 0.05 * rng.normal(size=n)


def test_new_data_is_joined_against_the_training_data():
    train = _seasonal(600, 0)
    test = _seasonal(300, 1)
    test[150:160] = test[150:160][::-1] * 0.2  # a cycle of a shape never seen
    det = SubsequenceJoin().fit(train[:, None])
    assert det.window_ == 30  # the period of the training data
    scores = det.decision_function(test[:, None])
    assert 150 <= int(np.argmax(scores)) < 160 + det.window_
    assert scores[150:190].max() > 3 * np.median(scores)
    # the training-set join without learning the test part (the `ab-join` baseline) agrees
    baseline = ab_join(train[:, None], test[:, None])
    assert 150 <= int(np.argmax(baseline)) < 160 + det.window_


def test_a_repeat_of_new_behaviour_is_no_longer_news_in_the_stream():
    train = _seasonal(400, 2)
    test = _seasonal(400, 3)
    odd = np.linspace(0, 3, 30)
    test[100:130] = odd
    test[300:330] = odd  # the same novelty again
    scores = SubsequenceJoin(window=30).fit(train[:, None]).decision_function(test[:, None])
    assert scores[325:335].max() < 0.5 * scores[125:135].max()
    # the pure AB-join against the training data scores both alike
    baseline = ab_join(train[:, None], test[:, None])
    assert baseline[329] == pytest.approx(baseline[129], rel=0.05)


@pytest.mark.parametrize("normalize", [False, True])
def test_batch_equals_the_stream_across_the_memory_filling_up(normalize):
    x = np.c_[_seasonal(500, 4), _seasonal(500, 5, 17) * 1e3 + 1e6]
    det = SubsequenceJoin(window=10, history=120, normalize=normalize).fit(x[:200])
    batch = det.explain(x[200:])
    stream = []
    for row in x[200:]:
        stream.append(det.explain_one(row).contributions[0])
        det.learn_one(row)
    assert_same_scores(np.array(stream), batch.contributions, "per-variable scores")
    assert np.isfinite(batch.scores).all() and (batch.scores > 0).mean() > 0.95
