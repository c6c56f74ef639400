"""HBOS (Goldstein & Dengel, "Histogram-based Outlier Score", KI 2012): one histogram per
column, columns taken as independent; a row's score is the sum over columns of
-log(density of its bin + alpha). Bins are static (equal width over the training range);
a value outside that range lands in an empty bin, density 0, and adds -log(alpha), the
most one column can add. The per-column terms are the attributions.
"""

from __future__ import annotations

import numpy as np

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.tabular.base import TabularDetector


class HBOS(TabularDetector):
    explains = True

    def __init__(self, n_bins: int = 10, alpha: float = 0.1):
        self.n_bins = n_bins
        self.alpha = alpha

    def _fit_matrix(self, Z):
        if not (isinstance(self.n_bins, int) and self.n_bins >= 1):
            raise DataError(f"HBOS: n_bins must be a positive integer, got {self.n_bins!r}")
        if not self.alpha > 0:
            raise DataError(f"HBOS: alpha must be positive (it keeps -log finite), got {self.alpha!r}")
        edges, densities = [], []
        for j in range(Z.shape[1]):
            density, edge = np.histogram(Z[:, j], bins=self.n_bins, density=True)
            edges.append(edge)
            densities.append(density)
        self.edges_, self.density_ = np.stack(edges), np.stack(densities)

    def _score_matrix(self, Z):
        return self._explain_matrix(Z).sum(axis=1)

    def _explain_matrix(self, Z):
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

    def _matrix_state(self):
        self._check_fitted("edges_")
        return {"hbos.edges": self.edges_, "hbos.density": self.density_}, {}

    def _set_matrix_state(self, arrays, meta, n_features):
        if not (isinstance(self.n_bins, int) and self.n_bins >= 1 and self.alpha > 0):
            raise ModelFileError(f"model state: HBOS n_bins {self.n_bins!r} / alpha {self.alpha!r} out of range")
        expect_arrays(arrays, {"hbos.edges": (n_features, self.n_bins + 1),
                               "hbos.density": (n_features, self.n_bins)})
        self.edges_, self.density_ = arrays["hbos.edges"], arrays["hbos.density"]
