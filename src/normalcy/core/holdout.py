"""Fit with a held-out calibration part, the one way every modality sets a threshold.

Scores of the items a detector was fitted on are optimistically low, so a threshold set on
them flags too much: a random `holdout` fraction of the normal items is kept out of fitting
and its scores set the threshold (`Detector.calibrate_scores`, which records how many items
set it and the share it flags). A fixed threshold needs no holdout: every item is fitted.
F1-optimal thresholds need labelled anomalies, given as `validation=(X, y)`.
"""

from __future__ import annotations

import warnings

import numpy as np

from normalcy.core.detector import Detector
from normalcy.core.errors import DataError
from normalcy.core.threshold import F1Optimal, Fixed, ThresholdStrategy


class CalibrationWarning(UserWarning):
    """The threshold was set from too few held-out items to resolve the requested rate."""


def fit_with_holdout(detector: Detector, items, strategy: ThresholdStrategy, holdout: float = 0.1,
                     seed: int = 0, validation: tuple | None = None, unit: str = "items",
                     name: str = "the data") -> Detector:
    """Fit `detector` on `items` (a list, array or DataFrame) less a random `holdout` fraction
    and calibrate its threshold on that fraction; returns the detector. `unit` and `name`
    (e.g. "rows", the file) are what messages call the items and the data."""
    if validation is not None:
        detector.fit(items)
        X_val, y_val = validation
        return detector.calibrate(X_val, strategy, y=np.asarray(y_val))
    if isinstance(strategy, F1Optimal):
        raise DataError("threshold f1 needs labelled anomalies: give validation data, or use fpr:RATE or fixed:VALUE")
    if isinstance(strategy, Fixed):
        detector.fit(items)
        return detector.set_threshold(strategy.compute(), strategy.spec())
    if not 0.0 < holdout < 1.0:
        raise DataError(f"holdout must be in (0, 1) for threshold {strategy.spec()}, got {holdout}")
    n = len(items)
    n_held = int(round(holdout * n))
    if not 0 < n_held < n:
        raise DataError(f"threshold {strategy.spec()} needs held-out {unit} and {unit} to fit: {name} has "
                        f"{n} {unit}, a holdout of {holdout:g} holds out {n_held}; add {unit}, change the "
                        "holdout or use a fixed threshold")
    order = np.random.default_rng(seed).permutation(n)
    detector.fit(take(items, np.sort(order[n_held:])))
    detector.calibrate(take(items, np.sort(order[:n_held])), strategy)
    warn_if_unresolved(detector)
    return detector


def warn_if_unresolved(detector: Detector) -> None:
    """A CalibrationWarning with the calibration's caveat, if it has one."""
    note = detector.calibration_.note if detector.calibration_ is not None else None
    if note:
        warnings.warn(note, CalibrationWarning, stacklevel=3)


def take(items, indices: np.ndarray):
    """The items at `indices`, keeping the container's kind."""
    if hasattr(items, "iloc"):
        return items.iloc[indices]
    if isinstance(items, np.ndarray):
        return items[indices]
    return [items[i] for i in indices]
