"""Multi-scale range novelty against an independent pandas computation of the same
definition, and the incidents it exists for: a level shift and a flat line inside the range of
single readings, and a cooldown that still lets escalation through."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from normalcy.core.errors import DataError
from normalcy.timeseries import MultiScaleNovelty, RangeNovelty

KW = {"history": 200, "windows": (1, 6, 24), "tolerances": (0.01, 0.05, 0.1), "spread_window": 24,
      "spread_tolerance": 0.2, "warmup": 20}


def _reference(x, history, windows, tolerances, spread_window, spread_tolerance, warmup, rearm, damping):
    """Each feature as a pandas rolling series, its novelty against the rolling range of its
    own earlier values, the largest over features, then the cooldown — written independently
    of the detector's ring buffers."""
    x = pd.Series(x)
    features = [(x.rolling(w).mean(), w, t) for w, t in zip(windows, tolerances)]
    features.append((x.rolling(spread_window).std(ddof=0), spread_window, spread_tolerance))
    best = np.zeros(len(x))
    for values, span, tolerance in features:
        v = values.iloc[span - 1 :].reset_index(drop=True)
        high = v.rolling(history, min_periods=1).max().shift(1)
        low = v.rolling(history, min_periods=1).min().shift(1)
        width = np.maximum(high - low, 1e-6 * (high.abs() + 1))
        novelty = (np.maximum(np.maximum(v - high, low - v), 0) / width).fillna(0).to_numpy() / tolerance
        novelty[:warmup] = 0
        best = np.maximum(best, np.r_[np.zeros(span - 1), novelty])
    best[:warmup] = 0  # the detector's own warm-up on readings
    out, quiet = best.copy(), 0
    for t in range(len(out)):
        if quiet > 0:
            out[t] *= damping
        quiet = rearm if out[t] >= 1 else max(quiet - 1, 0)
    return out


def _series(n=900, seed=1):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.sin(2 * np.pi * t / 24) + 0.2 * rng.normal(size=n)


@pytest.mark.parametrize("rearm", [0, 40])
def test_matches_an_independent_rolling_computation(rearm):
    x = _series()
    x[500:560] += 0.8  # a level shift, so the features and the cooldown both act
    x[700] = 4.0
    scores = MultiScaleNovelty(**KW, rearm=rearm).score_causal(x)
    expected = _reference(x, KW["history"], KW["windows"], KW["tolerances"], KW["spread_window"],
                          KW["spread_tolerance"], KW["warmup"], rearm, 0.5)
    assert scores.max() > 1
    np.testing.assert_allclose(scores, expected, rtol=1e-9, atol=1e-9)


def test_finds_a_level_shift_and_a_flat_line_that_single_readings_hide():
    x = _series()
    low, high = x[:500].min(), x[:500].max()
    x[500:600] = np.clip(x[500:600] + 1.0, low + 0.01, high - 0.01)  # higher, inside the range
    x[750:850] = 0.0  # flat: every reading is inside the range
    multi = MultiScaleNovelty(**{**KW, "history": 900}, rearm=0).score_causal(x)
    single = RangeNovelty(history=600).score_causal(x)
    assert single[500:600].max() == 0 and single[750:850].max() == 0
    # The hour-like mean alerts within a few readings of the shift; the spread once the flat
    # stretch is longer than its window.
    assert (multi[500:510] >= 1).any() and (multi[750:780] >= 1).any()


def test_cooldown_damps_repeats_but_not_escalation():
    x = _series()
    x[600], x[620], x[640] = 3.0, 3.2, 8.0
    kw = {**KW, "rearm": 100, "rearm_damping": 0.5}
    damped = MultiScaleNovelty(**kw).score_causal(x)
    free = MultiScaleNovelty(**{**kw, "rearm": 0}).score_causal(x)
    assert free[600] >= 1 and free[620] >= 1
    assert damped[620] == pytest.approx(0.5 * free[620])  # the same incident, half the score
    assert damped[640] >= 1  # a much larger excursion still alerts


@pytest.mark.parametrize("bad", [{"windows": (1, 300)}, {"windows": (1, 6), "tolerances": (0.1,)},
                                 {"tolerances": (0.0, 0.1, 0.1)}, {"spread_window": 1}, {"rearm_damping": 2.0}])
def test_rejects_bad_parameters(bad):
    with pytest.raises(DataError):
        MultiScaleNovelty(**{**KW, **bad}).score_causal(_series()[:100])


def test_fit_keeps_the_threshold_at_or_above_the_alert_level(tmp_path):
    from clirunner import run_in_process

    from normalcy.core.modelfile import load

    times = pd.date_range("2024-01-01", periods=600, freq="5min")
    pd.DataFrame({"timestamp": times, "v": _series(600)}).to_csv(tmp_path / "train.csv", index=False)
    result = run_in_process("ts", "fit", str(tmp_path / "train.csv"), "--model", "multiscale-novelty",
                            "--out", str(tmp_path / "m"))
    assert result.returncode == 0, result.stderr
    model = load(tmp_path / "m")
    assert isinstance(model, MultiScaleNovelty)
    # Its hold-out scores are mostly 0, so fpr:0.01 alone would land just above 0.
    assert model.threshold_ == MultiScaleNovelty.alert_level
    assert "(threshold 2: fpr:0.01 from 120 held-out readings" in result.stdout
    assert "raised to the detector's alert level 2" in result.stdout
    explicit = run_in_process("ts", "fit", str(tmp_path / "train.csv"), "--model", "multiscale-novelty",
                              "--out", str(tmp_path / "f"), "--threshold", "fixed:0.5")
    assert explicit.returncode == 0 and load(tmp_path / "f").threshold_ == 0.5
