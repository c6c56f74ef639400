"""Rolling median / MAD z-score: how many robust standard deviations a reading lies from the
median of the last `history` readings. Outliers in the window barely move the median and
the MAD, so one spike does not hide the next."""

from __future__ import annotations

import numpy as np

from normalcy.timeseries.base import TimeSeriesDetector

MAD_TO_STD = 1.4826  # MAD of a Gaussian times this is its standard deviation


class RollingMAD(TimeSeriesDetector):
    """Robust z-score: how many rolling MADs (scaled to a standard deviation) a reading lies
    from the median of the last `history` readings.

    Parameters (defaults in brackets):
    - history [100]: readings the median and MAD are taken over.
    - likelihood [True]: turn raw scores into NAB's anomaly likelihood.
    - averaging [1]: raw scores averaged for the likelihood (1: a spike counts alone).
    - likelihood_window [2000]: raw scores whose averages give the likelihood's mean and spread.
    - warmup [20]: readings learned before scores are computed.
    """

    name = "rolling-mad"

    # averaging=1: a spike is one reading, and a 10-reading mean before the likelihood dilutes
    # it (on NAB, standard profile: 22 with 1, 8 with 10).
    def __init__(self, history: int = 100, likelihood: bool = True, averaging: int = 1,
                 likelihood_window: int = 2000, warmup: int = 20):
        super().__init__(history, likelihood, averaging, likelihood_window, warmup)

    def _variable_scores(self, past, x):
        median = np.median(past, axis=0)
        mad = MAD_TO_STD * np.median(np.abs(past - median), axis=0)
        # A window of identical readings has MAD 0: any change from it is then measured
        # against a tiny spread relative to the level, not divided by zero.
        scale = np.maximum(mad, 1e-6 * (np.abs(median) + 1.0))
        return np.abs(x - median) / scale
