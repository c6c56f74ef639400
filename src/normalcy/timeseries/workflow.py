"""The time-series fit job behind `normalcy ts fit` and Spark's fit-per-group: learn a series
and set its alert threshold from the causal scores of its last readings."""

from __future__ import annotations

from normalcy.core.errors import DataError
from normalcy.core.threshold import FalseAlarmRate, ThresholdStrategy
from normalcy.timeseries import DETECTORS
from normalcy.timeseries.base import TimeSeriesDetector
from normalcy.timeseries.data import TimeSeries


def fit_model(series: TimeSeries, model: str, threshold: ThresholdStrategy, holdout: float = 0.2,
              params: dict | None = None, name: str = "the series") -> TimeSeriesDetector:
    """A detector that has learned all of `series`, with its threshold set from the scores of the
    last `holdout` fraction as they were seen (causally, before each was learned).

    One causal pass gives exactly what fitting the first part, scoring the held-out part and then
    learning it would, at the cost of one pass instead of two over the held-out readings."""
    if model not in DETECTORS:
        raise DataError(f"unknown model {model!r}; expected one of {', '.join(DETECTORS)}")
    if not 0.0 < holdout < 1.0:
        raise DataError(f"holdout must be in (0, 1), got {holdout}")
    split = int(len(series) * (1 - holdout))
    if split < 1 or split == len(series):
        raise DataError(f"{name}: {len(series)} readings are too few to hold out {holdout:g} of them")
    detector = DETECTORS[model](**(params or {}))
    scores = detector.score_causal(series)
    detector.calibrate_scores(scores[split:], threshold)
    # A quiet hold-out makes fpr:RATE land just above 0; a detector with an alert level in its
    # own units does not go below it.
    if isinstance(threshold, FalseAlarmRate) and getattr(detector, "alert_level", None) is not None:
        detector.threshold_ = max(detector.threshold_, float(detector.alert_level))
    return detector
