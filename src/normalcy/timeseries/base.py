"""What every time-series detector shares: causal scoring one reading at a time.

A detector keeps a bounded state (the last `history` readings, and for the likelihood the
last `likelihood_window` raw scores), and one step scores a reading from that state alone, so
a score never uses the future. River's streaming convention: `score_one(x)` reads the state,
`learn_one(x)` adds x to it. `decision_function(X)` runs the same step over X in order,
continuing from the fitted state without changing it, so streaming scores equal batch causal
scores (to the last bit on one machine; `normalcy.core.checks.SAVE_LOAD_RTOL` is the promise).

Scores: each variable gets a raw score (how unusual its reading is, in the detector's terms);
the reading's raw score is the largest of them, which names the variables behind a flag
(`explain`: parts are the variables, contributions their raw scores). With
``likelihood=True`` the raw score is turned into a surprise score as NAB's HTM
detector does: the mean raw score over the last `averaging` readings is compared with the
mean and spread of that average over the last `likelihood_window` readings, and the score is
-log10 of the Gaussian tail probability, i.e. "how many nines" the recent behaviour is unusual.

Readings: finite numbers within `data.MAX_READING` (1e30) in magnitude; NaN is a missing
value, carried forward from the last reading. Anything else is refused with a DataError before
it touches the state, so the state, and every later score, stays finite.

Hooks: a concrete detector implements `_variable_scores(past, x)`; one with state beyond the
readings extends `_reset` and `_learned` and saves that state through `_own_state` /
`_set_own_state`. The base encodes input (`as_series`) and runs `_fit_encoded`,
`_score_encoded` and `_explain_encoded` on it.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

import numpy as np
from scipy.special import log_ndtr

from normalcy.core.detector import Detector, expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.results import Explanation
from normalcy.timeseries.data import MAX_READING, READING_RULE, TimeSeries, as_series

LOG10 = math.log(10.0)
MAX_MEMORY = 10_000_000  # readings or scores a detector may be asked to remember


class TimeSeriesDetector(Detector):
    """Base of the time-series detectors; the parameters every one of them takes:

    - history: readings remembered; scores compare a reading with them.
    - likelihood: turn raw scores into NAB's anomaly likelihood (see the module docs).
    - averaging: raw scores averaged for the likelihood's recent behaviour.
    - likelihood_window: raw scores whose averages give the likelihood's mean and spread.
    - warmup: readings learned before scores are computed (earlier ones score 0).

    Subclasses implement `_variable_scores(past, x)`: past is k x d (oldest first,
    warmup <= k <= history), x the current d readings; returns d raw scores.
    """

    modality = "timeseries"
    explains = True
    streams = True  # False: scores a recorded series as a whole, and refuses `learn_one` / `score_one`

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
        self._check_params()
        series = as_series(X)
        self.columns_ = list(series.columns)
        self._prepare(series)
        self._fit_encoded(series)
        return self

    def decision_function(self, X) -> np.ndarray:
        """Causal scores of X as the continuation of what the detector has seen; the state is
        left as it was."""
        return self._score_encoded(self._encode(X))[0]

    def explain(self, X) -> Explanation:
        """Causal scores of X with each variable's raw score (the parts are the variables)."""
        return self._explain_encoded(self._encode(X))

    def score_causal(self, X) -> np.ndarray:
        """Scores of a whole series seen from scratch, learning as it goes (the way NAB runs
        detectors); the detector is left fitted on X."""
        self._check_params()
        series = as_series(X)
        self.columns_ = list(series.columns)
        self._prepare(series)
        self._reset()
        return self._run(series)[0]

    def ready_after(self) -> int:
        """Readings a detector learns before its scores are more than placeholder zeros: the
        warm-up, then what the raw score needs (`_raw_ready`), then, with the likelihood,
        `max(averaging, warmup)` raw scores of the likelihood's own warm-up."""
        ready = self._raw_ready()
        if self.likelihood:
            ready = max(ready, self.warmup + max(self.averaging, self.warmup))
        return ready

    # --- streaming -----------------------------------------------------------------------------
    # `t`, the reading's timestamp, matters only to detectors that use the calendar.
    def learn_one(self, x, t=None) -> "TimeSeriesDetector":
        """Add one reading (a list of d numbers or a dict by variable) to the state."""
        self._check_fitted("columns_")
        self.check_streams()
        self._step(self._one(x), learn=True, t=_second(t))
        return self

    def score_one(self, x, t=None) -> float:
        """The score of one reading as the next in the stream, without learning it."""
        return float(self.explain_one(x, t).scores[0])

    def explain_one(self, x, t=None) -> Explanation:
        """`explain` of one reading, without learning it: one item, parts the variables."""
        self._check_fitted("columns_")
        self.check_streams()
        score, per_variable = self._step(self._one(x), learn=False, t=_second(t))
        return Explanation(np.array([score]), tuple(self.columns_), np.asarray(per_variable, dtype=np.float64)[None])

    def check_streams(self) -> None:
        """DataError unless the detector scores a stream one reading at a time."""
        if not self.streams:
            raise DataError(f"{self.name} scores a recorded series as a whole (it learns from the data it scores), "
                            "so it cannot score a stream one reading at a time; score files with it, or stream "
                            "with a causal detector such as subsequence-join")

    # --- the encoded input -------------------------------------------------------------------
    def _encode(self, X) -> TimeSeries:
        self._check_fitted("columns_")
        series = as_series(X)
        if series.values.shape[1] != len(self.columns_):
            raise DataError(f"the detector was fitted on {len(self.columns_)} variable(s) "
                            f"({', '.join(self.columns_)}), got {series.values.shape[1]}")
        return series

    def _fit_encoded(self, series: TimeSeries) -> None:
        self._reset()
        self._run(series, wanted=False)

    def _score_encoded(self, series: TimeSeries) -> tuple[np.ndarray, np.ndarray]:
        """Scores (n) and raw per-variable scores (n x d) of the series, causally; the state is
        restored afterwards."""
        saved = self._snapshot()
        try:
            return self._run(series)
        finally:
            self._restore(saved)

    def _run(self, series: TimeSeries, wanted: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Score each reading of the series and learn it, in order: scores (n) and raw
        per-variable scores (n x d). Detectors with a batch form (`_batch_variable_scores`) give
        the raw scores of all readings at once (or, when the scores are not `wanted` and the
        likelihood needs none, may only learn them); the likelihood and the readings' memory are
        then carried forward here exactly as `_step` does, one reading after another."""
        values, d = series.values, len(self.columns_)
        per_variable = self._batch_variable_scores(values, wanted or self.likelihood) if len(values) else None
        if per_variable is None:
            out = [self._step(x, learn=True, t=t) for x, t in zip(values, _seconds(series))]
            scores = np.array([s for s, _ in out], dtype=np.float64)
            return scores, np.array([v for _, v in out], dtype=np.float64).reshape(len(out), d)
        n = len(values)
        raw = per_variable.max(axis=1)
        if self.likelihood:
            warm = np.minimum(self._count + np.arange(n), self.history) >= self.warmup
            scores = np.empty(n)
            for i in range(n):
                scores[i] = self._surprise(float(raw[i]))
                if warm[i]:
                    self._push_raw(float(raw[i]))
        else:
            scores = raw.astype(np.float64)
        keep = min(n, self.history)
        self._buffer[(self._count + np.arange(n - keep, n)) % self.history] = values[n - keep :]
        self._last = values[-1].copy()
        self._count += n
        return scores, per_variable

    def _batch_variable_scores(self, values: np.ndarray, wanted: bool = True) -> np.ndarray | None:
        """Optional batch form of `_variable_scores`: the n x d raw scores that scoring and then
        learning each of `values` in turn would give (zeros before the warm-up; any values when
        not `wanted`), leaving the detector's own state as learning them would; the readings'
        memory is not yet updated when it is called. None (the default): no batch form,
        readings go through `_step`."""
        return None

    def _explain_encoded(self, series: TimeSeries) -> Explanation:
        scores, per_variable = self._score_encoded(series)
        return Explanation(scores, tuple(self.columns_), per_variable)

    # --- the step ------------------------------------------------------------------------------
    def _step(self, x: np.ndarray, learn: bool, t: float = math.nan) -> tuple[float, np.ndarray]:
        self._now = t  # seconds since the epoch, NaN when the series has no time
        x = np.where(np.isnan(x), self._last, x) if self._count else x
        if np.isnan(x).any():
            raise DataError("the first reading of a stream has a missing value; nothing to carry forward")
        k = min(self._count, self.history)
        past = self._recent() if k else self._buffer[:0]
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
        # Sums over the rings themselves, not running sums: a huge raw score would leave its
        # rounding error in a running sum for good once it has left the window, and with it
        # a spread that mutes (or fakes) every later alert.
        recent = (_ring_sum(self._raws, self._raw_pos, self.averaging - 1) + raw) / self.averaging
        averages = self._avgs[: min(n, self.likelihood_window)]
        mean = float(np.add.reduce(averages)) / len(averages)
        deviations = averages - mean
        # A floor on the spread: a series that has been perfectly steady must not turn the
        # first tiny wobble into an extreme surprise.
        std = max(math.sqrt(float(np.add.reduce(deviations * deviations)) / len(averages)), 0.05 * abs(mean), 1e-6)
        return float(-log_ndtr(-(recent - mean) / std) / LOG10)

    def _push_raw(self, raw: float) -> None:
        w = self.likelihood_window
        pos = (self._raw_pos + 1) % w
        self._raws[pos] = raw
        # the mean of the last `averaging` raw scores (fewer at the start, still / averaging)
        self._avgs[pos] = _ring_sum(self._raws, pos, min(self._n_raw + 1, self.averaging)) / self.averaging
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

    def _snapshot(self) -> dict:
        """The streaming state (every `_` attribute), to restore after batch scoring. Arrays
        are copied; other state (boosters, components) is replaced on change, never changed
        in place, so keeping a reference keeps it."""
        return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in vars(self).items() if k.startswith("_")}

    def _restore(self, saved: dict) -> None:
        for k in [k for k in vars(self) if k.startswith("_") and k not in saved]:
            delattr(self, k)
        vars(self).update(saved)

    _ARRAYS = ("_buffer", "_last", "_raws", "_avgs")

    def _get_state(self):
        arrays = {k.lstrip("_"): getattr(self, k) for k in self._ARRAYS}
        meta = {"columns": self.columns_, "count": self._count, "raw_pos": self._raw_pos, "n_raw": self._n_raw}
        own_arrays, own_meta = self._own_state()
        return {**arrays, **own_arrays}, {**meta, **own_meta}

    def _set_state(self, arrays, meta):
        columns = meta.get("columns")
        if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
            raise ModelFileError("model state 'columns' must be a non-empty list of variable names")
        self.columns_ = list(columns)
        d, w = len(self.columns_), self.likelihood_window
        expect_arrays(arrays, {"buffer": (self.history, d), "last": (d,), "raws": (w,), "avgs": (w,)})
        self._count = state_int(meta, "count", 0)
        self._n_raw = state_int(meta, "n_raw", 0, self._count)
        self._raw_pos = state_int(meta, "raw_pos", -1, w - 1)
        for k in self._ARRAYS:
            setattr(self, k, arrays[k.lstrip("_")].astype(np.float64))
        for k in ("buffer", "last"):
            if (np.abs(arrays[k]) > MAX_READING).any():
                raise ModelFileError(f"model array {k!r} holds a reading beyond {MAX_READING:g} in magnitude")
        self._set_own_state(arrays, meta)

    # --- hooks -----------------------------------------------------------------------------------
    @abstractmethod
    def _variable_scores(self, past: np.ndarray, x: np.ndarray) -> np.ndarray:
        """d raw scores of reading x given the past readings (k x d, oldest first)."""

    def _prepare(self, series: TimeSeries) -> None:
        """Called by `fit` and `score_causal` (and the fit job, before `ready_after`) with the
        whole series first learned: settings a detector takes from the data (a window from its
        period) are set here, before any reading is learned."""

    def _raw_ready(self) -> int:
        """Readings learned before raw scores are more than placeholder zeros."""
        return self.warmup

    def _learned(self) -> None:
        """Called after each reading is learned, for detectors with state beyond the readings
        (they extend _reset and save that state through _own_state / _set_own_state)."""

    def _own_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """A detector's state beyond the readings, as arrays and JSON-safe metadata."""
        return {}, {}

    def _set_own_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Restore what `_own_state` gave; ModelFileError on anything unexpected."""

    def _recent(self) -> np.ndarray:
        """The remembered readings, oldest first (k x d)."""
        k = min(self._count, self.history)
        return np.roll(self._buffer, -(self._count % self.history), axis=0)[self.history - k :]

    # --- checks ----------------------------------------------------------------------------------
    def _check_params(self) -> None:
        for name in ("history", "averaging", "likelihood_window"):
            check_int(self, name, 1, MAX_MEMORY)
        warmup = self.warmup
        if not (isinstance(warmup, int) and not isinstance(warmup, bool) and 1 <= warmup <= self.history):
            raise DataError(f"warmup must be an integer in [1, history={self.history}], got {self.warmup!r}")
        if not isinstance(self.likelihood, bool):
            raise DataError(f"likelihood must be true or false, got {self.likelihood!r}")
        if self.averaging > self.likelihood_window:
            raise DataError(f"averaging ({self.averaging}) must not exceed "
                            f"likelihood_window ({self.likelihood_window})")

    def _one(self, x) -> np.ndarray:
        if isinstance(x, dict):
            missing = [c for c in self.columns_ if c not in x]
            if missing:
                raise DataError(f"reading lacks variable(s) {', '.join(missing)}")
            x = [x[c] for c in self.columns_]
        try:
            a = np.asarray(x, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise DataError(f"a reading must be numbers, got {str(x)[:80]}") from exc
        if a.size != len(self.columns_):
            raise DataError(f"a reading needs {len(self.columns_)} value(s) ({', '.join(self.columns_)}), got {a.size}")
        with np.errstate(invalid="ignore"):
            bad = np.flatnonzero(np.abs(a) > MAX_READING)
        if bad.size:
            raise DataError(f"variable {self.columns_[bad[0]]!r} is {a[bad[0]]:g}; {READING_RULE}; "
                            "the reading was not learned")
        return a


def _ring_sum(ring: np.ndarray, end: int, count: int) -> float:
    """The sum of the `count` entries of a ring buffer that end at index `end`."""
    start = end - count + 1
    if start >= 0:
        return float(np.add.reduce(ring[start : end + 1]))
    return float(np.add.reduce(ring[start:])) + float(np.add.reduce(ring[: end + 1]))


def check_int(detector, name: str, low: int, high: int) -> None:
    """DataError unless the parameter `name` is an integer in [low, high]."""
    value = getattr(detector, name)
    if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
        raise DataError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


def state_int(meta: dict, key: str, low: int, high: int | None = None) -> int:
    """An integer from a model file's state, within [low, high]; ModelFileError otherwise."""
    value = meta.get(key)
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= low
            and (high is None or value <= high)):
        bounds = f"[{low}, {high if high is not None else 'inf'}]"
        raise ModelFileError(f"model state {key!r} must be an integer in {bounds}, got {value!r:.40}")
    return value


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
    except (TypeError, ValueError, OverflowError) as exc:
        raise DataError(f"a reading's time must be a timestamp, got {str(t)[:80]}") from exc
