"""PCA reconstruction error (Shyu et al. 2003; the residual form): normal rows lie close to
the principal subspace of the training rows, anomalies off it. The score is a row's squared
distance from that subspace; the attribution is each column's squared residual.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA as SkPCA

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError
from normalcy.tabular.base import TabularDetector


class PCA(TabularDetector):
    explains = True

    def __init__(self, n_components: int | float = 0.9):
        self.n_components = n_components

    def _fit_matrix(self, Z):
        d = Z.shape[1]
        if d < 2:
            raise DataError("PCA reconstruction needs at least 2 columns: one column is its own subspace")
        k = self.n_components
        if not ((isinstance(k, int) and 1 <= k < d) or (isinstance(k, float) and 0 < k < 1)):
            raise DataError(f"PCA: n_components must be an integer in [1, {d - 1}] or a variance "
                            f"fraction in (0, 1), got {k!r}")
        pca = SkPCA(n_components=k).fit(Z)
        # Keeping every dimension would reconstruct everything: leave at least one out.
        self.components_ = pca.components_[: d - 1]
        self.mean_ = pca.mean_

    def _score_matrix(self, Z):
        return self._explain_matrix(Z).sum(axis=1)

    def _explain_matrix(self, Z):
        self._check_fitted("components_")
        centred = Z - self.mean_
        return (centred - (centred @ self.components_.T) @ self.components_) ** 2

    def _matrix_state(self):
        self._check_fitted("components_")
        return {"pca.components": self.components_, "pca.mean": self.mean_}, {}

    def _set_matrix_state(self, arrays, meta, n_features):
        expect_arrays(arrays, {"pca.components": (None, n_features), "pca.mean": (n_features,)})
        self.components_, self.mean_ = arrays["pca.components"], arrays["pca.mean"]
