"""Subsequence joins (matrix profile): how far the subsequence of the last `window` readings
lies from its nearest neighbour among the subsequences remembered before it.

After `fit`, the memory is the training series, so scoring new data is an AB-join of the new
data against the training data (Yeh et al. 2016): a subsequence unlike every training
subsequence is a discord, however ordinary its values. Scored as a stream, each new reading
joins the memory after it is scored, so a subsequence is compared with the training data and
with the new readings before it (the left matrix profile, Zhu et al. 2017): behaviour that
repeats stops being news. `history` bounds the memory.

The window is the series' period (`period`: the highest autocorrelation peak, as TSB-AD's
`find_length_rank` picks it) unless given, so a subsequence is one cycle and a cycle unlike any
earlier cycle is what scores. Distances are plain Euclidean (level and shape) by default, or
between z-normalised subsequences (shape only) with ``normalize=True``; the trivial-match zone
is ceil(window / 4) readings (STUMPY's convention). A variable's score is the distance in units
of the distance between two stretches of its steady noise: sqrt(window) times the root mean
square of its steps (differences of successive readings) learned so far. So one scale serves
every variable (the largest names the variable) and every series, the unit depends on the
readings alone, and learning needs no distances: `fit` costs one pass over the readings. The
score is given at the reading that ends the subsequence, the first moment it can be seen.

The engine (`nearest`, compiled with numba in `_joinkernel`): STOMP's recurrence gives each
query's dot products with all memory subsequences from the previous query's in O(memory), the
candidates within a tolerance of the smallest approximate distance are then measured exactly as
sums of squared differences, so batch and streaming give the same numbers. Cost: O(n x memory)
per variable, linear in the number of variables. STUMPY computes the same profiles with the
same recurrence, but from its products alone (not reproducible between batch and streaming), and
compiles its kernels for tens of seconds in every new process; this kernel is cached on disk.
"""

from __future__ import annotations

import math

import numpy as np

from normalcy.core.errors import DataError, ModelFileError
from normalcy.timeseries.base import MAX_MEMORY, TimeSeriesDetector, check_int, state_int
from normalcy.timeseries.matrixprofile import exclusion_zone

PERIOD_READINGS = 20000  # readings whose autocorrelation gives the period
MIN_LAG, MAX_LAG, MAX_PERIOD = 3, 400, 300  # TSB-AD's bounds on autocorrelation peaks
FALLBACK_WINDOW = 100  # without a period in range (TSB-AD's fallback is 125)


def period(values: np.ndarray, fallback: int = FALLBACK_WINDOW) -> int:
    """The dominant period of a series (n or n x d): the lag of the highest local maximum of the
    autocorrelation at lags 3..400 of its first 20,000 readings, if that lag is at most 300 and
    the peak stands above noise; else `fallback`. With several variables, the median of the
    periods found."""
    values = np.asarray(values, dtype=np.float64)
    columns = values.reshape(len(values), -1)[:PERIOD_READINGS].T
    found = [p for p in (_period_1d(c) for c in columns) if p is not None]
    return int(np.median(found)) if found else fallback


def _period_1d(x: np.ndarray) -> int | None:
    x = x - x.mean()
    n = len(x)
    if n < 2 * MIN_LAG + 2 or not np.any(x):
        return None
    spectrum = np.fft.rfft(x, 2 ** math.ceil(math.log2(2 * n)))
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[: min(MAX_LAG, n - 1) + 1]
    acf = acf / acf[0]
    lags = np.arange(MIN_LAG + 1, len(acf) - 1)
    peaks = lags[(acf[lags] > acf[lags - 1]) & (acf[lags] > acf[lags + 1])]
    if not peaks.size:
        return None
    best = int(peaks[np.argmax(acf[peaks])])
    # white noise's autocorrelations have standard error 1/sqrt(n); the largest of ~400 of them
    # passes 4 standard errors about once in a hundred series
    return best if best <= MAX_PERIOD and acf[best] > 4.0 / math.sqrt(n) else None


def nearest(series: np.ndarray, ends: np.ndarray, first: np.ndarray, last: np.ndarray, window: int,
            normalize: bool) -> np.ndarray:
    """For each query subsequence of the 1-d `series` ending at index ends[i] (in increasing
    order), the distance to its nearest subsequence starting at an index in [first[i], last[i]]
    (inf where that range is empty); see the module docs for the engine."""
    from normalcy.timeseries._joinkernel import nearest_kernel

    series = np.ascontiguousarray(series, dtype=np.float64)
    center = float(np.median(series)) if len(series) else 0.0
    as_int = [np.ascontiguousarray(a, dtype=np.int64) for a in (ends, first, last)]
    return nearest_kernel(series, series - center, center, *as_int, int(window), bool(normalize))


class SubsequenceJoin(TimeSeriesDetector):
    """Distance of the last `window` readings to their nearest earlier subsequence in memory
    (after fit: an AB-join against the training data, then the left matrix profile as the
    stream goes on), in units of the mean of earlier distances.

    Parameters (defaults in brackets):
    - window [None]: subsequence length; None takes the training data's period (see `period`).
    - normalize [False]: z-normalise subsequences (shape only) instead of plain Euclidean
      distance (level and shape).
    - history [20000]: readings remembered; neighbours are searched among them.
    - likelihood [False], averaging [1], likelihood_window [2000]: NAB's anomaly likelihood.
    - warmup [20]: readings learned before scores are computed.
    """

    name = "subsequence-join"

    def __init__(self, history: int = 20000, likelihood: bool = False, averaging: int = 1,
                 likelihood_window: int = 2000, warmup: int = 20, window: int | None = None,
                 normalize: bool = False):
        super().__init__(history, likelihood, averaging, likelihood_window, warmup)
        self.window = window
        self.normalize = normalize

    # --- the window --------------------------------------------------------------------------
    def _prepare(self, series):
        self.window_ = self._choose_window(series.values)

    def _choose_window(self, values: np.ndarray) -> int:
        if self.window is not None:
            return self.window
        # at most a quarter of the data, and what the memory can hold with a neighbour outside
        # the trivial-match zone
        m = max(2, min(period(values), len(values) // 4))
        while m > 2 and m + exclusion_zone(m) + 1 > self.history:
            m -= 1
        return m

    # --- distances -----------------------------------------------------------------------------
    def _variable_scores(self, past, x):
        m, zone = self.window_, exclusion_zone(self.window_)
        readings = np.vstack([past, x])
        last = len(readings) - m - zone - 1  # the last start outside the query's trivial-match zone
        if last < 0:
            return np.zeros(len(x))
        ends, first = np.array([len(readings) - 1]), np.array([0])
        distances = np.array([nearest(readings[:, j], ends, first, np.array([last]), m, self.normalize)[0]
                              for j in range(len(x))])
        return self._in_units(distances, self._unit(self._steps, self._n_steps))

    def _unit(self, steps: np.ndarray, n_steps) -> np.ndarray:
        """The distance unit: sqrt(window) times the root mean square of the variable's steps
        (differences of successive readings) learned so far, the distance between two
        subsequences of steady noise. It depends on the readings alone, so learning needs no
        distances."""
        return np.sqrt(self.window_ * steps / np.maximum(n_steps, 1))

    @staticmethod
    def _in_units(distances: np.ndarray, unit: np.ndarray) -> np.ndarray:
        # a unit of 0 (a variable that never moved): any distance is new, capped at 1e9
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(distances > 0, distances / np.maximum(unit, 1e-9 * distances), 0.0)

    def _learned(self):
        super()._learned()
        if self._count >= 2:
            step = self._buffer[(self._count - 1) % self.history] - self._buffer[(self._count - 2) % self.history]
            self._steps = self._steps + step * step
            self._n_steps += 1

    def _batch_variable_scores(self, values, wanted=True):
        """All of `values` at once (see `TimeSeriesDetector._batch_variable_scores`)."""
        m, zone = self.window_, exclusion_zone(self.window_)
        n, d = values.shape
        held = min(self._count, self.history)
        readings = np.vstack([self._recent(), values])
        # the running sums of squared steps, added one reading at a time as a stream adds them
        steps = np.diff(readings[held - 1 :] if held else readings, axis=0) ** 2
        sums = np.cumsum(np.vstack([self._steps, steps]), axis=0)
        counts = self._n_steps + np.arange(len(sums))
        offset = 1 if held else 0  # without a reading before, the first one adds no step
        scores = np.zeros((n, d))
        if wanted:
            before = np.minimum(self._count + np.arange(n), self.history)  # readings remembered at each
            ends = held + np.arange(n)
            first, last = ends - before, ends - m - zone
            measured = (before >= self.warmup) & (last >= first)
            if measured.any():
                distances = np.column_stack([
                    nearest(readings[:, j], ends[measured], first[measured], last[measured], m, self.normalize)
                    for j in range(d)])
                # the unit in force at reading i is the one after the readings before it
                at = np.flatnonzero(measured) - 1 + offset
                at = np.maximum(at, 0)
                unit = self._unit(sums[at], counts[at, None])
                scores[measured] = self._in_units(distances, unit)
        self._steps, self._n_steps = sums[-1], int(counts[-1])
        return scores

    def _raw_ready(self):
        return max(self.warmup, self.window_ + exclusion_zone(self.window_))

    # --- state ---------------------------------------------------------------------------------
    def _reset(self):
        super()._reset()
        self._steps = np.zeros(len(self.columns_))
        self._n_steps = 0

    def _own_state(self):
        return {"steps": self._steps}, {"window": self.window_, "n_steps": self._n_steps}

    def _set_own_state(self, arrays, meta):
        from normalcy.core.detector import expect_arrays

        expect_arrays(arrays, {"steps": (len(self.columns_),)})
        self.window_ = state_int(meta, "window", 2, self.history)
        if self.window is not None and self.window_ != self.window:
            raise ModelFileError(f"model state 'window' ({self.window_}) differs from the window parameter "
                                 f"({self.window})")
        self._n_steps = state_int(meta, "n_steps", 0, max(self._count - 1, 0))
        self._steps = arrays["steps"].astype(np.float64)

    def _check_params(self):
        super()._check_params()
        if self.window is not None:
            check_int(self, "window", 2, MAX_MEMORY)
            if self.history < self.window + exclusion_zone(self.window) + 1:
                raise DataError(f"history ({self.history}) must be at least window + ceil(window / 4) + 1 = "
                                f"{self.window + exclusion_zone(self.window) + 1} to hold a neighbour")
        elif self.history < 3:
            raise DataError(f"history ({self.history}) must be at least 3 to hold a neighbour")
        if not isinstance(self.normalize, bool):
            raise DataError(f"normalize must be true or false, got {self.normalize!r}")
