"""Windowed PCA: the reconstruction error of the last `window` readings from the principal
components of earlier windows. Windows of normal behaviour lie close to a few directions (a
rhythm, a slope, a typical wiggle); a window that does something new does not, and what PCA
cannot reconstruct of it is the score.

Each window has its mean removed first, so the components describe shape and a series at a
new level is judged by its shape there. Each variable has its own PCA: one fitted across
variables spreads a spike in one variable over the reconstruction of the others and blames
them too. The error is put in robust units (see `robust`), so a flagged window names its
variables. The components keep `variance` of the training windows' variance, at most half the
window's dimensions, so noise is not learned too.

Causal: the components are fitted on the windows inside the remembered readings (the last
`history`), first once there are enough, then each time the memory has doubled, then every
`refit_every` readings; streaming and batch fit at the same readings. The score is given at
the reading that ends the window, so an event is localised to within `window` readings.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.timeseries.base import MAX_MEMORY, TimeSeriesDetector, check_int, state_int
from normalcy.timeseries.robust import RobustUnits

MIN_WINDOWS = 10  # training windows before the first fit


class WindowPCA(RobustUnits, TimeSeriesDetector):
    """Reconstruction error of the last `window` readings (level removed) from a per-variable
    PCA of earlier windows, in robust units of recent errors.

    Parameters (defaults in brackets):
    - window [16]: readings per window; the score is given at the reading that ends it.
    - variance [0.9]: share of the training windows' variance the components keep (at most
      window // 2 components).
    - refit_every [500]: readings between refits, once the memory has filled.
    - scale_window [200]: recent errors whose median and MAD give the robust units.
    - history [2000]: readings remembered; the components are fitted on their windows.
    - likelihood [True], averaging [1], likelihood_window [2000]: NAB's anomaly likelihood.
    - warmup [40]: readings learned before scores are computed.
    """

    name = "window-pca"

    def __init__(self, history: int = 2000, likelihood: bool = True, averaging: int = 1,
                 likelihood_window: int = 2000, warmup: int = 40, window: int = 16, variance: float = 0.9,
                 refit_every: int = 500, scale_window: int = 200):
        super().__init__(history, likelihood, averaging, likelihood_window, warmup)
        self.window = window
        self.variance = variance
        self.refit_every = refit_every
        self.scale_window = scale_window

    def _variable_scores(self, past, x):
        if self._components is None:
            return np.zeros(len(x))
        current = np.vstack([past[-(self.window - 1) :], x]).T[None]  # 1 x d x window
        return self._in_units(self.errors(current)[0])

    def errors(self, windows: np.ndarray) -> np.ndarray:
        """Squared reconstruction error per window and variable of windows (n x d x window)."""
        centred = windows - windows.mean(axis=2, keepdims=True) - self._mean
        # components: d x kept x window, zero rows where a variable keeps fewer. Products then
        # sums rather than einsum/BLAS, whose rounding depends on memory alignment: a loaded
        # model must give bit-identical scores.
        coordinates = (centred[:, :, None, :] * self._components[None]).sum(axis=3)
        residual = centred - (coordinates[..., None] * self._components[None]).sum(axis=2)
        return (residual**2).sum(axis=2)

    def _learned(self):
        super()._learned()
        k = min(self._count, self.history)
        enough = k >= max(self.warmup, self.window + MIN_WINDOWS - 1)
        if (self._components is None and enough) or (
                self._components is not None and self._count - self._fitted_at >= min(self.refit_every, self._fitted_at)):
            self._fit_components()

    def _fit_components(self):
        windows = sliding_window_view(self._recent(), self.window, axis=0)  # n x d x window
        level_free = windows - windows.mean(axis=2, keepdims=True)
        self._mean = level_free.mean(axis=0)
        most = max(1, self.window // 2)
        self._components = np.zeros((windows.shape[1], most, self.window))
        for j in range(windows.shape[1]):
            _, singular, vt = np.linalg.svd(level_free[:, j] - self._mean[j], full_matrices=False)
            total = float((singular**2).sum())
            if total == 0.0:  # a flat variable: nothing to keep, every change is error
                continue
            keep = min(int(np.searchsorted(np.cumsum(singular**2) / total, self.variance)) + 1, most)
            self._components[j, :keep] = vt[:keep]
        self._fitted_at = self._count

    def _measure_from(self):
        return max(self.warmup, self.window + MIN_WINDOWS - 1)

    # --- state -----------------------------------------------------------------------------------
    def _reset(self):
        super()._reset()
        self._components = self._mean = None
        self._fitted_at = 0

    def _own_state(self):
        arrays, meta = super()._own_state()
        if self._components is not None:
            arrays = {**arrays, "components": self._components, "mean": self._mean}
        return arrays, {**meta, "fitted_at": self._fitted_at, "fitted": self._components is not None}

    def _set_own_state(self, arrays, meta):
        super()._set_own_state(arrays, meta)
        self._fitted_at = state_int(meta, "fitted_at", 0, self._count)
        fitted = meta.get("fitted")
        if not isinstance(fitted, bool):
            raise ModelFileError(f"model state 'fitted' must be true or false, got {fitted!r:.40}")
        self._components = self._mean = None
        if fitted:
            d, w = len(self.columns_), self.window
            expect_arrays(arrays, {"components": (d, max(1, w // 2), w), "mean": (d, w)})
            self._components, self._mean = (arrays[k].astype(np.float64) for k in ("components", "mean"))

    def _check_params(self):
        super()._check_params()
        check_int(self, "window", 2, MAX_MEMORY)
        check_int(self, "refit_every", 1, MAX_MEMORY)
        if not (isinstance(self.variance, (int, float)) and not isinstance(self.variance, bool)
                and 0 < self.variance <= 1):
            raise DataError(f"variance must be in (0, 1], got {self.variance!r}")
        if self.history < self.window + MIN_WINDOWS - 1:
            raise DataError(f"history ({self.history}) must hold at least {MIN_WINDOWS} windows: "
                            f">= {self.window + MIN_WINDOWS - 1}")
