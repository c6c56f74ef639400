"""Spectral residual (Ren et al., "Time-Series Anomaly Detection Service at Microsoft", KDD
2019): remove the smooth part of the log amplitude spectrum of the recent window; what
remains, transformed back, is a saliency map that peaks where the series does something its
recent rhythm does not explain. Causal: the window is the last `history` readings plus the
current one, extended by a few extrapolated points so the current reading is not at the
window's edge, where the transform is least reliable."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

from normalcy.timeseries.base import TimeSeriesDetector

EXTEND = 5  # points appended after the current reading (the paper's kappa)
AVERAGE = 3  # width of the moving average over the log spectrum (the paper's q)
LOCAL = 21  # readings whose mean saliency the current one is compared with (the paper's z)


class SpectralResidual(TimeSeriesDetector):
    """Saliency of the current reading in the spectral residual of the recent window (Ren et
    al. 2019), relative to the mean saliency of the readings before it.

    Parameters (defaults in brackets):
    - history [64]: readings in the window transformed with the current one.
    - likelihood [False]: turn raw scores into NAB's anomaly likelihood.
    - averaging [10], likelihood_window [2000]: the likelihood's recent mean and its window.
    - warmup [32]: readings learned before scores are computed.
    """

    name = "spectral-residual"

    def __init__(self, history: int = 64, likelihood: bool = False, averaging: int = 10,
                 likelihood_window: int = 2000, warmup: int = 32):
        super().__init__(history, likelihood, averaging, likelihood_window, warmup)

    def _variable_scores(self, past, x):
        window = np.vstack([past, x])
        # The paper extrapolates with the recent slope, but a spike in the current reading
        # then pulls the extension up with it and steals its saliency: continue instead with
        # the median of the past, what the series would do if nothing happened.
        extended = np.vstack([window, np.repeat(np.median(past, axis=0)[None], EXTEND, axis=0)])
        spectrum = np.fft.fft(extended, axis=0)
        log_amplitude = np.log(np.abs(spectrum) + 1e-8)
        residual = log_amplitude - uniform_filter1d(log_amplitude, AVERAGE, axis=0, mode="nearest")
        saliency = np.abs(np.fft.ifft(np.exp(residual + 1j * np.angle(spectrum)), axis=0))
        now = len(window) - 1
        local = saliency[max(0, now - LOCAL) : now].mean(axis=0)
        return np.maximum(saliency[now] - local, 0.0) / np.maximum(local, 1e-8)
