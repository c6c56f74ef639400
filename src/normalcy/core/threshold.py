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


@dataclass(frozen=True)
class FalseAlarmRate:
    """Flag at most `rate` of held-out normal items.

    The threshold sits just above the normal score that leaves floor(rate * n) scores at or
    above it, so on the calibration data the false-alarm rate never exceeds `rate`.
    """

    rate: float = 0.01

    def __post_init__(self):
        if not 0.0 <= self.rate < 1.0:
            raise DataError(f"false-alarm rate must be in [0, 1), got {self.rate}")

    def compute(self, scores, labels=None) -> float:
        s = _finite_scores(scores)
        if labels is not None:
            s = s[np.asarray(labels) == 0]
            if s.size == 0:
                raise DataError("false-alarm-rate threshold needs normal items (label 0)")
        # The largest k with k / n <= rate; floor(rate * n) alone is off by one when the
        # product rounds down (0.29 * 100 = 28.999...).
        allowed = math.floor(self.rate * s.size)
        while allowed > 0 and allowed / s.size > self.rate:
            allowed -= 1
        while (allowed + 1) / s.size <= self.rate:
            allowed += 1
        ordered = np.sort(s)
        return float(np.nextafter(ordered[s.size - allowed - 1], np.inf))

    def spec(self) -> str:
        return f"fpr:{self.rate:g}"


@dataclass(frozen=True)
class F1Optimal:
    """The threshold with the best F1 on a labelled validation set."""

    def compute(self, scores, labels=None) -> float:
        if labels is None:
            raise DataError("the F1-optimal threshold needs labels (a validation set with anomalies)")
        return metrics.f1_max(labels, scores)[1]

    def spec(self) -> str:
        return "f1"


@dataclass(frozen=True)
class Fixed:
    """A threshold the user already knows."""

    value: float

    def __post_init__(self):
        if math.isnan(self.value):
            raise DataError("a fixed threshold must be a number, got NaN")

    def compute(self, scores=None, labels=None) -> float:
        return float(self.value)

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


def _finite_scores(scores) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise DataError("cannot calibrate a threshold on zero scores")
    if not np.isfinite(s).all():
        raise DataError("calibration scores contain NaN or infinity")
    return s
