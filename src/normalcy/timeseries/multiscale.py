"""Multi-scale range novelty, the default time-series detector.

Range novelty (see `novelty`) asks whether a reading goes beyond everything in the remembered
past. Many incidents do not break the range of single readings but do break it at a coarser
scale: a level that holds for an hour, a day that is busier than any before, a signal that
goes flat or turns noisy. So the same question is asked of a few features of each variable:
the mean of the last w readings for each w in `windows` (w=1 is the reading itself) and the
standard deviation of the last `spread_window` readings. Each feature's excess beyond its own
past range, as a fraction of that range, is divided by the feature's tolerance; a variable's
raw score is the largest of these, so a score of 1 means "some feature is new by exactly its
tolerance". Defaults (hour and day windows at 5-minute sampling) were chosen on NAB.

One incident produces many novel readings. After a reading scores at least 1, the scores of
the next `rearm` readings are multiplied by `rearm_damping`, so during an incident only a
clearly larger excursion alerts again (an alert cooldown that still lets escalation through).

`alert_level` = 2 is the floor `normalcy ts fit` puts under a false-alarm-rate threshold: the
best single threshold over the NAB corpus is 2.1 in these units, and a quiet hold-out would
otherwise put the threshold just above 0.
"""

from __future__ import annotations

import numpy as np

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError
from normalcy.timeseries.base import TimeSeriesDetector, state_int
from normalcy.timeseries.novelty import range_excess


class MultiScaleNovelty(TimeSeriesDetector):
    """Range novelty of each reading, of its means over `windows` readings and of its spread
    over `spread_window` readings, each in units of its tolerance (the default detector).

    Parameters (defaults in brackets):
    - history [8000]: past values of each feature whose range a new value is compared with.
    - windows [(1, 12, 288)]: readings each mean feature averages (1: the reading itself).
    - tolerances [(0.002, 0.02, 0.05)]: per window, the excess (as a fraction of the
      feature's past range) that scores 1.
    - spread_window [288], spread_tolerance [0.1]: the standard-deviation feature.
    - rearm [1000], rearm_damping [0.5]: after a score of 1 or more, the next `rearm` scores
      are multiplied by `rearm_damping`.
    - likelihood [False], averaging [10], likelihood_window [2000]: NAB's anomaly likelihood.
    - warmup [20]: past values a feature needs before it is scored.
    """

    name = "multiscale-novelty"
    alert_level = 2.0

    def __init__(self, history: int = 8000, likelihood: bool = False, averaging: int = 10,
                 likelihood_window: int = 2000, warmup: int = 20, windows: tuple = (1, 12, 288),
                 tolerances: tuple = (0.002, 0.02, 0.05), spread_window: int = 288, spread_tolerance: float = 0.1,
                 rearm: int = 1000, rearm_damping: float = 0.5):
        super().__init__(history, likelihood, averaging, likelihood_window, warmup)
        self.windows = windows
        self.tolerances = tolerances
        self.spread_window = spread_window
        self.spread_tolerance = spread_tolerance
        self.rearm = rearm
        self.rearm_damping = rearm_damping

    # --- features ----------------------------------------------------------------------------------
    @property
    def _spans(self) -> list[int]:
        """Readings each feature needs: the mean windows, then the spread window."""
        return [*self.windows, self.spread_window]

    def _features(self, latest: np.ndarray) -> np.ndarray:
        """Features (F x d) of the last readings `latest` (oldest first, at least max span)."""
        means = [latest[-w:].mean(axis=0) for w in self.windows]
        return np.vstack([*means, latest[-self.spread_window :].std(axis=0)])

    def _variable_scores(self, past, x):
        latest = np.vstack([past[-(max(self._spans) - 1) :], x]) if max(self._spans) > 1 else x[None]
        current = self._features(latest)
        scores = np.zeros(len(x))
        for f, (span, tolerance) in enumerate(zip(self._spans, [*self.tolerances, self.spread_tolerance])):
            known = min(self._count - span + 1, self.history)  # past values of this feature
            if len(latest) < span or known < self.warmup:
                continue
            history = self._derived[f, :known] if known < self.history else self._derived[f]
            scores = np.maximum(scores, range_excess(history, current[f]) / tolerance)
        return scores

    def _raw_ready(self):
        # the feature with the shortest span is scored once it has `warmup` past values
        return self.warmup + min(self._spans) - 1

    # --- the cooldown ----------------------------------------------------------------------------
    def _step(self, x, learn, t=float("nan")):
        score, per_variable = super()._step(x, learn, t)
        if self._quiet > 0:
            score *= self.rearm_damping
        if learn:
            self._quiet = self.rearm if score >= 1.0 else max(self._quiet - 1, 0)
        return score, per_variable

    def _learned(self):
        super()._learned()
        # The feature values of the reading just learned join their own histories once the
        # reading completes a feature's window; histories are rings like the readings' buffer.
        n = min(self._count, max(self._spans), self.history)
        latest = self._buffer[np.arange(self._count - n, self._count) % self.history]
        features = self._features(latest)
        for f, span in enumerate(self._spans):
            if self._count >= span:
                self._derived[f, (self._count - span) % self.history] = features[f]

    # --- state -------------------------------------------------------------------------------------
    def _reset(self):
        super()._reset()
        self._derived = np.zeros((len(self._spans), self.history, len(self.columns_)))
        self._quiet = 0

    def _own_state(self):
        return {"derived": self._derived}, {"quiet": self._quiet}

    def _set_own_state(self, arrays, meta):
        expect_arrays(arrays, {"derived": (len(self._spans), self.history, len(self.columns_))})
        self._quiet = state_int(meta, "quiet", 0, self.rearm)
        self._derived = arrays["derived"].astype(np.float64)

    def _check_params(self):
        super()._check_params()
        windows, tolerances = self.windows, self.tolerances
        if (not isinstance(windows, (list, tuple)) or not isinstance(tolerances, (list, tuple))
                or not windows or len(windows) != len(tolerances)):
            raise DataError(f"windows {windows!r} and tolerances {tolerances!r} must be non-empty lists "
                            "of equal length")
        for w in [*windows, self.spread_window]:
            if not (isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= self.history):
                raise DataError(f"feature windows must be integers in [1, history={self.history}], got {w!r}")
        if self.spread_window < 2:
            raise DataError(f"spread_window must be at least 2 readings, got {self.spread_window}")
        for t in [*tolerances, self.spread_tolerance]:
            if not (isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t < float("inf")):
                raise DataError(f"tolerances must be positive numbers, got {tolerances!r} "
                                f"and {self.spread_tolerance!r}")
        if not (isinstance(self.rearm, int) and not isinstance(self.rearm, bool) and self.rearm >= 0) or not (
                isinstance(self.rearm_damping, (int, float)) and 0.0 <= self.rearm_damping <= 1.0):
            raise DataError(f"rearm must be an integer >= 0 and rearm_damping in [0, 1], "
                            f"got {self.rearm!r} and {self.rearm_damping!r}")
