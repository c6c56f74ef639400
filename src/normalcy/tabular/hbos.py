"""HBOS (Goldstein & Dengel, "Histogram-based Outlier Score", KI 2012): one histogram per
column, columns taken as independent; a row's score is the sum over columns of
-log(density of its bin + alpha). Bins are static (equal width over the training range);
a value outside that range lands in an empty bin, density 0, and adds -log(alpha), the
most one column can add. The per-column terms are the attributions.
"""

from __future__ import annotations

import numbers

import numpy as np

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.tabular.base import TabularDetector


class HBOS(TabularDetector):
    """Histogram-based outlier score: per column -log(density of the row's bin + alpha), summed.

    Parameters
    ----------
    n_bins : int, default 10
        Equal-width bins per column over the training range.
    alpha : float, default 0.1
        Added to every density, so that an empty bin adds -log(alpha), not infinity.
    """

    name = "hbos"
    explains = True

    def __init__(self, n_bins: int = 10, alpha: float = 0.1):
        self.n_bins = n_bins
        self.alpha = alpha

    def _check_params(self):
        if not (isinstance(self.n_bins, numbers.Integral) and not isinstance(self.n_bins, bool) and self.n_bins >= 1):
            raise DataError(f"HBOS: n_bins must be a positive integer, got {self.n_bins!r}")
        if not (isinstance(self.alpha, numbers.Real) and not isinstance(self.alpha, bool)
                and 0 < self.alpha < float("inf")):
            raise DataError(f"HBOS: alpha must be a positive number (it keeps -log finite), got {self.alpha!r}")

    def _fit_encoded(self, Z):
        edges, densities = [], []
        for j in range(Z.shape[1]):
            density, edge = np.histogram(Z[:, j], bins=self.n_bins, density=True)
            edges.append(edge)
            densities.append(density)
        self.edges_, self.density_ = np.stack(edges), np.stack(densities)

    def _score_encoded(self, Z):
        return self._explain_encoded(Z).sum(axis=1)

    def _explain_encoded(self, Z):
        self._check_fitted("edges_")
        terms = np.empty(Z.shape)
        for j in range(Z.shape[1]):
            edge = self.edges_[j]
            # np.histogram's bins are [a, b) except the last, [a, b].
            b = np.minimum(np.searchsorted(edge, Z[:, j], side="right") - 1, self.n_bins - 1)
            inside = (Z[:, j] >= edge[0]) & (Z[:, j] <= edge[-1])
            density = np.where(inside, self.density_[j][np.clip(b, 0, self.n_bins - 1)], 0.0)
            terms[:, j] = -np.log(density + self.alpha)
        return terms

    def _own_state(self):
        self._check_fitted("edges_")
        return {"hbos.edges": self.edges_, "hbos.density": self.density_}, {}

    def _set_own_state(self, arrays, meta, n_features):
        expect_arrays(arrays, {"hbos.edges": (n_features, self.n_bins + 1),
                               "hbos.density": (n_features, self.n_bins)})
        if np.any(np.diff(arrays["hbos.edges"], axis=1) < 0) or np.any(arrays["hbos.density"] < 0):
            raise ModelFileError("model state: HBOS bin edges must rise and densities be non-negative")
        self.edges_, self.density_ = arrays["hbos.edges"], arrays["hbos.density"]
