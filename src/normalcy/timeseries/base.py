"""What every time-series detector shares: causal scoring one reading at a time.

A detector keeps a bounded state (the last `history` readings, and for the likelihood the
last `likelihood_window` raw scores), and one step scores a reading from that state alone, so
a score never uses the future. River's streaming convention: `score_one(x)` reads the state,
`learn_one(x)` adds x to it. `score(X)` runs the same step over X in order, continuing from the
fitted state without changing it, so streaming scores equal batch causal scores exactly.

Scores: each variable gets a raw score (how unusual its reading is, in the detector's terms);
the reading's raw score is the largest of them, which names the variables behind a flag. With
``likelihood=True`` the raw score is turned into a surprise score as NAB's HTM
detector does: the mean raw score over the last `averaging` readings is compared with the
mean and spread of that average over the last `likelihood_window` readings, and the score is
-log10 of the Gaussian tail probability, i.e. "how many nines" the recent behaviour is unusual.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import numpy as np
from scipy.special import log_ndtr

from normalcy.core.detector import Detector, expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.timeseries.data import TimeSeries, as_series

LOG10 = math.log(10.0)


class TimeSeriesDetector(Detector):
    """Subclasses implement `_variable_scores(past, x)`: past is k x d (oldest first,
    warmup <= k <= history), x the current d readings; returns d raw scores."""

    def __init__(self, history: int = 100, likelihood: bool = True, averaging: int = 10,
                 likelihood_window: int = 2000, warmup: int = 20):
        self.history = history
        self.likelihood = likelihood
        self.averaging = averaging
        self.likelihood_window = likelihood_window
        self.warmup = warmup

    # --- batch ---------------------------------------------------------------------------------
    def fit(self, X, y=None) -> "TimeSeriesDetector":
        """Learn X in order: its recent past becomes the state that scoring goes on from."""
        series = as_series(X)
        self._validate()
        self.columns_ = list(series.columns)
        self._reset()
        for x, t in zip(series.values, _seconds(series)):
            self._step(x, learn=True, t=t)
        return self

    def score(self, X) -> np.ndarray:
        """Causal scores of X as the continuation of what the detector has seen."""
        return self.score_details(X)[0]

    def score_details(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Scores (n) and raw per-variable scores (n x d) of X, causally."""
        self._check_fitted("columns_")
        series = self._check_columns(as_series(X))
        saved = self._stream_state()
        try:
            out = [self._step(x, learn=True, t=t) for x, t in zip(series.values, _seconds(series))]
        finally:
            self._restore_stream(saved)
        scores = np.array([s for s, _ in out], dtype=np.float64)
        return scores, np.array([v for _, v in out], dtype=np.float64).reshape(len(out), -1)

    def score_causal(self, X) -> np.ndarray:
        """Scores of a whole series seen from scratch, learning as it goes (the way NAB runs
        detectors); the detector is left fitted on X."""
        series = as_series(X)
        self._validate()
        self.columns_ = list(series.columns)
        self._reset()
        return np.array([self._step(x, learn=True, t=t)[0] for x, t in zip(series.values, _seconds(series))])

    # --- streaming -----------------------------------------------------------------------------
    # `t`, the reading's timestamp, matters only to detectors that use the calendar.
    def learn_one(self, x, t=None) -> "TimeSeriesDetector":
        self._check_fitted("columns_")
        self._step(self._one(x), learn=True, t=_second(t))
        return self

    def score_one(self, x, t=None) -> float:
        return self.explain_one(x, t)[0]

    def explain_one(self, x, t=None) -> tuple[float, dict[str, float]]:
        """The score of one reading and each variable's raw score, without learning it."""
        self._check_fitted("columns_")
        score, per_variable = self._step(self._one(x), learn=False, t=_second(t))
        return score, dict(zip(self.columns_, map(float, per_variable)))

    # --- the step ------------------------------------------------------------------------------
    def _step(self, x: np.ndarray, learn: bool, t: float = math.nan) -> tuple[float, np.ndarray]:
        self._now = t  # seconds since the epoch, NaN when the series has no time
        x = np.where(np.isnan(x), self._last, x) if self._count else x
        if np.isnan(x).any():
            raise DataError("the first reading of a stream has a missing value; nothing to carry forward")
        k = min(self._count, self.history)
        past = np.roll(self._buffer, -(self._count % self.history), axis=0)[self.history - k :] if k else self._buffer[:0]
        warm = k >= self.warmup
        per_variable = self._variable_scores(past, x) if warm else np.zeros(len(x))
        raw = float(per_variable.max())
        score = self._surprise(raw) if self.likelihood else raw
        if learn:
            self._buffer[self._count % self.history] = x
            self._last = x
            self._count += 1
            if self.likelihood and warm:  # raw scores of the warm-up are placeholders, not data
                self._push_raw(raw)
            self._learned()
        return score, per_variable

    def _surprise(self, raw: float) -> float:
        n = self._n_raw
        if n < max(self.averaging, self.warmup):
            return 0.0
        recent = (self._recent_sum - self._raws[(self._raw_pos - self.averaging + 1) % self.likelihood_window] + raw
                  if self.averaging > 1 else raw) / self.averaging
        mean = self._avg_sum / min(n, self.likelihood_window)
        var = max(self._avg_sq / min(n, self.likelihood_window) - mean * mean, 0.0)
        # A floor on the spread: a series that has been perfectly steady must not turn the
        # first tiny wobble into an extreme surprise.
        std = max(math.sqrt(var), 0.05 * abs(mean), 1e-6)
        return float(-log_ndtr(-(recent - mean) / std) / LOG10)

    def _push_raw(self, raw: float) -> None:
        w = self.likelihood_window
        pos = (self._raw_pos + 1) % w
        old_avg = self._avgs[pos] if self._n_raw >= w else 0.0
        self._recent_sum += raw - (self._raws[(pos - self.averaging) % w] if self._n_raw >= self.averaging else 0.0)
        self._raws[pos] = raw
        avg = self._recent_sum / self.averaging
        self._avgs[pos] = avg
        self._avg_sum += avg - old_avg
        self._avg_sq += avg * avg - old_avg * old_avg
        self._raw_pos = pos
        self._n_raw += 1

    # --- state -----------------------------------------------------------------------------------
    def _reset(self) -> None:
        d = len(self.columns_)
        self._buffer = np.zeros((self.history, d))
        self._last = np.zeros(d)
        self._count = 0
        self._raws = np.zeros(self.likelihood_window)
        self._avgs = np.zeros(self.likelihood_window)
        self._raw_pos = -1
        self._n_raw = 0
        self._recent_sum = self._avg_sum = self._avg_sq = 0.0

    _SCALARS = ("_count", "_raw_pos", "_n_raw", "_recent_sum", "_avg_sum", "_avg_sq")
    _ARRAYS = ("_buffer", "_last", "_raws", "_avgs")

    def _stream_state(self) -> dict:
        return {**{k: getattr(self, k) for k in self._SCALARS}, **{k: getattr(self, k).copy() for k in self._ARRAYS}}

    def _restore_stream(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)

    def _get_state(self):
        arrays = {k.lstrip("_"): getattr(self, k) for k in self._ARRAYS}
        return arrays, {"columns": self.columns_, **{k.lstrip("_"): getattr(self, k) for k in self._SCALARS}}

    def _set_state(self, arrays, meta):
        try:
            self.columns_ = [str(c) for c in meta["columns"]]
            scalars = {k: meta[k.lstrip("_")] for k in self._SCALARS}
        except (KeyError, TypeError) as exc:
            raise ModelFileError(f"model state is missing {exc}") from exc
        d, w = len(self.columns_), self.likelihood_window
        expect_arrays(arrays, {"buffer": (self.history, d), "last": (d,), "raws": (w,), "avgs": (w,)})
        for k, v in scalars.items():
            setattr(self, k, int(v) if k in ("_count", "_raw_pos", "_n_raw") else float(v))
        for k in self._ARRAYS:
            setattr(self, k, arrays[k.lstrip("_")].astype(np.float64))

    # --- hooks -----------------------------------------------------------------------------------
    @abstractmethod
    def _variable_scores(self, past: np.ndarray, x: np.ndarray) -> np.ndarray:
        """d raw scores of reading x given the past readings (k x d, oldest first)."""

    def _learned(self) -> None:
        """Called after each reading is learned, for detectors with state beyond the readings
        (they extend _reset, _stream_state, _get_state and _set_state to match)."""

    def _recent(self) -> np.ndarray:
        """The remembered readings, oldest first (k x d)."""
        k = min(self._count, self.history)
        return np.roll(self._buffer, -(self._count % self.history), axis=0)[self.history - k :]

    # --- checks ----------------------------------------------------------------------------------
    def _validate(self) -> None:
        for name in ("history", "averaging", "likelihood_window"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise DataError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.warmup, int) and 1 <= self.warmup <= self.history):
            raise DataError(f"warmup must be an integer in [1, history={self.history}], got {self.warmup!r}")
        if self.averaging > self.likelihood_window:
            raise DataError(f"averaging ({self.averaging}) must not exceed likelihood_window ({self.likelihood_window})")

    def _check_columns(self, series: TimeSeries) -> TimeSeries:
        if series.values.shape[1] != len(self.columns_):
            raise DataError(f"the detector was fitted on {len(self.columns_)} variable(s) "
                            f"({', '.join(self.columns_)}), got {series.values.shape[1]}")
        return series

    def _one(self, x) -> np.ndarray:
        if isinstance(x, dict):
            missing = [c for c in self.columns_ if c not in x]
            if missing:
                raise DataError(f"reading lacks variable(s) {', '.join(missing)}")
            x = [x[c] for c in self.columns_]
        try:
            a = np.asarray(x, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise DataError(f"a reading must be numbers, got {x!r}") from exc
        if a.size != len(self.columns_):
            raise DataError(f"a reading needs {len(self.columns_)} value(s) ({', '.join(self.columns_)}), got {a.size}")
        return a


def _seconds(series: TimeSeries) -> np.ndarray:
    """Each reading's time in seconds since the epoch, NaN where the series has no time."""
    if series.timestamps is None:
        return np.full(len(series), math.nan)
    return series.timestamps.astype("datetime64[ns]").astype(np.int64) / 1e9


def _second(t) -> float:
    if t is None:
        return math.nan
    try:
        return float(np.datetime64(t, "ns").astype(np.int64)) / 1e9
    except (TypeError, ValueError) as exc:
        raise DataError(f"a reading's time must be a timestamp, got {t!r}") from exc
