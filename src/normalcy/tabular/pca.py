"""PCA reconstruction error (Shyu et al. 2003; the residual form): normal rows lie close to
the principal subspace of the training rows, anomalies off it. The score is a row's squared
distance from that subspace; the attribution is each column's squared residual.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.decomposition import PCA as SkPCA

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.tabular.base import TabularDetector


class PCA(TabularDetector):
    """Squared distance of a row from the principal subspace of the training rows.

    Parameters
    ----------
    n_components : int or float, default 0.9
        The subspace: an integer number of principal components (at least 1, fewer than the
        columns), or a fraction in (0, 1) of the variance to keep. At least one dimension is
        always left out, or every row would be reconstructed exactly.
    """

    name = "pca"
    explains = True

    def __init__(self, n_components: int | float = 0.9):
        self.n_components = n_components

    def _check_params(self):
        k = self.n_components
        if not ((_integer(k) and k >= 1) or (isinstance(k, float) and 0 < k < 1)):
            raise DataError(f"PCA: n_components must be a positive integer or a variance fraction in (0, 1), got {k!r}")

    def _min_rows(self):
        return max(2, self.n_components) if _integer(self.n_components) else 2

    def _fit_encoded(self, Z):
        d = Z.shape[1]
        if d < 2:
            raise DataError("PCA reconstruction needs at least 2 columns: one column is its own subspace")
        if _integer(self.n_components) and self.n_components >= d:
            raise DataError(f"PCA: n_components must be an integer in [1, {d - 1}] (fewer than the {d} columns) "
                            f"or a variance fraction in (0, 1), got {self.n_components!r}")
        with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 variance ratios of a constant table
            pca = SkPCA(n_components=self.n_components).fit(Z)
        # Keeping every dimension would reconstruct everything: leave at least one out. C order,
        # as a reloaded model has it: BLAS sums a transposed (Fortran) matrix in another order.
        self.components_ = np.ascontiguousarray(pca.components_[: d - 1])
        self.mean_ = np.ascontiguousarray(pca.mean_)

    def _score_encoded(self, Z):
        return self._explain_encoded(Z).sum(axis=1)

    def _explain_encoded(self, Z):
        self._check_fitted("components_")
        centred = Z - self.mean_
        return (centred - (centred @ self.components_.T) @ self.components_) ** 2

    def _own_state(self):
        self._check_fitted("components_")
        return {"pca.components": self.components_, "pca.mean": self.mean_}, {}

    def _set_own_state(self, arrays, meta, n_features):
        expect_arrays(arrays, {"pca.components": (None, n_features), "pca.mean": (n_features,)})
        if not 1 <= len(arrays["pca.components"]) < n_features:
            raise ModelFileError(f"model state: PCA keeps {len(arrays['pca.components'])} components of "
                                 f"{n_features} columns; expected 1 to {n_features - 1}")
        self.components_, self.mean_ = arrays["pca.components"], arrays["pca.mean"]


def _integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
