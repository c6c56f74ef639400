"""Matrix profile discord distance, causal: for the subsequence of the last `window` readings,
the distance to its nearest neighbour among the earlier subsequences in memory (the left
matrix profile of Yeh et al. 2016 / Zhu et al. 2017, bounded to the last `history` readings).
A subsequence unlike anything seen before is a discord; one that repeats earlier behaviour,
however odd its values, is not.

Distances are between z-normalised subsequences (shape only, the matrix profile's usual
definition) with ``normalize=True``, or plain Euclidean (shape and level) with
``normalize=False``, the default here: most incidents in operational metrics are jumps in
level or amplitude, which z-normalisation removes. The neighbours exclude the trivial-match
zone, subsequences starting within ceil(window / 4) readings of the current one (STUMPY's
convention), and a constant subsequence is at distance 0 from another constant one and
sqrt(window) from any other after z-normalisation (also STUMPY's convention).
Each variable has its own profile, and its distances are put in robust units (against the
median and MAD of its recent distances, see `robust`), so a flagged subsequence names its
variables and one threshold serves series of any scale. The score is given at the reading
that ends the subsequence, the first moment it can be seen: an event is localised to within
`window` readings.

Why not STUMPY: its numba kernels take about 40 s to compile in every new process (measured
on the development machine), which the CLI and the tests would pay on each run, and its
incremental `stumpi` keeps the whole series; one distance profile per reading against a
bounded memory is a few vectorised numpy operations.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from normalcy.core.errors import DataError
from normalcy.timeseries.base import MAX_MEMORY, TimeSeriesDetector, check_int
from normalcy.timeseries.robust import RobustUnits

FLAT = 1e-8  # a subsequence whose standard deviation is below this (relative to its level) is constant


def exclusion_zone(window: int) -> int:
    return math.ceil(window / 4)


class MatrixProfile(RobustUnits, TimeSeriesDetector):
    """Left matrix profile: distance of the last `window` readings to their nearest earlier
    subsequence in memory, in robust units of recent distances.

    Parameters (defaults in brackets):
    - window [16]: subsequence length; the score is given at the reading that ends it.
    - normalize [False]: z-normalise subsequences (shape only) instead of plain Euclidean
      distance (shape and level).
    - scale_window [200]: recent distances whose median and MAD give the robust units.
    - history [1000]: readings remembered; neighbours are searched among them.
    - likelihood [True], averaging [1], likelihood_window [2000]: NAB's anomaly likelihood.
    - warmup [40]: readings learned before scores are computed.
    """

    name = "matrix-profile"

    def __init__(self, history: int = 1000, likelihood: bool = True, averaging: int = 1,
                 likelihood_window: int = 2000, warmup: int = 40, window: int = 16, normalize: bool = False,
                 scale_window: int = 200):
        super().__init__(history, likelihood, averaging, likelihood_window, warmup)
        self.window = window
        self.normalize = normalize
        self.scale_window = scale_window

    def _variable_scores(self, past, x):
        distances = self.distances(past, x)
        return np.zeros(len(x)) if np.isnan(distances).any() else self._in_units(distances)

    def distances(self, past: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The left matrix profile of the subsequence ending at x, per variable (NaN when the
        past holds no neighbour outside the exclusion zone)."""
        m = self.window
        readings = np.vstack([past, x])
        # candidates end at least `exclusion + 1` readings before the current one
        candidates = len(readings) - m - exclusion_zone(m)
        if candidates < 1:
            return np.full(len(x), np.nan)
        query = readings[-m:].T  # d x m
        earlier = sliding_window_view(readings[: candidates + m - 1], m, axis=0)  # c x d x m
        if self.normalize:
            query, earlier = _znorm(query), _znorm(earlier)
        return np.sqrt(((earlier - query) ** 2).sum(axis=2).min(axis=0))

    def _measure_from(self):
        # a neighbour outside the exclusion zone exists once window + zone readings are past
        return max(self.warmup, self.window + exclusion_zone(self.window))

    def _check_params(self):
        super()._check_params()
        check_int(self, "window", 2, MAX_MEMORY)
        if not isinstance(self.normalize, bool):
            raise DataError(f"normalize must be true or false, got {self.normalize!r}")
        if self.history < self.window + exclusion_zone(self.window):
            raise DataError(f"history ({self.history}) must be at least window + ceil(window / 4) = "
                            f"{self.window + exclusion_zone(self.window)} to hold a neighbour")


def _znorm(s: np.ndarray) -> np.ndarray:
    """z-normalise along the last axis; a constant subsequence becomes all zeros."""
    mean = s.mean(axis=-1, keepdims=True)
    std = s.std(axis=-1, keepdims=True)
    flat = std <= FLAT * (np.abs(mean) + 1.0)
    return np.where(flat, 0.0, (s - mean) / np.where(flat, 1.0, std))
