"""Tests for normalcy.timeseries.metrics against hand-worked values, published examples,
scikit-learn and the reference implementations (TSB-AD, PATE, prts).

The reference packages pin numpy < 2 (and PATE 0.1.1 imports a scikit-learn helper removed
in 1.8), so they are not dependencies: tests that call them are skipped unless importable,
and a few values they computed are pinned below so that every run checks against them.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from sklearn import metrics as skm

from normalcy.core.errors import DataError
from normalcy.timeseries.metrics import (
    affiliation_precision,
    affiliation_recall,
    auc_pr,
    auc_roc,
    event_f1,
    pate,
    pate_f1,
    point_adjusted_f1,
    range_f1,
    range_precision,
    range_recall,
    ranges,
    vus_pr,
    vus_roc,
)

SCORE_METRICS = [auc_roc, auc_pr, vus_roc, vus_pr, pate]
PREDICTION_METRICS = [pate_f1, range_precision, range_recall, range_f1, affiliation_precision,
                      affiliation_recall, event_f1, point_adjusted_f1]


def _series(spans, n):
    labels = np.zeros(n, dtype=int)
    for a, b in spans:
        labels[a:b] = 1
    return labels


def _pinned_case():
    """Deterministic 300-point series (no RNG) on which the references were run."""
    n = 300
    i = np.arange(n)
    labels = _series([(40, 55), (120, 123), (200, 240), (290, 300)], n)
    scores = ((i * 37) % 101) / 100 + 0.5 * labels + 0.3 * np.exp(-(((i - 130) / 8.0) ** 2))
    return labels, scores, (scores > 0.9).astype(int)


def _random_case(seed, n=300, n_ranges=5):
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=int)
    for a in rng.integers(0, n - 30, n_ranges):
        labels[a:a + rng.integers(1, 30)] = 1
    labels[0] = 0
    # Informative, partly tied scores that also rise just around each range.
    scores = np.round(labels * 0.7 + rng.normal(scale=0.6, size=n)
                      + np.convolve(labels, np.ones(15) / 15, "same"), 2)
    return labels, scores


# --- ranges ----------------------------------------------------------------------------


def test_ranges_hand_cases():
    assert ranges([0, 1, 1, 0, 1]) == [(1, 3), (4, 5)]
    assert ranges([1, 1, 0, 0, 1, 1]) == [(0, 2), (4, 6)]
    assert ranges(np.zeros(4, dtype=bool)) == []
    assert all(isinstance(v, int) for r in ranges([0, 1]) for v in r)


# --- AUC and VUS -----------------------------------------------------------------------


def test_auc_matches_sklearn():
    labels, scores = _random_case(0)
    assert auc_roc(labels, scores) == pytest.approx(skm.roc_auc_score(labels, scores))
    assert auc_pr(labels, scores) == pytest.approx(skm.average_precision_score(labels, scores))


@pytest.mark.parametrize("seed", [1, 2])
def test_vus_without_buffer_is_auc_for_a_single_range(seed):
    # Buffer 0 adds no soft labels, so TP = flagged anomalies, P' = P and, with one range,
    # the existence factor is 1 whenever TP > 0. With one threshold per rank (n_thresholds=n)
    # and distinct scores the curves are the ordinary ROC and PR curves: VUS-ROC = AUC-ROC
    # (trapezoids from (0,0) to (1,1)) and VUS-PR = sum dRecall * precision = AP.
    rng = np.random.default_rng(seed)
    labels = _series([(60, 90)], 200)
    scores = labels * 0.8 + rng.normal(size=200)
    assert vus_roc(labels, scores, window=0, n_thresholds=200) == pytest.approx(
        skm.roc_auc_score(labels, scores))
    assert vus_pr(labels, scores, window=0, n_thresholds=200) == pytest.approx(
        skm.average_precision_score(labels, scores))


def test_vus_hand_worked_buffer():
    # labels 0 1 1 0 0 0 (range = points 1-2, P = 2, n = 6); only point 3, just after the
    # range, scores high. n_thresholds=2 takes the top score (flags {3}) and the bottom one
    # (flags everything). window=2 averages buffers b = 0, 1, 2.
    # b = 0 and b = 1 (margin b // 2 = 0): {3}: TP 0, TPR 0, FPR 1/4, precision 0;
    #   all: TP 2, TPR 1, FPR 1, precision 1/3.
    #   ROC (0,0) (1/4,0) (1,1) (1,1): area 3/4 * 1/2 = 3/8.  PR: 1 * 1/3 = 1/3.
    # b = 2 (margin 1, weight r = sqrt(1 - 1/2)): points 0 and 3 get soft label r.
    #   {3}: TP = r, P' = (2 + 2 + r) / 2, TPR t1 = r / P' (the extended range [0,3] is hit),
    #        FPR f1 = (1 - r) / (6 - P'), precision r.
    #   all: TP = 2 + 2r, P' = 2 + r, TPR = min(TP / P', 1) = 1,
    #        FPR f2 = (6 - TP) / (6 - P'), precision (2 + 2r) / 6.
    #   ROC area: f1 t1 / 2 + (f2 - f1)(t1 + 1) / 2 + (1 - f2).  PR: t1 r + (1 - t1)(2 + 2r)/6.
    labels = np.array([0, 1, 1, 0, 0, 0])
    scores = np.array([0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    r = math.sqrt(0.5)
    p1, p2 = (4 + r) / 2, 2 + r
    t1, f1, f2 = r / p1, (1 - r) / (6 - p1), (6 - 2 - 2 * r) / (6 - p2)
    roc2 = f1 * t1 / 2 + (f2 - f1) * (t1 + 1) / 2 + (1 - f2)
    pr2 = t1 * r + (1 - t1) * (2 + 2 * r) / 6
    assert vus_roc(labels, scores, window=2, n_thresholds=2) == pytest.approx(
        (2 * 3 / 8 + roc2) / 3)
    assert vus_pr(labels, scores, window=2, n_thresholds=2) == pytest.approx(
        (2 * 1 / 3 + pr2) / 3)


def test_vus_pinned_tsb_ad_values():
    # TSB-AD 1.5: generate_curve(labels, scores, w)[-2:] (VUS-ROC, VUS-PR), thre=250.
    labels, scores, _ = _pinned_case()
    assert vus_roc(labels, scores, window=10) == pytest.approx(0.8840545732449082, abs=1e-12)
    assert vus_pr(labels, scores, window=10) == pytest.approx(0.7517560440160821, abs=1e-12)
    assert vus_roc(labels, scores) == pytest.approx(0.9658599271900778, abs=1e-12)
    assert vus_pr(labels, scores) == pytest.approx(0.9151560975659735, abs=1e-12)


@pytest.mark.parametrize("seed", [3, 4])
def test_vus_matches_tsb_ad(seed):
    tsb = pytest.importorskip("TSB_AD.evaluation.basic_metrics")
    labels, scores = _random_case(seed)
    for window in (0, 5, 24):
        expected = tsb.generate_curve(labels, scores, window)
        assert vus_roc(labels, scores, window) == pytest.approx(expected[-2], abs=1e-12)
        assert vus_pr(labels, scores, window) == pytest.approx(expected[-1], abs=1e-12)


def test_vus_10k_points_is_fast():
    # The reference loops in Python (about 6 s here); the vectorised version must not.
    rng = np.random.default_rng(5)
    labels = np.zeros(10_000, dtype=int)
    for a in rng.choice(9_900, 20, replace=False):
        labels[a:a + 50] = 1
    scores = rng.random(10_000) + 0.3 * labels
    start = time.perf_counter()
    vus_pr(labels, scores)
    assert time.perf_counter() - start < 3.0


# --- PATE ------------------------------------------------------------------------------


def test_pate_f1_hand_worked():
    # One range, points 8-11 (L = 4, centre c = 9.5), buffers 2 -> zones: early [6, 7], delay
    # [12, 13]. Predicted: 7 (early), 9 and 10 (inside), 12 (delay).
    # Zone weights: 7 -> 1 - (9.5 - 7) / (9.5 - 6) = 2/7; 12 -> 1 - (12 - 9.5) / (13 - 9.5) = 2/7.
    # Missed: 8 (offset 0) and 11 (offset 3); first detected run 9-10 has length m = 2, so
    # offset 0 <= m weighs 1 and offset 3 weighs 1 - (m+1)(3 - m/2) / (L(L-1)/2) = 0: FN = 1.
    # (0,0): 7 and 12 are false alarms: TP 2 of 4 flagged, R = 2/3, F1 = 4/7.
    # (0,2) and (2,0): one zone point adds 2/7: TP = 16/7, P = 4/7, R = 16/23, F1 = 32/51.
    # (2,2): TP = 18/7, P = 9/14, R = 18/25, F1 = 36/53.
    labels = _series([(8, 12)], 20)
    predictions = np.zeros(20, dtype=int)
    predictions[[7, 9, 10, 12]] = 1
    expected = (4 / 7 + 32 / 51 + 32 / 51 + 36 / 53) / 4
    assert pate_f1(labels, predictions, early_buffer=2, delay_buffer=2) == pytest.approx(expected)


def test_pate_hand_worked():
    # Range = points 4-5 (c = 4.5), n = 10, buffers 2: early zone [2, 3], delay zone [6, 7].
    # Scores: 4 -> .9, 6 -> .8, 5 -> .7, rest 0, so thresholds flag in turn
    # S1 = {4}, S2 = {4, 6}, S3 = {4, 5, 6}, S4 = all. FN: S1, S2 miss point 5 at offset 1,
    # inside the first run's reach (m = 1), weight 1; S3, S4 miss nothing.
    # Without a delay zone point 6 is a false alarm: (R, P) = (1/2, 1), (1/2, 1/2), (1, 2/3),
    #   (1, .2); from (0, 1) the area is 1/2 * 1 + 1/2 * (1/2 + 2/3) / 2 = 19/24.
    # With it, point 6 weighs 1 - 1.5 / 2.5 = .4: S2 -> TP 1.4, P .7, R 1.4 / 2.4 = 7/12;
    #   S3 -> TP 2.4, P .8, R 1: area 1/2 + (1/12)(1 + .7)/2 + (5/12)(.7 + .8)/2 = 53/60.
    # The early zone changes only S4, which adds no area: mean = (19/24 + 53/60) / 2.
    labels = _series([(4, 6)], 10)
    scores = np.zeros(10)
    scores[[4, 6, 5]] = [0.9, 0.8, 0.7]
    assert pate(labels, scores, early_buffer=2, delay_buffer=2) == pytest.approx(
        (19 / 24 + 53 / 60) / 2)


def test_pate_drops_points_where_recall_falls():
    # Range = points 2-13 (L = 12, offsets 0-11, max distance L(L-1)/2 = 66), no buffers.
    # Thresholds flag S1 = offsets 2-7, then S2 = S1 + offset 0, then everything (n = 20).
    # S1: first run from offset 2, length 6: missed 0, 1 weigh 1; 8-11 weigh
    #   1 - 7 (o - 3) / 66 = 31, 24, 17, 10 / 66. FN = 214/66, R1 = 6 / (6 + 214/66) = 198/305.
    # S2: the first run is now offset 0 alone (length 1): 1 weighs 1, 8-11 weigh
    #   1 - 2 (o - 0.5) / 66 = 51, 49, 47, 45 / 66. FN = 258/66, R2 = 7 / (7 + 258/66) = 0.6417,
    #   below R1, so (R2, 1) is dropped (keeping it would add (R2 - R1) * 1 < 0 of area).
    # All: R 1, precision 12/20. Area: R1 * 1 + (1 - R1)(1 + 0.6) / 2 = 0.8 + 0.2 R1.
    labels = _series([(2, 14)], 20)
    scores = np.zeros(20)
    scores[4:10] = 0.9
    scores[2] = 0.8
    assert pate(labels, scores, 0, 0) == pytest.approx(0.8 + 0.2 * 198 / 305)


def test_pate_pinned_reference_values():
    # PATE 0.1.1: PATE(labels, scores[, 10, 20]) and PATE(..., binary_scores=True).
    labels, scores, predictions = _pinned_case()
    assert pate(labels, scores) == pytest.approx(0.8382877882528335, abs=1e-12)
    assert pate(labels, scores, 10, 20) == pytest.approx(0.7717361967816161, abs=1e-12)
    assert pate_f1(labels, predictions) == pytest.approx(0.6982289570500719, abs=1e-12)
    assert pate_f1(labels, predictions, 10, 20) == pytest.approx(0.6370004253050711, abs=1e-12)


@pytest.mark.parametrize("seed", [6, 7])
def test_pate_matches_reference(seed):
    reference = pytest.importorskip("pate.PATE_metric")
    labels, scores = _random_case(seed, n=200)
    predictions = (scores > np.quantile(scores, 0.85)).astype(int)
    for early, delay in ((100, 100), (4, 15)):
        assert pate(labels, scores, early, delay) == pytest.approx(
            reference.PATE(labels, scores, early, delay), abs=1e-12)
        assert pate_f1(labels, predictions, early, delay) == pytest.approx(
            reference.PATE(labels, predictions, early, delay, binary_scores=True), abs=1e-12)


# --- range-based (Tatbul et al.) -------------------------------------------------------

# True ranges R1 = points 2-5 (L = 4) and R2 = 9-10; predicted P1 = 1-2, P2 = 4, P3 = 12.
RANGE_LABELS = _series([(2, 6), (9, 11)], 14)
RANGE_PREDICTIONS = _series([(1, 3), (4, 5), (12, 13)], 14)


def test_range_recall_hand_worked():
    # R1 has points 2 and 4 predicted, R2 nothing. Position weights in R1 (positions 1-4):
    # flat 1,1,1,1 -> 2/4; front 4,3,2,1 -> (4+2)/10; back 1,2,3,4 -> (1+3)/10;
    # middle 1,2,2,1 -> (1+2)/6. Recall = (R1's score + 0) / 2.
    for bias, r1 in (("flat", 0.5), ("front", 0.6), ("back", 0.4), ("middle", 0.5)):
        assert range_recall(RANGE_LABELS, RANGE_PREDICTIONS, bias=bias) == pytest.approx(r1 / 2)
    # alpha = 0.5 adds half an existence reward for R1: (0.5 + 0.5 * 0.5) / 2.
    assert range_recall(RANGE_LABELS, RANGE_PREDICTIONS, alpha=0.5) == pytest.approx(0.375)
    # R1 overlaps two predicted ranges: reciprocal cardinality halves its share.
    assert range_recall(RANGE_LABELS, RANGE_PREDICTIONS,
                        cardinality="reciprocal") == pytest.approx(0.125)


def test_range_precision_and_f1_hand_worked():
    # P1 (points 1-2) is half inside R1, P2 fully, P3 not at all: (1/2 + 1 + 0) / 3 = 1/2.
    # Front bias on P1 (weights 2, 1) credits only its second point: (1/3 + 1 + 0) / 3.
    assert range_precision(RANGE_LABELS, RANGE_PREDICTIONS) == pytest.approx(0.5)
    assert range_precision(RANGE_LABELS, RANGE_PREDICTIONS, bias="front") == pytest.approx(4 / 9)
    # F1 of P = 1/2 and R = 1/4: 2 * (1/8) / (3/4) = 1/3.
    assert range_f1(RANGE_LABELS, RANGE_PREDICTIONS) == pytest.approx(1 / 3)


def test_range_pinned_prts_values():
    # prts 1.0.0.3: ts_precision(l, p, 0, 'reciprocal', 'front'),
    # ts_recall(l, p, 0.2, 'reciprocal', 'back').
    labels, _, predictions = _pinned_case()
    assert range_precision(labels, predictions, "reciprocal", "front") == pytest.approx(
        0.4935897435897436, abs=1e-12)
    assert range_recall(labels, predictions, 0.2, "reciprocal", "back") == pytest.approx(
        0.4616637102734663, abs=1e-12)


@pytest.mark.parametrize("seed", [8, 9])
def test_range_metrics_match_prts(seed):
    prts = pytest.importorskip("prts")
    labels, scores = _random_case(seed)
    predictions = (scores > np.quantile(scores, 0.8)).astype(int)
    for bias in ("flat", "front", "middle", "back"):
        for cardinality in ("one", "reciprocal"):
            assert range_precision(labels, predictions, cardinality, bias) == pytest.approx(
                prts.ts_precision(labels, predictions, 0.0, cardinality, bias), abs=1e-12)
            assert range_recall(labels, predictions, 0.3, cardinality, bias) == pytest.approx(
                prts.ts_recall(labels, predictions, 0.3, cardinality, bias), abs=1e-12)
            assert range_f1(labels, predictions, 0.3, cardinality, bias) == pytest.approx(
                prts.ts_fscore(labels, predictions, p_alpha=0.0, r_alpha=0.3,
                               cardinality=cardinality, p_bias=bias, r_bias=bias), abs=1e-12)


# --- affiliation -----------------------------------------------------------------------


def test_affiliation_hand_worked():
    # n = 10, one true range [4, 6) so the zone is E = [0, 10]; prediction [7, 8).
    # Precision: x in [7, 8] is d = x - 6 in [1, 2] from the range; a random instant of E is
    # at least d away with probability ((4 - d) + (4 - d)) / 10, whose mean over d in [1, 2]
    # is 0.5. Recall: y in [4, 6] is d = 7 - y from the prediction; P(|X - y| >= d) =
    # 1 - 2d / 10 (d never exceeds y's distance to E's ends), mean over d in [1, 3]: 0.6.
    labels = _series([(4, 6)], 10)
    predictions = _series([(7, 8)], 10)
    assert affiliation_precision(labels, predictions) == pytest.approx(0.5)
    assert affiliation_recall(labels, predictions) == pytest.approx(0.6)


def test_affiliation_hand_worked_across_a_kink():
    # n = 10, true range J = [1, 3) (margins 1 left, 7 right), prediction [3, 5).
    # Precision: P(d(X, J) >= d) = ((1 - d)+ + (7 - d)) / 10 for x at d = x - 3 in [0, 2]:
    # integral 0.7 on [0, 1] and 0.55 on [1, 2], over length 2 -> 0.625.
    # Recall: y in [1, 3] is d = 3 - y from the prediction; P(|X - y| >= d) =
    # ((y - d)+ + (10 - y - d)) / 10, i.e. 0.7 while y <= 1.5 (the left side is exhausted) and
    # 1 - 2d / 10 after: 0.5 * 0.7 + (1.5 - 0.2 * 1.5^2 / 2) = 1.625, over |J| = 2 -> 0.8125.
    labels = _series([(1, 3)], 10)
    predictions = _series([(3, 5)], 10)
    assert affiliation_precision(labels, predictions) == pytest.approx(0.625)
    assert affiliation_recall(labels, predictions) == pytest.approx(0.8125)
    # The mirror image (J = [7, 9), prediction [5, 7)) puts the kinks on the other sides.
    assert affiliation_precision(labels[::-1], predictions[::-1]) == pytest.approx(0.625)
    assert affiliation_recall(labels[::-1], predictions[::-1]) == pytest.approx(0.8125)


def test_affiliation_paper_example_second_zone():
    # Huet et al. (KDD 2022) example, in seconds: true ranges [0, 10], [50, 70], [170, 175]
    # minutes; the second one's zone is [30, 120] minutes and holds the predictions
    # [40, 60] and [115, 120] (clipped from [115, 130]). The reference tests give that zone
    # precision 0.672222 and recall 0.944444. Shifted by 30 minutes, this series is that zone
    # alone: E = [0, 5400], J = [1200, 2400), predictions [600, 1800) and [5100, 5400).
    # By hand: precision = (600 inside + 400 on [600, 1200) + 8.33 on [5100, 5400)) / 1500;
    # recall = (600 inside + 533.33 on [1800, 2400)) / 1200.
    labels = _series([(1200, 2400)], 5400)
    predictions = _series([(600, 1800), (5100, 5400)], 5400)
    assert affiliation_precision(labels, predictions) == pytest.approx(0.672222222, abs=1e-9)
    assert affiliation_recall(labels, predictions) == pytest.approx(0.944444444, abs=1e-9)


def test_affiliation_pinned_reference_values():
    # TSB-AD 1.5's affiliation code (ahstat/affiliation-metrics): pr_from_events on the
    # events of predictions and labels with Trange (0, n).
    labels, _, predictions = _pinned_case()
    assert affiliation_precision(labels, predictions) == pytest.approx(0.7719113021790474,
                                                                       abs=1e-12)
    assert affiliation_recall(labels, predictions) == pytest.approx(0.9968183229813665,
                                                                    abs=1e-12)


@pytest.mark.parametrize("seed", [10, 11])
def test_affiliation_matches_reference(seed):
    aff = pytest.importorskip("TSB_AD.evaluation.affiliation.metrics")
    events = pytest.importorskip("TSB_AD.evaluation.affiliation.generics").convert_vector_to_events
    labels, scores = _random_case(seed)
    for q in (0.6, 0.9):
        predictions = (scores > np.quantile(scores, q)).astype(int)
        expected = aff.pr_from_events(events(predictions), events(labels), (0, labels.size))
        assert affiliation_precision(labels, predictions) == pytest.approx(
            expected["Affiliation_Precision"], abs=1e-12)
        assert affiliation_recall(labels, predictions) == pytest.approx(
            expected["Affiliation_Recall"], abs=1e-12)


# --- event-wise and point-adjusted F1 --------------------------------------------------


def test_event_f1_hand_worked():
    # True ranges [2, 6), [9, 11); predicted runs [1, 3) (overlaps the first), [7, 8) and
    # [12, 14) (false alarms). Recall 1/2, precision 1/3: F1 = 2 (1/6) / (5/6) = 0.4.
    labels = _series([(2, 6), (9, 11)], 14)
    predictions = _series([(1, 3), (7, 8), (12, 14)], 14)
    assert event_f1(labels, predictions) == pytest.approx(0.4)
    # A long false alarm counts once: widening [12, 14) to [11, 14) changes nothing.
    predictions[11] = 1
    assert event_f1(labels, predictions) == pytest.approx(0.4)


def test_point_adjusted_f1_hand_worked():
    # Range [1, 4) is hit at point 2, so all three of its points count; range [6, 8) is
    # missed; point 9 is a false alarm. TP 3, FP 1, FN 2: P 3/4, R 3/5, F1 = 2/3.
    labels = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0, 0])
    predictions = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    assert point_adjusted_f1(labels, predictions) == pytest.approx(2 / 3)
    # A range starting at point 0 is adjusted too (TSB-AD's loop skips index 0).
    assert point_adjusted_f1([1, 1, 1, 0], [0, 0, 1, 0]) == pytest.approx(1.0)


def test_point_adjusted_f1_inflates_a_random_detector():
    # The trap: 10 000 points, five 100-point ranges (5 %), scores pure noise. Flagging the
    # top 1 % hits each range with probability 1 - 0.99^100 ~ 0.63, and point adjustment then
    # credits the whole range: PA-F1 ~ 0.7, while VUS-PR and plain F1 stay near chance.
    rng = np.random.default_rng(12)
    labels = _series([(a, a + 100) for a in (1000, 3000, 5000, 7000, 9000)], 10_000)
    scores = rng.random(10_000)
    predictions = (scores > 0.99).astype(int)
    pa = point_adjusted_f1(labels, predictions)
    assert pa > 0.4
    assert pa > 4 * vus_pr(labels, scores)
    assert pa > 10 * skm.f1_score(labels, predictions)


# --- properties and errors -------------------------------------------------------------


def test_perfect_detector_scores_one():
    labels = _series([(0, 3), (20, 26), (40, 41), (55, 60)], 60)
    for metric in SCORE_METRICS:
        assert metric(labels, labels.astype(float)) == pytest.approx(1.0), metric.__name__
    for metric in PREDICTION_METRICS:
        assert metric(labels, labels) == pytest.approx(1.0), metric.__name__


def test_empty_prediction_scores_zero():
    labels = _series([(5, 9), (30, 32)], 50)
    empty = np.zeros(50, dtype=int)
    for metric in PREDICTION_METRICS:
        assert metric(labels, empty) == 0.0, metric.__name__


@pytest.mark.parametrize("metric", SCORE_METRICS + PREDICTION_METRICS)
def test_bad_inputs_raise_data_error(metric):
    labels = _series([(2, 4)], 10)
    with pytest.raises(DataError, match="labels"):
        metric(labels[:9], labels)
    with pytest.raises(DataError, match="labels"):
        metric(np.zeros(10, dtype=int), labels)
    with pytest.raises(DataError, match="labels"):
        metric(np.full(10, 2), labels)
    second = labels.astype(float)
    second[0] = np.nan
    name = "scores" if metric in SCORE_METRICS else "predictions"
    with pytest.raises(DataError, match=name):
        metric(labels, second)


@pytest.mark.parametrize("call, argument", [
    (lambda y: vus_pr(y, y * 1.0, window=-1), "window"),
    (lambda y: vus_roc(y, y * 1.0, n_thresholds=0), "n_thresholds"),
    (lambda y: pate(y, y * 1.0, early_buffer=1.5), "early_buffer"),
    (lambda y: pate_f1(y, y, delay_buffer=-2), "delay_buffer"),
    (lambda y: range_recall(y, y, alpha=1.5), "alpha"),
    (lambda y: range_precision(y, y, bias="end"), "bias"),
    (lambda y: range_f1(y, y, cardinality="udf_gamma"), "cardinality"),
])
def test_bad_parameters_raise_data_error(call, argument):
    with pytest.raises(DataError, match=argument):
        call(_series([(2, 4)], 10))
