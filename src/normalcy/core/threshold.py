"""Threshold strategies: how a score becomes a yes/no.

Each strategy turns calibration scores (and labels, where it needs them) into one number.
Specs such as ``fpr:0.01``, ``f1`` and ``fixed:3.5`` name them on the command line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from normalcy.core import metrics
from normalcy.core.errors import DataError
from normalcy.core.results import Calibration


@dataclass(frozen=True)
class FalseAlarmRate:
    """Flag `rate` of new normal items, judged from held-out normal scores.

    With n held-out items and n * rate >= 1, the threshold is the empirical quantile at plotting
    position (n + 1)(1 - rate), interpolated between the two order statistics around it: for
    continuous scores a new normal item lies above it with probability `rate` on average. It
    never flags more than floor(rate * n) of the held-out items (then it sits just above the
    next score). The plain order statistic flagged (floor(rate * n) + 1) / (n + 1) of new normal
    items on average: 2% at n = 100 and fpr:0.01.

    With fewer items no held-out score marks the rate, and the largest one, the old rule, flags
    about 1 / (n + 1) of new normal items whatever the rate (17% at n = 5), and one outlying
    held-out item sets it. The threshold then extrapolates an exponential tail fitted to the
    upper quarter (`tail_threshold`): the largest held-out score is censored, so it does not
    move the threshold, and the multiple of the fitted scale is the one at which, for scores
    whose upper tail is exponential, a new normal item is flagged with probability exactly
    `rate` on average over held-out sets. `calibrate` then says so in its note.

    Measured by `normalcy study thresholds` on 149 real score sets of 8 corpora
    (docs/thresholds.md), with 5 to 50 held-out items at fpr:0.01: new normal items flagged at
    most 1.8x the rate on tables, images and text (the old rule up to 17x), 4-6% at n = 5 on
    time-series and log scores that are mostly one value, where no rule can resolve it.
    """

    rate: float = 0.01

    def __post_init__(self):
        if not 0.0 <= self.rate < 1.0:
            raise DataError(f"false-alarm rate must be in [0, 1), got {self.rate}")

    def compute(self, scores, labels=None) -> float:
        return self.calibrate(scores, labels).threshold

    def calibrate(self, scores, labels=None) -> Calibration:
        s = np.sort(_normal_scores(scores, labels, "false-alarm-rate"))
        n = s.size
        if self.resolved_by(n):
            threshold, method, note = float(thresholds_of_sorted(s[None, :], self.rate)[0]), "empirical quantile", None
        else:
            tail, fitted = tail_threshold(s[None, :], self.rate)
            threshold = float(tail[0])
            need = (f"{n} held-out normal items cannot resolve a false-alarm rate of {self.rate:g} "
                    f"(that needs at least {self.items_needed()})")
            if fitted[0]:
                method = "exponential tail model"
                note = (f"{need}; the threshold extrapolates an exponential tail of their upper quarter, "
                        "which on real data flagged up to 2x the rate of new normal items (more where scores "
                        f"are mostly one value): hold out {self.items_needed()} or more for a measured rate")
            else:
                method = "largest held-out score"
                note = (f"{need}, and their upper scores are too few distinct values to fit a tail: the "
                        f"threshold is just above the largest, which flags about 1/{n + 1} of new normal "
                        f"items; hold out {self.items_needed()} or more for a measured rate")
        return Calibration(self.spec(), threshold, int(n), float(np.mean(s >= threshold)), method, note)

    def resolved_by(self, n: int) -> bool:
        """Whether n held-out items pin the rate down empirically: at least one may be flagged
        (or none should be: rate 0 means above every held-out score)."""
        return self.rate == 0 or n * self.rate >= 1 - 1e-9

    def items_needed(self) -> int:
        """The fewest held-out items that resolve the rate."""
        return 1 if self.rate == 0 else math.ceil(1 / self.rate - 1e-9)

    def spec(self) -> str:
        return f"fpr:{self.rate:g}"


@dataclass(frozen=True)
class F1Optimal:
    """The threshold with the best F1 on a labelled validation set."""

    def compute(self, scores, labels=None) -> float:
        if labels is None:
            raise DataError("the F1-optimal threshold needs labels (a validation set with anomalies)")
        return metrics.f1_max(labels, scores)[1]

    def calibrate(self, scores, labels=None) -> Calibration:
        threshold = self.compute(scores, labels)
        normal = np.asarray(scores, dtype=np.float64)[np.asarray(labels) == 0]
        flagged = float(np.mean(normal >= threshold)) if normal.size else None
        return Calibration(self.spec(), threshold, len(np.asarray(scores).reshape(-1)), flagged, "best F1 on labels")

    def spec(self) -> str:
        return "f1"


@dataclass(frozen=True)
class Fixed:
    """A threshold the user already knows."""

    value: float

    def __post_init__(self):
        if not math.isfinite(self.value):
            raise DataError(f"a fixed threshold must be a finite number, got {self.value}")

    def compute(self, scores=None, labels=None) -> float:
        return float(self.value)

    def calibrate(self, scores=None, labels=None) -> Calibration:
        return Calibration(self.spec(), float(self.value))

    def spec(self) -> str:
        return f"fixed:{self.value:g}"


ThresholdStrategy = FalseAlarmRate | F1Optimal | Fixed


def parse_threshold(spec: str) -> ThresholdStrategy:
    """``fpr:0.01`` | ``f1`` | ``fixed:3.5`` -> a strategy."""
    kind, _, value = spec.strip().partition(":")
    try:
        if kind == "fpr":
            return FalseAlarmRate(float(value) if value else 0.01)
        if kind == "f1" and not value:
            return F1Optimal()
        if kind == "fixed":
            return Fixed(float(value))
    except ValueError:
        pass
    raise DataError(f"threshold {spec!r} not understood; expected fpr:RATE, f1 or fixed:VALUE")


def _normal_scores(scores, labels, what: str) -> np.ndarray:
    s = _finite_scores(scores)
    if labels is not None:
        s = s[np.asarray(labels).reshape(-1) == 0]
        if s.size == 0:
            raise DataError(f"{what} threshold needs normal items (label 0)")
    return s


def _finite_scores(scores) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise DataError("cannot calibrate a threshold on zero scores")
    if not np.isfinite(s).all():
        raise DataError("calibration scores contain NaN or infinity")
    return s


def thresholds_of_sorted(S: np.ndarray, rate: float) -> np.ndarray:
    """`FalseAlarmRate(rate)` thresholds for held-out scores sorted ascending, one set per row
    of S (all of the same size n): the interpolated quantile when n * rate >= 1, else the tail."""
    n = S.shape[1]
    if rate == 0:
        return _above(S[:, -1])
    if n * rate < 1 - 1e-9:
        return tail_threshold(S, rate)[0]
    flagged_at_most = _above(S[:, n - allowed_count(n, rate) - 1])
    return np.maximum(interpolated_quantile(S, rate), flagged_at_most)


def allowed_count(n: int, rate: float) -> int:
    """The largest k with k / n <= rate; floor(rate * n) alone is off by one when the product
    rounds down (0.29 * 100 = 28.999...)."""
    allowed = math.floor(rate * n)
    while allowed > 0 and allowed / n > rate:
        allowed -= 1
    while (allowed + 1) / n <= rate:
        allowed += 1
    return allowed


def interpolated_quantile(S: np.ndarray, rate: float) -> np.ndarray:
    """Per row of sorted scores, the value at plotting position (n + 1)(1 - rate) (1-based),
    linear between the order statistics around it; just above them when they tie. The expected
    share of new items above the k-th of n is (n + 1 - k) / (n + 1), hence the position.
    Needs (n + 1) * rate >= 1."""
    n = S.shape[1]
    position = (n + 1) * (1 - rate)
    lo = min(max(math.floor(position + 1e-9), 1), n - 1)
    frac = min(max(position - lo, 0.0), 1.0)
    a, b = S[:, lo - 1], S[:, lo]
    return np.where((b > a) & (frac > 0), (1 - frac) * a + frac * b, _above(a))  # no overflow near ±DBL_MAX


TAIL_SHARE = 0.25


def tail_threshold(S: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Thresholds from an exponential tail over the upper quarter, per row of sorted scores,
    and whether a tail could be fitted (where not: just above the largest score).

    u is the (k + 1)-th largest score, k = max(2, round(n / 4)) (at most n - 1); the excesses
    over u of the m of the k largest scores that lie strictly above it are taken as exponential
    with the largest censored at the second largest (type-II censoring: the largest score,
    perhaps one outlier, does not move the threshold), which gives the scale estimate
    sigma = T / d with T the excesses' total after censoring and d = m - 1. For exponential
    excesses, T / sigma_true is Gamma(d) and a new item exceeds u with probability
    (m + 1) / (n + 1) on average, so the threshold u + c * sigma with
    (m + 1) / (n + 1) * (1 + c / d) ** -d = rate flags `rate` of new items on average: the
    predictive quantile. The plug-in quantile u + sigma * log(m / (n * rate)) flagged 2-7
    times `rate` at n = 5 on real tables and images: sigma is that uncertain. Needs m >= 2
    with spread."""
    n = S.shape[1]
    k = min(n - 1, max(2, round(TAIL_SHARE * n)))
    if k < 2:
        return _above(S[:, -1]), np.zeros(len(S), dtype=bool)
    u = S[:, n - k - 1]
    with np.errstate(over="ignore", invalid="ignore"):  # scores near ±DBL_MAX: see below
        excess = S[:, n - k:] - u[:, None]
        above = np.count_nonzero(excess > 0, axis=1)
        dof = above - 1
        total = excess[:, :-1].sum(axis=1) + excess[:, -2]  # the largest counts as the second largest
        fitted = (dof >= 1) & (total > 0)
        dof = np.maximum(dof, 1)
        tail = np.maximum(u + predictive_multiple(n, above, dof, rate) * total / dof, _above(u))
    # Beyond the largest float the threshold is the largest float; an overflowed spread times a
    # zero multiple (NaN) leaves no usable scale.
    tail = np.where(np.isnan(tail), _above(S[:, -1]), np.minimum(tail, np.finfo(np.float64).max))
    return np.where(fitted, tail, _above(S[:, -1])), fitted


def predictive_multiple(n: int, above, dof, rate: float) -> np.ndarray:
    """c with (above + 1) / (n + 1) * (1 + c / dof) ** -dof = rate, at least 0 (elementwise): the
    multiple of an exponential scale estimated with `dof` degrees of freedom from the `above`
    of n items that exceed u, at which a new item is flagged with probability `rate` on average."""
    share = (np.asarray(above) + 1) / (n + 1)
    dof = np.asarray(dof, dtype=np.float64)
    return np.maximum(0.0, dof * ((share / rate) ** (1 / dof) - 1))


def _above(x):
    """The next float above x (a threshold that flags x's item no more); finite."""
    return np.nextafter(np.minimum(x, np.nextafter(np.finfo(np.float64).max, 0)), np.inf)


