"""Matrix profile: the causal left profile equals a brute-force search, and a discord in one of
three variables is flagged and named."""

from __future__ import annotations

import math

import numpy as np
import pytest

from normalcy.core.errors import DataError
from normalcy.timeseries import MatrixProfile


def _brute_force(series: np.ndarray, t: int, m: int, history: int, normalize: bool) -> float:
    """Nearest earlier subsequence to the one ending at t, by a plain loop."""
    start = t - m + 1
    first = max(0, t - history)  # the detector remembers `history` readings before t
    excl = math.ceil(m / 4)
    q = series[start : t + 1]
    best = math.inf
    for j in range(first, start - excl):
        s = series[j : j + m]
        if normalize:
            flat_q, flat_s = np.ptp(q) == 0, np.ptp(s) == 0
            if flat_q and flat_s:
                d = 0.0
            elif flat_q or flat_s:
                d = math.sqrt(m)
            else:
                d = float(np.linalg.norm((q - q.mean()) / q.std() - (s - s.mean()) / s.std()))
        else:
            d = float(np.linalg.norm(q - s))
        best = min(best, d)
    return best


@pytest.mark.parametrize("normalize", [False, True])
def test_left_profile_equals_brute_force(normalize):
    rng = np.random.default_rng(0)
    series = np.cumsum(rng.normal(size=160))
    series[60:75] = 2.0  # constant stretches exercise the flat-subsequence convention
    series[100:112] = 2.0
    m, history = 8, 50
    det = MatrixProfile(history=history, window=m, normalize=normalize, warmup=12)
    for t in range(12, len(series)):
        past = series[max(0, t - history) : t, None]
        got = det.distances(past, series[t : t + 1])[0]
        assert got == pytest.approx(_brute_force(series, t, m, history, normalize), abs=1e-9)


def test_no_neighbour_outside_the_exclusion_zone_is_nan():
    det = MatrixProfile(window=8)
    past = np.arange(9.0)[:, None]  # 10 readings: the only earlier starts are within the zone
    assert np.isnan(det.distances(past, np.array([9.0]))).all()


def test_a_discord_in_one_of_three_variables_is_flagged_and_named():
    rng = np.random.default_rng(1)
    t = np.arange(1500)
    x = np.c_[np.sin(2 * np.pi * t / 40), np.cos(2 * np.pi * t / 25), np.sin(2 * np.pi * t / 60)]
    x += 0.05 * rng.normal(size=x.shape)
    x[1200:1215, 2] = x[1199, 2]  # the third variable freezes for 15 readings
    det = MatrixProfile(history=500, likelihood=False).fit(x[:600])
    explanation = det.explain(x[600:])
    scores, per_variable = explanation.scores, explanation.contributions
    top = int(np.argmax(scores)) + 600
    assert 1200 <= top < 1200 + 15 + det.window
    assert int(np.argmax(per_variable[top - 600])) == 2
    assert scores[top - 600] > 3 * scores[: 1200 - 600].max()


def test_shape_only_profile_ignores_a_level_shift_that_plain_distance_flags():
    t = np.arange(800)
    x = np.sin(2 * np.pi * t / 32)
    x[600:] += 5.0
    plain = MatrixProfile(history=300, likelihood=False).score_causal(x)
    shape = MatrixProfile(history=300, likelihood=False, normalize=True).score_causal(x)
    # the 16 subsequences straddling the jump are new shapes; after them the shape repeats
    assert plain[600:700].max() > 10 and plain[640:700].max() > 10  # a new level is still far
    assert shape[620:700].max() < 1.0


def test_window_too_large_for_history_is_an_error():
    with pytest.raises(DataError, match="history"):
        MatrixProfile(history=20, window=18).fit(np.zeros(50))
