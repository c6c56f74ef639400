"""Windowed isolation forest over a recorded series, scored as a whole (transductive).

The subsequences (`window` readings, one per reading) of the training readings and of the
series being scored are pooled, an isolation forest (Liu et al. 2008) is fitted on them, and a
subsequence that few random cuts isolate is anomalous; a reading's score is the mean over the
subsequences that contain it. This is how TSB-AD scores its series (its `IForest`, the best
of its algorithms on MSL in our benchmark): the forest sees the readings it scores, so normal
behaviour that only the new data shows (a new regime after a change) counts as normal once it
is common, and what stays rare stands out. The price: a score depends on the whole batch it
came in, later readings included. So this detector scores recorded files (`ts evaluate`, `ts
score`, Spark's per-key batch scoring), never streams: `learn_one` / `score_one` refuse, and
it is not a candidate for the default, which must stream.

Each variable has its own forest (cost linear in variables; the largest score names the
variable). On a long file the forests are fitted on a seeded sample of `FIT_WINDOWS`
subsequences (each tree draws 256 anyway), and every subsequence is scored. Scores are the
forest's anomaly scores, 2^(-mean path length / c(n)) in (0, 1): about 0.5 and below for
ordinary subsequences, towards 1 for isolated ones, on one scale for every variable. Seeded:
the same data gives the same scores.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.ensemble import IsolationForest

from normalcy.core.errors import DataError, ModelFileError
from normalcy.timeseries.base import MAX_MEMORY, TimeSeriesDetector, check_int, state_int
from normalcy.timeseries.join import period

MIN_WINDOWS = 10  # subsequences, at least, for a forest
MAX_TREES = 10_000
# Each tree sees 256 subsequences drawn from those it is fitted on; beyond this many, a seeded
# sample of them is what the trees draw from, so memory stays bounded on long files.
FIT_WINDOWS = 100_000
CHUNK = 20_000  # subsequences scored at a time (scikit-learn copies its input to float32)


class WindowIsolationForest(TimeSeriesDetector):
    """Isolation-forest score of each reading's subsequences, the forest fitted on the training
    readings and the scored series together (scores a batch as a whole; does not stream).

    Parameters (defaults in brackets):
    - window [None]: subsequence length; None takes the training data's period (see
      `join.period`; TSB-AD's choice).
    - n_estimators [100]: trees per forest.
    - seed [0]: the forests' random state.
    - history [20000]: training readings remembered and pooled with the scored series.
    - likelihood [False], averaging [1], likelihood_window [2000]: NAB's anomaly likelihood.
    - warmup [20]: readings before scores are computed when a series is scored from scratch.
    """

    name = "window-iforest"
    streams = False

    def __init__(self, history: int = 20000, likelihood: bool = False, averaging: int = 1,
                 likelihood_window: int = 2000, warmup: int = 20, window: int | None = None,
                 n_estimators: int = 100, seed: int = 0):
        super().__init__(history, likelihood, averaging, likelihood_window, warmup)
        self.window = window
        self.n_estimators = n_estimators
        self.seed = seed

    def _prepare(self, series):
        if self.window is not None:
            self.window_ = self.window
        else:  # at most a quarter of the data, and what the memory holds
            self.window_ = max(2, min(period(series.values), len(series.values) // 4, self.history))

    def _batch_variable_scores(self, values, wanted=True):
        n, d = values.shape
        scores = np.zeros((n, d))
        past = self._recent()
        m = self.window_
        readings = np.vstack([past, values])
        if not wanted or len(readings) < m + MIN_WINDOWS - 1:
            return scores
        held = len(past)
        first = max(held - m + 1, 0)  # the first subsequence holding a reading of `values`
        total = len(readings) - m + 1  # subsequences
        covering = np.convolve(np.ones(total), np.ones(m))[held:]  # subsequences per reading
        sample = slice(None) if total <= FIT_WINDOWS else \
            np.sort(np.random.default_rng(self.seed).choice(total, FIT_WINDOWS, replace=False))
        for j in range(d):
            windows = sliding_window_view(readings[:, j], m)
            forest = IsolationForest(n_estimators=self.n_estimators, random_state=self.seed).fit(windows[sample])
            found = np.concatenate([-forest.score_samples(windows[k : k + CHUNK])
                                    for k in range(first, len(windows), CHUNK)])
            # each reading: the mean over the subsequences that hold it
            spread = np.convolve(found, np.ones(m))[held - first : held - first + n]
            scores[:, j] = spread / covering
        scores[self._count + np.arange(n) < self._raw_ready()] = 0.0  # as if scored from scratch
        return scores

    def _variable_scores(self, past, x):  # never called: the batch form scores everything
        self.check_streams()

    def _raw_ready(self):
        return max(self.warmup, self.window_ + MIN_WINDOWS - 1)

    # --- state ---------------------------------------------------------------------------------
    def _own_state(self):
        return {}, {"window": self.window_}

    def _set_own_state(self, arrays, meta):
        self.window_ = state_int(meta, "window", 2, self.history)
        if self.window is not None and self.window_ != self.window:
            raise ModelFileError(f"model state 'window' ({self.window_}) differs from the window parameter "
                                 f"({self.window})")

    def _check_params(self):
        super()._check_params()
        if self.window is not None:
            check_int(self, "window", 2, MAX_MEMORY)
            if self.history < self.window:
                raise DataError(f"history ({self.history}) must hold a window ({self.window})")
        check_int(self, "n_estimators", 1, MAX_TREES)
        check_int(self, "seed", 0, 2**32 - 1)
