"""Robust units for detectors whose raw measure (a forecast residual, a discord distance, a
reconstruction error) is in the data's units: each variable's measure is compared with the
median and MAD of its last `scale_window` values. That makes scores comparable across
variables (so the largest names the variable) and across series (so one threshold can serve
many), and a measure that is large but usual for a variable stops alarming. On a series
that has been flat the MAD is near 0 and the units explode, so the detectors using this
default to ``likelihood=True``: on NAB (standard profile, corpus-wide threshold) the raw units
score about 1 and the likelihood over them 19-36."""

from __future__ import annotations

import numpy as np

from normalcy.core.detector import expect_arrays
from normalcy.timeseries.base import MAX_MEMORY, check_int, state_int

MAD_TO_STD = 1.4826
MIN_SEEN = 10  # measures seen before their spread means anything


class RobustUnits:
    """Mixin for a TimeSeriesDetector (list it first); the subclass takes `scale_window` and
    calls `_in_units(measure)` from `_variable_scores`, and says in `_measure_from` at which
    reading its measure is first computed."""

    two_sided = False  # residuals are signed; distances and errors are not

    def _in_units(self, measure: np.ndarray) -> np.ndarray:
        self._pending = measure  # learned with the reading, if it is learned
        m = min(self._n_seen, self.scale_window)
        if m < MIN_SEEN:
            return np.zeros(len(measure))
        seen = self._seen[:m]
        median = np.median(seen, axis=0)
        scale = MAD_TO_STD * np.median(np.abs(seen - median), axis=0)
        # A measure that has been constant (MAD 0) is measured against a tiny spread.
        scale = np.maximum(scale, 1e-6 * (np.abs(median) + 1.0))
        z = (measure - median) / scale
        return np.abs(z) if self.two_sided else np.maximum(z, 0.0)

    def _measure_from(self) -> int:
        """The first reading (0-based) whose measure is computed."""
        return self.warmup

    def _raw_ready(self):
        return max(super()._raw_ready(), self._measure_from() + MIN_SEEN)

    def _learned(self):
        super()._learned()
        if self._pending is not None:
            self._seen[self._n_seen % self.scale_window] = self._pending
            self._n_seen += 1
        self._pending = None

    def _reset(self):
        super()._reset()
        self._seen = np.zeros((self.scale_window, len(self.columns_)))
        self._n_seen = 0
        self._pending = None

    def _own_state(self):
        arrays, meta = super()._own_state()
        return {**arrays, "seen": self._seen}, {**meta, "n_seen": self._n_seen}

    def _set_own_state(self, arrays, meta):
        super()._set_own_state(arrays, meta)
        expect_arrays(arrays, {"seen": (self.scale_window, len(self.columns_))})
        self._n_seen = state_int(meta, "n_seen", 0, self._count)
        self._seen = arrays["seen"].astype(np.float64)
        self._pending = None

    def _check_params(self):
        super()._check_params()
        check_int(self, "scale_window", MIN_SEEN, MAX_MEMORY)
