"""The time-series fit job behind `normalcy ts fit` and Spark's fit-per-group: learn a series
and set its alert threshold from the causal scores of its last readings."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np

from normalcy.core.errors import DataError
from normalcy.core.holdout import warn_if_unresolved
from normalcy.core.registry import build
from normalcy.core.results import Calibration
from normalcy.core.threshold import F1Optimal, FalseAlarmRate, Fixed, ThresholdStrategy
from normalcy.timeseries.base import TimeSeriesDetector
from normalcy.timeseries.data import TimeSeries, is_label_column

MIN_HELD_OUT = 10  # held-out readings, at least, whose scores set a threshold


class ConstantSeriesWarning(UserWarning):
    """A variable never changes in the training series, so any change will score as anomalous."""


def fit_model(series: TimeSeries, model: str, threshold: ThresholdStrategy, holdout: float = 0.2,
              params: dict | None = None, name: str = "the series") -> TimeSeriesDetector:
    """A detector that has learned all of `series`, with its threshold set from the scores of the
    last `holdout` fraction as they were seen (causally, before each was learned); a fixed
    threshold needs no held-out part.

    One causal pass gives exactly what fitting the first part, scoring the held-out part and then
    learning it would, at the cost of one pass instead of two over the held-out readings. The
    part before the held-out readings must warm the detector up (`ready_after`), so that every
    held-out score is a real one, and at least MIN_HELD_OUT readings must be held out; shorter
    data is refused, naming the minimum."""
    labels = [c for c in series.columns if is_label_column(c)]
    if labels:
        raise DataError(f"{name}: column(s) {', '.join(map(repr, labels))} hold labels, which are never model inputs; "
                        "leave them out of the columns")
    detector = build("timeseries", model, params)
    detector._check_params()
    if isinstance(threshold, F1Optimal):
        raise DataError("threshold f1 needs labelled anomalies, which a training series does not have; "
                        "use fpr:RATE or fixed:VALUE")
    detector.columns_ = list(series.columns)
    detector._prepare(series)  # a window taken from the data decides the warm-up
    n, ready = len(series), detector.ready_after()
    if isinstance(threshold, Fixed):
        if n < ready:
            raise DataError(f"{name}: {n} readings are too few to fit {model}: it needs at least {ready} "
                            "readings to warm up")
        detector.fit(series)
        detector.set_threshold(threshold.compute(), threshold.spec())
    else:
        if not 0.0 < holdout < 1.0:
            raise DataError(f"holdout must be in (0, 1), got {holdout}")
        split = int(n * (1 - holdout))
        if split < ready or n - split < MIN_HELD_OUT:
            raise DataError(f"{name}: {n} readings are too few to fit {model} with a threshold from held-out "
                            f"readings: it needs {ready} readings to warm up, then at least {MIN_HELD_OUT} "
                            f"held-out readings (the last {holdout:g}), so at least {minimum_readings(ready, holdout)} "
                            "readings; give more data, or a fixed threshold")
        scores = detector.score_causal(series)
        alert_level = getattr(detector, "alert_level", None)
        if isinstance(threshold, FalseAlarmRate) and alert_level is not None:
            threshold = AtLeast(threshold, alert_level)
        detector.calibrate_scores(scores[split:], threshold)
        warn_if_unresolved(detector)
    constant = [c for c, span in zip(series.columns, np.ptp(series.values, axis=0)) if span == 0]
    if constant:
        warnings.warn(f"{name}: {', '.join(map(repr, constant))} never change(s) in the training data, so any "
                      "change will score as an anomaly", ConstantSeriesWarning, stacklevel=2)
    return detector


def minimum_readings(ready: int, holdout: float) -> int:
    """The fewest readings whose split leaves `ready` before and MIN_HELD_OUT in the holdout."""
    n = ready + MIN_HELD_OUT
    while int(n * (1 - holdout)) < ready or n - int(n * (1 - holdout)) < MIN_HELD_OUT:
        n += 1
    return n


@dataclass(frozen=True)
class AtLeast:
    """A false-alarm-rate threshold never below a detector's alert level (in its own units):
    a quiet hold-out makes fpr:RATE land just above 0, where any novelty at all would alert."""

    strategy: FalseAlarmRate
    floor: float

    def calibrate(self, scores, labels=None) -> Calibration:
        calibration = self.strategy.calibrate(scores, labels)
        if calibration.threshold >= self.floor:
            return calibration
        flagged = float(np.mean(np.asarray(scores, dtype=np.float64) >= self.floor))
        method = f"{calibration.method}, raised to the detector's alert level {self.floor:g}"
        return replace(calibration, threshold=float(self.floor), flagged=flagged, method=method)

    def spec(self) -> str:
        return self.strategy.spec()
