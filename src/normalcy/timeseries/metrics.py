"""Evaluation metrics for time-series anomaly detection.

Conventions: ``labels`` hold 0/1 per point and an anomalous range is a maximal run of 1s;
``scores`` are per point, higher meaning more anomalous (threshold-free metrics); binary
``predictions`` are 0/1 per point (range, affiliation and event metrics). Ranges are written
half-open, ``(start, end_exclusive)``. Every metric checks its inputs and raises `DataError`
naming the argument at fault, and every metric needs at least one anomalous range in
``labels``: recall, and every metric built on it, is undefined without one.

Why so many metrics: point-wise AUC ignores that anomalies come as ranges, while
range-aware metrics differ in how much credit a detection near or inside a range earns.
VUS-PR and PATE are threshold-free and range-aware; point-adjusted F1 is included only so
that published numbers can be reproduced, under a name that says what it does.
"""

from __future__ import annotations

import numbers

import numpy as np

from normalcy.core.errors import DataError
from normalcy.core.metrics import (
    _as_labels,
    _check_binary_task,
    _check_same_length,
    auprc,
    auroc,
)

_BIASES = ("flat", "front", "middle", "back")
_CARDINALITIES = ("one", "reciprocal")


def ranges(labels) -> list[tuple[int, int]]:
    """Anomalous ranges of a 0/1 series as ``(start, end_exclusive)`` pairs, in order."""
    starts, stops = _runs(_as_labels(labels, "labels"))
    return [(int(a), int(b)) for a, b in zip(starts, stops)]


# --- threshold-free ---------------------------------------------------------------------


def auc_roc(labels, scores) -> float:
    """Point-wise AUC-ROC (`normalcy.core.metrics.auroc`), kept here beside its range-aware
    counterparts so a time-series evaluation needs one import."""
    return auroc(labels, scores)


def auc_pr(labels, scores) -> float:
    """Point-wise AUC-PR as average precision (`normalcy.core.metrics.auprc`)."""
    return auprc(labels, scores)


def vus_roc(labels, scores, window: int = 100, n_thresholds: int = 250) -> float:
    """Volume under the range-aware ROC surface, as TSB-AD computes it (see `vus_pr`)."""
    return _vus(labels, scores, window, n_thresholds)[0]


def vus_pr(labels, scores, window: int = 100, n_thresholds: int = 250) -> float:
    """Volume under the range-aware precision-recall surface (Paparrizos et al., VLDB 2022),
    reproducing TSB-AD's ``get_metrics(...)['VUS-PR']`` (``RangeAUC_volume_opt``).

    Each anomalous range gets soft margins of ``b // 2`` points on both sides, weighted
    ``sqrt(1 - d / b)`` at distance ``d``; a range-aware precision-recall curve (recall times
    the share of margin-extended ranges hit) is traced at ``n_thresholds`` scores taken at
    evenly spaced ranks, and its area is averaged over every buffer ``b = 0 .. window``.
    So a detector is rewarded for firing close to an anomaly, not only exactly on it.

    ``window`` defaults to 100, the default of TSB-AD's ``get_metrics``. TSB-AD's own
    benchmark passes instead the series' period from its autocorrelation
    (``find_length_rank(data[:, 0], rank=1)``: the highest local maximum of the ACF at lags
    3..400 of the first 20 000 points, or 125 when that lag is outside 3..300); pass such a
    period here to match those published tables.
    """
    return _vus(labels, scores, window, n_thresholds)[1]


def pate(labels, scores, early_buffer: int = 100, delay_buffer: int = 100,
         n_thresholds: int = 250) -> float:
    """PATE (Ghorbani et al., KDD 2024): proximity-weighted area under the PR curve.

    Follows the reference ``PATE`` package (0.1.1) with its defaults: points in the
    ``early_buffer`` before a range count as partly true (weight falling linearly with
    distance to the range's centre) if the range itself is detected and as false alarms
    otherwise; points in the ``delay_buffer`` after a range are partly true either way;
    missed points of a partly detected range weigh less the later they are. The PR curve is
    traced at ``n_thresholds`` percentiles of the candidate thresholds, points where recall
    drops are removed, and the area is averaged over the buffer pairs
    {0, early_buffer} x {0, delay_buffer}. The authors suggest the series' period (from its
    autocorrelation) as buffer size; 100 is the package's default and its fallback.
    """
    y, s = _check_binary_task(labels, scores, "labels", "scores")
    early = _check_int(early_buffer, "early_buffer", 0)
    delay = _check_int(delay_buffer, "delay_buffer", 0)
    k = _check_int(n_thresholds, "n_thresholds", 1)
    thresholds = _pate_thresholds(y, s, k)
    entry = np.searchsorted(-thresholds, -s, side="left")  # first threshold flagging each point
    starts, stops = _runs(y)
    missed = _pate_missed(entry, starts, stops, k)
    areas = []
    for e, d in _pate_buffers(early, delay):
        true, flagged = _pate_true(entry, starts, stops, k, e, d)
        precision = np.concatenate(([1.0], _safe_div(true, flagged)))
        recall = np.concatenate(([0.0], _safe_div(true, true + missed)))
        # The reference drops every point whose recall is below an earlier one, so that the
        # curve can be integrated along recall.
        keep = recall >= np.maximum.accumulate(recall)
        areas.append(_trapezoid(recall[keep], precision[keep]))
    return float(np.mean(areas))


# --- binary predictions -----------------------------------------------------------------


def pate_f1(labels, predictions, early_buffer: int = 100, delay_buffer: int = 100) -> float:
    """PATE's F1 for binary predictions: the proximity-weighted F1 of `pate`, averaged over
    the buffer pairs {0, early_buffer} x {0, delay_buffer} (reference ``binary_scores=True``)."""
    y, p = _check_prediction_task(labels, predictions)
    early = _check_int(early_buffer, "early_buffer", 0)
    delay = _check_int(delay_buffer, "delay_buffer", 0)
    entry = np.where(p, 0, 1)  # one "threshold": flagged points enter at 0, the rest never
    starts, stops = _runs(y)
    missed = _pate_missed(entry, starts, stops, 1)
    f1s = []
    for e, d in _pate_buffers(early, delay):
        true, flagged = _pate_true(entry, starts, stops, 1, e, d)
        f1s.append(_f1(_safe_div(true, flagged)[0], _safe_div(true, true + missed)[0]))
    return float(np.mean(f1s))


def range_precision(labels, predictions, cardinality: str = "one", bias: str = "flat") -> float:
    """Range-based precision (Tatbul et al., NeurIPS 2018), averaged over predicted ranges.

    Each predicted range scores the ``bias``-weighted share of its points that are anomalous
    (``'flat'``, or more weight at the ``'front'``, ``'middle'`` or ``'back'``), times 1
    (``cardinality='one'``) or 1/k when it overlaps k > 1 true ranges (``'reciprocal'``).
    The paper gives precision no existence reward, hence no ``alpha`` here. 0 when nothing is
    predicted.
    """
    y, p = _check_prediction_task(labels, predictions)
    _check_choice(cardinality, "cardinality", _CARDINALITIES)
    _check_choice(bias, "bias", _BIASES)
    return _range_score(p, y, 0.0, cardinality, bias)


def range_recall(labels, predictions, alpha: float = 0.0, cardinality: str = "one",
                 bias: str = "flat") -> float:
    """Range-based recall (Tatbul et al., NeurIPS 2018), averaged over true ranges.

    Each true range scores ``alpha`` * (1 if any of it is predicted) + ``(1 - alpha)`` *
    (the ``bias``-weighted share of it predicted, times the cardinality factor as in
    `range_precision`). ``alpha=0`` rewards coverage only; ``alpha=1`` is event recall.
    """
    y, p = _check_prediction_task(labels, predictions)
    a = _check_alpha(alpha)
    _check_choice(cardinality, "cardinality", _CARDINALITIES)
    _check_choice(bias, "bias", _BIASES)
    return _range_score(y, p, a, cardinality, bias)


def range_f1(labels, predictions, alpha: float = 0.0, cardinality: str = "one",
             bias: str = "flat") -> float:
    """Harmonic mean of `range_precision` and `range_recall` (``alpha`` is recall's)."""
    return _f1(range_precision(labels, predictions, cardinality, bias),
               range_recall(labels, predictions, alpha, cardinality, bias))


def affiliation_precision(labels, predictions) -> float:
    """Affiliation precision (Huet et al., KDD 2022).

    The series is cut into one zone per true range (borders halfway between neighbouring
    ranges; point i covers [i, i+1)). In each zone, each predicted instant x scores the
    probability that a uniformly random instant of the zone lies at least as far from the
    true range as x does; the zone's precision is the mean over its predicted instants, and
    the result is the mean over zones holding a prediction. It rewards predictions close to
    anomalies without any tolerance parameter. 0 when nothing is predicted (the reference
    returns NaN).
    """
    return _affiliation(*_check_prediction_task(labels, predictions))[0]


def affiliation_recall(labels, predictions) -> float:
    """Affiliation recall (Huet et al., KDD 2022): like `affiliation_precision` from the true
    range's side. Each instant y of a true range scores the probability that a random instant
    of its zone lies at least as far from y as the nearest prediction in the zone; zones with
    no prediction score 0, and the result is the mean over all zones."""
    return _affiliation(*_check_prediction_task(labels, predictions))[1]


def event_f1(labels, predictions) -> float:
    """Event-wise F1: both sides counted in events, not points.

    Recall is the share of true ranges holding at least one predicted point; precision is the
    share of predicted events (runs of predicted 1s) overlapping a true range. Unlike TSB-AD's
    "Event-based-F1", which pairs event recall with point-wise precision, a long false alarm
    counts once here, as does a long detection.
    """
    y, p = _check_prediction_task(labels, predictions)
    true_starts, true_stops = _runs(y)
    pred_starts, pred_stops = _runs(p)
    recall = float(np.mean(_any_in(p, true_starts, true_stops)))
    precision = float(np.mean(_any_in(y, pred_starts, pred_stops))) if pred_starts.size else 0.0
    return _f1(precision, recall)


def point_adjusted_f1(labels, predictions) -> float:
    """Point-wise F1 after point adjustment (Xu et al., WWW 2018): one predicted point inside
    a true range marks the whole range as detected.

    Warning: the adjustment inflates scores badly. A detector flagging points at random hits
    most long ranges somewhere, so it can score far above every real detector; report it only
    to compare with papers that use it, beside `vus_pr` or `range_f1`.
    """
    y, p = _check_prediction_task(labels, predictions)
    starts, stops = _runs(y)
    hit = _any_in(p, starts, stops)
    adjusted = p.copy()
    adjusted[_expand(starts[hit], stops[hit])[0]] = True
    tp = np.count_nonzero(adjusted & y)
    return _f1(_safe_ratio(tp, np.count_nonzero(adjusted)), _safe_ratio(tp, np.count_nonzero(y)))


# --- VUS --------------------------------------------------------------------------------


def _vus(labels, scores, window, n_thresholds) -> tuple[float, float]:
    """(VUS-ROC, VUS-PR) with TSB-AD's RangeAUC_volume_opt, vectorised.

    Facts used (all from TSB-AD): at buffer b (margin h = b // 2) the soft label of a normal
    point at distance d <= h from a range is min(1, sum over ranges of sqrt(1 - d / b)); at
    threshold t the range-aware TP is the soft-label mass of flagged points (anomalous points
    weigh 1); P' = (P + P + soft mass of flagged normal points) / 2; TPR = min(TP / P', 1) *
    (share of margin-extended, merged ranges holding a flagged point); FPR = (flagged - TP) /
    (n - P'); precision = TP / flagged. The ROC area is a trapezoid from (0, 0) to (1, 1); the
    PR area is sum over thresholds of (TPR_j - TPR_{j-1}) * precision_j.
    """
    y, s = _check_binary_task(labels, scores, "labels", "scores")
    window = _check_int(window, "window", 0)
    k = _check_int(n_thresholds, "n_thresholds", 1)
    n = y.size
    starts, stops = _runs(y)
    last = stops - 1
    n_pos = int(np.count_nonzero(y))
    thresholds = np.sort(s)[::-1][np.linspace(0, n - 1, k).astype(int)]
    # Point i is flagged (score >= threshold) from threshold index entry[i] on (k: never).
    entry = np.searchsorted(-thresholds, -s, side="left")
    flagged = _cumcount(entry, k)
    tp_inside = _cumcount(entry[y], k)
    entry_padded = np.append(entry, k)  # so that a reduceat slice may end at n
    aucs, aps = [], []
    for b in range(window + 1):
        h = b // 2
        tp = tp_inside
        if h:
            d = np.arange(1, h + 1)
            pos = np.concatenate(((last[:, None] + d).ravel(), (starts[:, None] - d).ravel()))
            ramp = np.tile(np.sqrt(1.0 - d / b), 2 * starts.size)
            ok = (pos >= 0) & (pos < n)
            pos, ramp = pos[ok], ramp[ok]
            normal = ~y[pos]
            where, which = np.unique(pos[normal], return_inverse=True)
            soft = np.minimum(np.bincount(which, weights=ramp[normal]), 1.0)
            tp = tp + _cumcount(entry[where], k, soft)
        # First threshold at which each margin-extended range holds a flagged point; ranges
        # whose margins meet (gap <= 2h) count as one.
        lo, hi = np.maximum(starts - h, 0), np.minimum(stops + h, n)
        first = np.minimum.reduceat(entry_padded, np.column_stack((lo, hi)).ravel())[::2]
        groups = np.flatnonzero(np.concatenate(([True], starts[1:] - last[:-1] > 2 * h)))
        hit = _cumcount(np.minimum.reduceat(first, groups), k)
        p_soft = (2 * n_pos + tp - tp_inside) / 2
        tpr = np.minimum(tp / p_soft, 1.0) * hit / groups.size
        fpr = (flagged - tp) / (n - p_soft)
        tpr_curve = np.concatenate(([0.0], tpr, [1.0]))
        fpr_curve = np.concatenate(([0.0], fpr, [1.0]))
        aucs.append(_trapezoid(fpr_curve, tpr_curve))
        aps.append(float(np.sum(np.diff(tpr_curve[:-1]) * tp / flagged)))
    return float(np.mean(aucs)), float(np.mean(aps))


# --- PATE -------------------------------------------------------------------------------


def _pate_buffers(early: int, delay: int) -> list[tuple[int, int]]:
    # The reference's defaults (num_splits_MaxBuffer=1, include_zero=True) try each buffer at
    # 0 and at its maximum.
    return [(e, d) for e in (0, early) for d in (0, delay)]


def _pate_thresholds(y: np.ndarray, s: np.ndarray, k: int) -> np.ndarray:
    """The reference's thresholds: distinct scores, minus those where the count of anomalous
    points flagged changes neither on entering nor on leaving (drop_intermediate), then
    ``k`` percentiles from 100 down to 0 of what is left (Big_Data=True)."""
    values = np.unique(s)[::-1]
    tps = np.cumsum(np.bincount(np.searchsorted(-values, -s[y]), minlength=values.size))
    if values.size > 2:
        change = np.diff(tps) != 0
        values = values[np.concatenate(([True], change[:-1] | change[1:], [True]))]
    return np.percentile(values, np.linspace(100, 0, k))


def _pate_true(entry, starts, stops, k, early, delay) -> tuple[np.ndarray, np.ndarray]:
    """Weighted true positives and flagged-point counts at thresholds 0..k-1.

    Every flagged point carries weight 1, split between TP and FP, so FP = flagged - TP. Zones
    (inclusive ends, as in the reference): after range r, [last_r + 1, min(last_r + delay,
    start_{r+1} - 1)]; before it, [max(start_r - early, end of the previous after-zone + 1),
    start_r - 1]. A zone point's TP weight is 1 - (distance to the range's centre c) /
    (distance from c to the zone's far end).
    """
    n = entry.size
    last = stops - 1
    centre = (starts + last) / 2
    post_end = np.minimum(last + delay, np.append(starts[1:], n) - 1)
    pre_start = np.maximum(np.maximum(starts - early, 0), np.append(-1, post_end[:-1]) + 1)
    inside = _expand(starts, stops)[0]
    flagged = _cumcount(entry, k)
    true = _cumcount(entry[inside], k)

    pos, owner = _expand(last + 1, post_end + 1)
    weight = 1 - (pos - centre[owner]) / (post_end[owner] - centre[owner])
    true += _cumcount(entry[pos], k, weight)

    # Early points count only once their range holds a flagged point.
    pos, owner = _expand(pre_start, starts)
    weight = 1 - (centre[owner] - pos) / (centre[owner] - pre_start[owner])
    r = starts.size
    early_mass = np.bincount(entry[pos] * r + owner, weights=weight, minlength=(k + 1) * r)
    early_mass = np.cumsum(early_mass.reshape(k + 1, r)[:k], axis=0)
    first = _first_entry(entry, starts, stops, k)
    detected = first[None, :] <= np.arange(k)[:, None]
    true += np.sum(early_mass * detected, axis=1)
    return true, flagged


def _pate_missed(entry, starts, stops, k) -> np.ndarray:
    """Weighted false negatives at thresholds 0..k-1 (they do not depend on the buffers).

    A range with no flagged point adds its length. In a partly flagged range of length L whose
    first flagged run has length m, a missed point at offset o adds 1 if o <= m, else
    1 - (m + 1) * (o - m / 2) / (L (L - 1) / 2): its summed distance to the first m + 1 points
    of the range over the largest such sum, as in the reference.
    """
    lengths = stops - starts
    pos, owner = _expand(starts, stops)
    offset = pos - starts[owner]
    enter = entry[pos]
    length_of = lengths[owner]
    head = np.cumsum(lengths) - lengths  # where each range begins in the concatenation
    max_distance = lengths * (lengths - 1) / 2
    missed = np.empty(k)
    for j in range(k):
        hit = enter <= j
        covered = np.add.reduceat(hit.astype(np.int64), head)
        total = float(np.sum(lengths[covered == 0]))
        partial = (covered > 0) & (covered < lengths)
        if partial.any():
            onset = np.minimum.reduceat(np.where(hit, offset, length_of), head)
            after = ~hit & (offset > onset[owner])
            run = np.minimum.reduceat(np.where(after, offset, length_of), head) - onset
            miss = ~hit & partial[owner]
            o, m = offset[miss], run[owner[miss]]
            far = 1 - (m + 1) * (o - m / 2) / max_distance[owner[miss]]
            total += float(np.sum(np.where(o <= m, 1.0, far)))
        missed[j] = total
    return missed


def _first_entry(entry, starts, stops, k) -> np.ndarray:
    """Index of the first threshold flagging some point of each range (k if none does)."""
    padded = np.append(entry, k)
    return np.minimum.reduceat(padded, np.column_stack((starts, stops)).ravel())[::2]


# --- range-based (Tatbul et al.) --------------------------------------------------------


def _range_score(target, other, alpha, cardinality, bias) -> float:
    """Mean over the ranges of ``target`` of alpha * existence + (1 - alpha) * gamma * omega,
    where omega is the bias-weighted share of the range covered by ``other``."""
    starts, stops = _runs(target)
    if starts.size == 0:
        return 0.0
    lengths = stops - starts
    pos, owner = _expand(starts, stops)
    i = pos - starts[owner] + 1  # 1-based position inside its range
    size = lengths[owner]
    if bias == "flat":
        delta = np.ones(pos.size)
    elif bias == "front":
        delta = (size - i + 1).astype(np.float64)
    elif bias == "back":
        delta = i.astype(np.float64)
    else:  # middle
        delta = np.where(i <= size / 2, i, size - i + 1).astype(np.float64)
    omega = (np.bincount(owner, weights=delta * other[pos], minlength=starts.size)
             / np.bincount(owner, weights=delta, minlength=starts.size))
    other_starts, _ = _runs(other)
    # Ranges of `other` overlapping each target range: one covering its first point, plus
    # those starting strictly inside it.
    started_inside = (np.searchsorted(other_starts, stops)
                      - np.searchsorted(other_starts, starts, side="right"))
    overlaps = started_inside + other[starts]
    gamma = 1.0 if cardinality == "one" else 1.0 / np.maximum(overlaps, 1)
    return float(np.mean(alpha * (overlaps > 0) + (1 - alpha) * gamma * omega))


# --- affiliation (Huet et al.) ----------------------------------------------------------


def _affiliation(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(precision, recall). Point i is the interval [i, i + 1) and the series spans [0, n];
    each integrand is piecewise linear, so it is integrated exactly by trapezoids through its
    kinks."""
    gt_starts, gt_stops = _runs(y)
    pred_starts, pred_stops = _runs(p)
    mids = (gt_stops[:-1] + gt_starts[1:]) / 2
    zone_lo = np.concatenate(([0.0], mids))
    zone_hi = np.concatenate((mids, [float(y.size)]))
    precisions, recalls = [], []
    for j0, j1, e0, e1 in zip(gt_starts, gt_stops, zone_lo, zone_hi):
        lo = np.maximum(pred_starts, e0)
        hi = np.minimum(pred_stops, e1)
        keep = lo < hi
        lo, hi = lo[keep], hi[keep]
        if lo.size == 0:
            recalls.append(0.0)
            continue
        precisions.append(sum(_affiliation_precision_mass(a, b, j0, j1, e0, e1)
                              for a, b in zip(lo, hi)) / float(np.sum(hi - lo)))
        # Each part of the true range belongs to its nearest predicted piece.
        borders = np.concatenate(([e0], (hi[:-1] + lo[1:]) / 2, [e1]))
        recalls.append(sum(_affiliation_recall_mass(a, b, max(j0, u), min(j1, v), e0, e1)
                           for a, b, u, v in zip(lo, hi, borders[:-1], borders[1:]))
                       / float(j1 - j0))
    precision = float(np.mean(precisions)) if precisions else 0.0
    return precision, float(np.mean(recalls))


def _affiliation_precision_mass(a, b, j0, j1, e0, e1) -> float:
    """Integral over x in [a, b] of P(d(X, J) >= d(x, J)), X uniform on the zone [e0, e1].

    With margins left = j0 - e0 and right = e1 - j1 and m = min of the two, that probability
    is 1 inside J and 1 - (|J| + min(d, m) + d) / |E| at distance d > 0.
    """
    size_j, size_e, m = j1 - j0, e1 - e0, min(j0 - e0, e1 - j1)

    def survival(x):
        d = np.maximum(j0 - x, x - j1)
        return 1 - (size_j + np.minimum(d, m) + d) / size_e

    inside = max(0.0, min(b, j1) - max(a, j0))
    return (inside + _integrate(survival, a, min(b, j0), [j0 - m])
            + _integrate(survival, max(a, j1), b, [j1 + m]))


def _affiliation_recall_mass(a, b, u, v, e0, e1) -> float:
    """Integral over y in [u, v] (part of the true range nearest the predicted piece [a, b])
    of P(|X - y| >= d(y, [a, b])), X uniform on [e0, e1]: 1 inside the piece, else
    1 - (min(d, m_y) + d) / |E| with m_y = min(y - e0, e1 - y)."""
    size_e = e1 - e0

    def survival(t):
        d = np.maximum(a - t, t - b)
        return 1 - (np.minimum(d, np.minimum(t - e0, e1 - t)) + d) / size_e

    # min(d, m_y) kinks only where d meets the far side's margin: y - e0 left of the piece
    # (a - y <= e1 - y there), e1 - y right of it.
    kinks = [(e0 + a) / 2, (b + e1) / 2]
    inside = max(0.0, min(v, b) - max(u, a))
    return (inside + _integrate(survival, u, min(v, a), kinks)
            + _integrate(survival, max(u, b), v, kinks))


def _integrate(f, lo: float, hi: float, kinks: list[float]) -> float:
    """Exact integral over [lo, hi] of a continuous piecewise-linear ``f`` whose kinks inside
    the interval are among ``kinks``."""
    if hi <= lo:
        return 0.0
    x = np.unique(np.clip(np.array([lo, hi, *kinks], dtype=np.float64), lo, hi))
    return _trapezoid(x, f(x))


# --- shared helpers ---------------------------------------------------------------------


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and exclusive ends of the runs of True in a boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([False], mask, [False])).astype(np.int8)))
    return edges[0::2], edges[1::2]


def _expand(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All integers of the intervals [lo_r, hi_r) (empty where hi_r <= lo_r), concatenated,
    with the index r of the interval each comes from."""
    lengths = np.maximum(hi - lo, 0)
    owner = np.repeat(np.arange(lo.size), lengths)
    offset = np.arange(owner.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return lo[owner] + offset, owner


def _any_in(mask: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Whether each interval [start, stop) holds a True of ``mask``."""
    counts = np.concatenate(([0], np.cumsum(mask)))
    return counts[stops] - counts[starts] > 0


def _cumcount(entry: np.ndarray, k: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Total weight (default: count) of the points flagged at each threshold 0..k-1, given the
    threshold index from which each point is flagged (k: never)."""
    return np.cumsum(np.bincount(entry, weights=weights, minlength=k + 1)[:k], dtype=np.float64)


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(np.shape(num)), where=den > 0)


def _safe_ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def _f1(precision: float, recall: float) -> float:
    return _safe_ratio(2 * precision * recall, precision + recall)


def _check_prediction_task(labels, predictions) -> tuple[np.ndarray, np.ndarray]:
    y = _as_labels(labels, "labels")
    p = _as_labels(predictions, "predictions")
    _check_same_length(y, p, "labels", "predictions")
    if not y.any():
        raise DataError(
            "labels contain no anomalous point (1); this metric is measured against at least "
            "one true anomalous range"
        )
    return y, p


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise DataError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 <= alpha <= 1.0:
        raise DataError(f"alpha must be a number in [0, 1], got {alpha!r}")
    return float(alpha)


def _check_choice(value, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise DataError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
