"""The NAB scorer against values worked out by hand from NAB's published method."""

from __future__ import annotations

import math

import numpy as np
import pytest

from normalcy.timeseries.nab import PROFILES, nab_scores, probation_length, raw_score, scaled_sigmoid, sweep, weigh_file

STD = PROFILES["standard"]
N, WINDOW = 100, (40, 49)  # probation: floor(0.15 * 100) = 15 rows
MAX_TP = 2 / (1 + math.exp(-5)) - 1  # S(-1) = 0.98661


def _scores(*flagged):
    s = np.zeros(N)
    s[list(flagged)] = 1.0
    return s


def test_scaled_sigmoid_matches_nab_reference_points():
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.0) == -1.0
    assert probation_length(100) == 15 and probation_length(10_000) == 750


@pytest.mark.parametrize("flagged, expected", [
    ((), -1.0),                                      # a missed window costs fn
    ((40,), 1.0),                                    # left edge: the full tp
    ((49,), (2 / (1 + math.exp(-0.5)) - 1) / MAX_TP),  # right edge: p = -1/10
    ((45, 40), 1.0),                                 # only the earliest detection counts
    ((20,), -1.0 - 0.11),                            # false alarm before any window: -fp
    ((5,), -1.0),                                    # inside probation: ignored
    ((40, 60), 1.0 + 0.11 * (2 / (1 + math.exp(5 * 11 / 9)) - 1)),  # p = |49 - 60| / 9 after the window
])
def test_raw_scores_of_hand_made_detections(flagged, expected):
    f = weigh_file(_scores(*flagged), [WINDOW], STD)
    assert raw_score([f], 0.5, STD["fn"]) == pytest.approx(expected, abs=1e-9)


def test_sweep_picks_the_best_corpus_threshold():
    # Two files: a high score at a window start and a middling false alarm elsewhere.
    a = np.zeros(N); a[40] = 0.9; a[70] = 0.5
    b = np.zeros(N); b[20] = 0.7
    files = [weigh_file(a, [WINDOW], STD), weigh_file(b, [WINDOW], STD)]
    threshold, raw = sweep(files, STD["fn"])
    assert threshold == 0.9
    assert raw == pytest.approx(1.0 - 1.0)
    for t in (0.0, 0.5, 0.7, 0.9, 2.0):  # the sweep agrees with direct scoring everywhere
        assert raw_score(files, t, 1.0) <= raw + 1e-12


def test_normalised_scores_of_null_perfect_and_half_detectors():
    runs = [(_scores(), [WINDOW]), (_scores(40), [WINDOW])]
    scores = nab_scores(runs)
    assert scores["standard"]["score"] == pytest.approx(50.0)
    assert nab_scores([(_scores(40), [WINDOW])])["reward_low_FN_rate"]["score"] == pytest.approx(100.0)
    assert nab_scores([(_scores(), [WINDOW])])["standard"]["score"] == pytest.approx(0.0)
    # Flagging everything: the window is found at once, every other scorable row is a false alarm.
    everything = nab_scores([(np.ones(N), [WINDOW])])
    f = weigh_file(np.ones(N), [WINDOW], PROFILES["reward_low_FP_rate"])
    assert everything["reward_low_FP_rate"]["raw"] == pytest.approx(max(-1.0, raw_score([f], 1.0, 1.0)))
