"""The time-series fit job (`ts fit`, Spark's fit-per-group): one causal pass equals fitting,
scoring the held-out tail and learning it; the calibration is recorded; too-short data is
refused with its minimum; constant data warns."""

from __future__ import annotations

import numpy as np
import pytest

from normalcy.core.errors import DataError
from normalcy.core.holdout import CalibrationWarning
from normalcy.core.registry import build
from normalcy.core.threshold import F1Optimal, FalseAlarmRate, Fixed
from normalcy.timeseries.data import TimeSeries
from normalcy.timeseries.workflow import MIN_HELD_OUT, ConstantSeriesWarning, fit_model, minimum_readings


def _series(n=400, seed=8, d=1):
    rng = np.random.default_rng(seed)
    values = np.sin(np.arange(n) / 7)[:, None] + 0.1 * rng.normal(size=(n, d))
    return TimeSeries(values, [f"v{j}" for j in range(d)])


def test_one_pass_equals_fit_score_then_learn_and_records_the_calibration():
    series = _series()
    one = fit_model(series, "rolling-mad", FalseAlarmRate(0.05), holdout=0.25)  # 100 resolve 5%: no warning
    two = build("timeseries", "rolling-mad").fit(series.values[:300])
    two.calibrate_scores(two.decision_function(series.values[300:]), FalseAlarmRate(0.05))
    for x in series.values[300:]:
        two.learn_one(x)
    assert one.threshold_ == two.threshold_ and one.calibration_ == two.calibration_
    assert one.calibration_.n_items == 100 and one.calibration_.rule == "fpr:0.05" and one.calibration_.note is None
    after = np.cos(np.arange(50) / 3)
    np.testing.assert_allclose(one.decision_function(after), two.decision_function(after), rtol=1e-12)


def test_the_alert_level_floors_a_false_alarm_rate_threshold_and_says_so():
    quiet = TimeSeries(np.tile([0.0, 1.0], 100)[:, None], ["v"])  # hold-out scores all 0
    with pytest.warns(CalibrationWarning, match="40 held-out"):
        detector = fit_model(quiet, "multiscale-novelty", FalseAlarmRate(0.01),
                             params={"history": 100, "windows": [1, 5, 20], "spread_window": 20})
    assert detector.threshold_ == detector.alert_level == detector.calibration_.threshold
    assert "raised to the detector's alert level 2" in detector.calibration_.method
    assert detector.calibration_.flagged == 0.0 and detector.calibration_.n_items == 40
    fixed = fit_model(quiet, "multiscale-novelty", Fixed(0.5), params={"history": 100, "windows": [1, 5, 20],
                                                                         "spread_window": 20})
    assert fixed.threshold_ == 0.5 and fixed.calibration_.rule == "fixed:0.5" and fixed.calibration_.n_items == 0


@pytest.mark.parametrize("model", ["range-novelty", "rolling-mad", "window-pca", "matrix-profile"])
@pytest.mark.parametrize("holdout", [0.1, 0.2, 0.5])
def test_the_stated_minimum_is_exactly_what_fits(model, holdout):
    ready = build("timeseries", model).ready_after()
    n = minimum_readings(ready, holdout)
    split = int(n * (1 - holdout))
    assert split >= ready and n - split >= MIN_HELD_OUT
    with pytest.raises(DataError, match=f"{n - 1} readings are too few .* at least {n} readings"):
        fit_model(_series(n - 1), model, FalseAlarmRate(0.01), holdout=holdout)
    with pytest.warns(CalibrationWarning):
        detector = fit_model(_series(n), model, FalseAlarmRate(0.01), holdout=holdout)
    assert detector.calibration_.n_items == n - split


def test_every_held_out_score_comes_from_a_warm_detector():
    """Issue 12 item 9: with 2 readings, the one held-out score was a warm-up placeholder 0,
    the threshold 5e-324, and 90% of normal readings were flagged."""
    with pytest.raises(DataError, match="2 readings are too few"):
        fit_model(_series(2), "rolling-mad", FalseAlarmRate(0.01))
    series = _series(50)  # the minimum for rolling-mad: 40 readings to warm up, 10 held out
    with pytest.warns(CalibrationWarning, match="10 held-out"):
        detector = fit_model(series, "rolling-mad", FalseAlarmRate(0.01))
    held_out = build("timeseries", "rolling-mad").score_causal(series)[40:]
    assert (held_out > 0).all() and detector.threshold_ > held_out.min()


def test_constant_variables_warn_and_other_thresholds_are_refused():
    series = _series(200, d=2)
    flat = TimeSeries(np.c_[series.values[:, 0], np.full(200, 3.0)], ["busy", "flat"])
    with pytest.warns(ConstantSeriesWarning, match="'flat' never change"):
        fit_model(flat, "rolling-mad", Fixed(3.0))
    with pytest.raises(DataError, match="f1 needs labelled anomalies"):
        fit_model(series, "rolling-mad", F1Optimal())
    with pytest.raises(DataError, match="holdout"):
        fit_model(series, "rolling-mad", FalseAlarmRate(0.01), holdout=1.0)
    with pytest.raises(DataError, match="unknown timeseries detector 'nope'"):
        fit_model(series, "nope", FalseAlarmRate(0.01))


def test_range_novelty_threshold_is_never_the_smallest_float():
    """Issue 16 item 6: held-out scores of range-novelty are mostly exactly 0, and fpr:0.01 set its
    threshold to 5e-324 (any new extreme alerted). Its alert level floors it, in its own units:
    a reading beyond its past range by `alert_level` of that range."""
    rng = np.random.default_rng(3)
    series = TimeSeries(np.sin(np.arange(400) / 7)[:, None] + 0.01 * rng.normal(size=(400, 1)), ["v"])
    with pytest.warns(CalibrationWarning):
        detector = fit_model(series, "range-novelty", FalseAlarmRate(0.01), params={"history": 200})
    assert detector.threshold_ == detector.alert_level > 1e-3
    assert "raised to the detector's alert level" in detector.calibration_.method
    remembered = series.values[-200:]  # the range is that of the last `history` readings
    peak, span = remembered.max(), np.ptp(remembered)
    barely, clearly = peak + 0.5 * detector.alert_level * span, peak + 2 * detector.alert_level * span
    assert detector.score_one([barely]) < detector.threshold_ <= detector.score_one([clearly])
