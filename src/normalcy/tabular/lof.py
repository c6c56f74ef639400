"""Local outlier factor (Breunig et al., SIGMOD 2000), as scikit-learn's novelty mode scores
new rows: how much sparser a row's neighbourhood is than its neighbours' neighbourhoods.
About 1 for ordinary rows, larger for anomalies (`score_samples` negated).

scikit-learn fits; the model file keeps what scoring a new row needs, as arrays: the
training rows, each one's distance to its k-th neighbour and its local reachability density.
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.tabular.base import TabularDetector


class LOF(TabularDetector):
    def __init__(self, n_neighbors: int = 20):
        self.n_neighbors = n_neighbors

    def _fit_matrix(self, Z):
        if not (isinstance(self.n_neighbors, int) and self.n_neighbors >= 1):
            raise DataError(f"LOF: n_neighbors must be a positive integer, got {self.n_neighbors!r}")
        if len(Z) < 2:
            raise DataError("LOF needs at least 2 training rows")
        lof = LocalOutlierFactor(n_neighbors=self.n_neighbors, novelty=True).fit(Z)
        self.train_ = Z.copy()
        self.k_distance_ = lof._distances_fit_X_[:, lof.n_neighbors_ - 1].copy()
        self.lrd_ = lof._lrd.copy()
        self._neighbors = None

    def _score_matrix(self, Z):
        self._check_fitted("train_")
        k = min(self.n_neighbors, len(self.train_) - 1)  # scikit-learn's n_neighbors_
        if self._neighbors is None:
            self._neighbors = NearestNeighbors(n_neighbors=k).fit(self.train_)
        distances, neighbours = self._neighbors.kneighbors(Z, n_neighbors=k)
        reach = np.maximum(distances, self.k_distance_[neighbours])
        lrd = 1.0 / (reach.mean(axis=1) + 1e-10)  # scikit-learn's guard against duplicates
        return (self.lrd_[neighbours] / lrd[:, None]).mean(axis=1)

    def _matrix_state(self):
        self._check_fitted("train_")
        return {"lof.train": self.train_, "lof.k_distance": self.k_distance_, "lof.lrd": self.lrd_}, {}

    def _set_matrix_state(self, arrays, meta, n_features):
        expect_arrays(arrays, {"lof.train": (None, n_features), "lof.k_distance": (None,), "lof.lrd": (None,)})
        n = len(arrays["lof.train"])
        if n < 2 or len(arrays["lof.k_distance"]) != n or len(arrays["lof.lrd"]) != n:
            raise ModelFileError("model state: LOF arrays disagree on the number of training rows")
        if not (isinstance(self.n_neighbors, int) and self.n_neighbors >= 1):
            raise ModelFileError(f"model state: LOF n_neighbors {self.n_neighbors!r} is not a positive integer")
        self.train_, self.k_distance_, self.lrd_ = arrays["lof.train"], arrays["lof.k_distance"], arrays["lof.lrd"]
        self._neighbors = None
