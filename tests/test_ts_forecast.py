"""GBT forecast: TreeSHAP attributions add up to the forecast the score used, they name the
lag that drives a variable, a jump in one of three variables is flagged, named and explained
in words, and the calendar features keep streaming equal to batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from normalcy.core.checks import assert_same_scores
from normalcy.core.errors import DataError
from normalcy.timeseries import GBTForecast

pytest.importorskip("lightgbm")


def _driven(n=700, seed=0):
    """b follows a two readings later; c is its own noisy rhythm."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = np.r_[0.0, 0.0, a[:-2]] + 0.05 * rng.normal(size=n)
    return np.c_[a, b, np.sin(2 * np.pi * np.arange(n) / 30) + 0.1 * rng.normal(size=n)]


def _small(**kw):
    return GBTForecast(**{"history": 400, "refit_every": 200, "n_estimators": 30, **kw})


def test_attributions_add_up_to_the_forecast_and_match_the_scores():
    x = _driven()
    det = _small().fit(x[:450])
    ex = det.explain_forecast(x[450:])
    # TreeSHAP additivity: expected value + contributions = the trees' output (forecast - baseline),
    # where the forecast is the one the score was computed from (LightGBM's plain predict).
    np.testing.assert_allclose(ex.expected + ex.contributions.sum(axis=2), ex.forecast - ex.baseline, atol=1e-9)
    np.testing.assert_allclose(ex.residual, x[450:] - ex.forecast)
    explanation = det.explain(x[450:])
    assert_same_scores(ex.scores, explanation.scores)
    assert_same_scores(ex.per_variable, explanation.contributions)
    # explaining leaves the state as it was
    assert_same_scores(det.decision_function(x[450:]), explanation.scores)


def test_top_feature_of_a_driven_variable_is_its_driver_lag():
    x = _driven()
    det = _small().fit(x[:450])
    ex = det.explain_forecast(x[450:])
    tops = [ex.top(i, k=1, variable="x1")[0][0] for i in range(len(ex.scores))]
    assert ex.features[0][:2] == ["x0[t-1]", "x0[t-2]"]
    assert tops.count("x0[t-2]") > 0.75 * len(tops)  # b is a two readings ago
    # the forecast of b is good: its residual is close to the noise added to it
    assert np.std(ex.residual[:, 1]) < 0.3 < np.std(x[450:, 1])


def test_a_jump_in_one_of_three_variables_is_flagged_and_named():
    x = _driven(900, seed=1)
    x[800, 2] += 3.0
    det = _small(likelihood=False).fit(x[:450])
    explanation = det.explain(x[450:])
    scores, per_variable = explanation.scores, explanation.contributions
    assert int(np.argmax(scores)) + 450 == 800
    assert int(np.argmax(per_variable[800 - 450])) == 2
    assert scores[800 - 450] > 2 * scores[: 800 - 450].max()  # clearly above every earlier score
    ex, i = det.explain_forecast(x[450:]), 800 - 450
    assert ex.top(i, k=3) == ex.top(i, k=3, variable="x2")  # by default, the flagged variable's forecast
    assert ex.residual[i, 2] > 2.0
    # the evidence says it in words: the flagged variable, its reading and forecast, the features
    (evidence,) = explanation.evidence[i]
    assert evidence.startswith(f"x2: reading {x[800, 2]:.6g}, forecast {ex.forecast[i, 2]:.6g}")
    assert ex.top(i, k=1)[0][0] in evidence


def test_calendar_features_and_streaming_with_timestamps():
    n = 24 * 30
    t = pd.date_range("2024-01-01", periods=n, freq="h")
    rng = np.random.default_rng(2)
    load = np.where((t.hour >= 9) & (t.hour < 17), 10.0, 1.0) + 0.1 * rng.normal(size=n)
    frame = pd.DataFrame({"load": load}, index=t)
    det = _small(lags=2).fit(frame.iloc[:500])
    assert det.explain_forecast(frame.iloc[500:510]).features[0][-2:] == ["hour of day", "day of week"]
    batch = det.decision_function(frame.iloc[500:])
    stream = []
    for when, value in frame.iloc[500:]["load"].items():
        stream.append(det.score_one([value], t=when))
        det.learn_one([value], t=when)
    assert_same_scores(stream, batch)


def test_missing_lightgbm_or_bad_parameters_are_clear_errors():
    with pytest.raises(DataError, match="history"):
        GBTForecast(history=12, lags=8).fit(np.zeros(50))
    with pytest.raises(DataError, match="num_leaves"):
        GBTForecast(num_leaves=1).fit(np.zeros(50))
