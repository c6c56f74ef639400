"""Range novelty: how far a reading lies beyond everything seen in the last `history`
readings, as a fraction of that range (0 while inside it). A new extreme is what most
incidents in operational metrics look like at first, and a value, once seen, stops being
news, so the detector does not keep alarming on a new normal."""

from __future__ import annotations

import numpy as np

from normalcy.timeseries.base import TimeSeriesDetector


class RangeNovelty(TimeSeriesDetector):
    """How far a reading lies beyond the range of the last `history` readings, as a fraction of
    that range (0 inside it); `ts fit` never sets its threshold below `alert_level` (0.01).

    Parameters (defaults in brackets):
    - history [8000]: readings whose range a reading is compared with.
    - likelihood [False]: turn raw scores into NAB's anomaly likelihood.
    - averaging [10], likelihood_window [2000]: the likelihood's recent mean and its window.
    - warmup [20]: readings learned before scores are computed.
    """

    name = "range-novelty"
    # `ts fit` never sets the threshold below this: held-out scores are mostly exactly 0, and a
    # false-alarm-rate threshold on them lands on the smallest float above 0, so every new
    # extreme alerts. 0.01: a reading must leave its past range by 1 % of that range to alert.
    alert_level = 0.01

    def __init__(self, history: int = 8000, likelihood: bool = False, averaging: int = 10,
                 likelihood_window: int = 2000, warmup: int = 20):
        super().__init__(history, likelihood, averaging, likelihood_window, warmup)

    def _variable_scores(self, past, x):
        return range_excess(past, x)

    def _batch_variable_scores(self, values, wanted=True):
        """All of `values` at once (see `TimeSeriesDetector._batch_variable_scores`): the
        range of each reading's past is a running maximum and minimum over the readings before
        it, the same numbers `_step` takes one reading at a time. Readings with missing values
        go through `_step`, which carries the last reading forward."""
        from scipy.ndimage import maximum_filter1d, minimum_filter1d

        if np.isnan(values).any():
            return None
        n = len(values)
        held = min(self._count, self.history)
        readings = np.vstack([self._recent(), values]) if held else values
        # trailing windows: row k covers the `history` readings up to k (fewer at the start)
        origin = (self.history - 1) // 2
        high = maximum_filter1d(readings, self.history, axis=0, mode="nearest", origin=origin)
        low = minimum_filter1d(readings, self.history, axis=0, mode="nearest", origin=origin)
        before = np.minimum(self._count + np.arange(n), self.history)  # readings remembered at each
        warm = np.flatnonzero(before >= self.warmup)
        out = np.zeros(values.shape)
        if len(warm):
            at = held + warm - 1  # the last reading before each
            out[warm] = _excess(high[at], low[at], values[warm])
        return out


def range_excess(past: np.ndarray, x: np.ndarray) -> np.ndarray:
    """How far each of x lies beyond the range of its column of past, as a fraction of it."""
    return _excess(past.max(axis=0), past.min(axis=0), x)


def _excess(high: np.ndarray, low: np.ndarray, x: np.ndarray) -> np.ndarray:
    # A flat past has range 0: measure the step against the level instead.
    span = np.maximum(high - low, 1e-6 * (np.abs(high) + 1.0))
    return np.maximum(np.maximum(x - high, low - x), 0.0) / span
