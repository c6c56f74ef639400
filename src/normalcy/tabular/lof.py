"""Local outlier factor (Breunig et al., SIGMOD 2000), as scikit-learn's novelty mode scores
new rows: how much sparser a row's neighbourhood is than its neighbours' neighbourhoods.
About 1 for ordinary rows, larger for anomalies (`score_samples` negated).

scikit-learn fits; the model file keeps what scoring a new row needs, as arrays: the
training rows, each one's distance to its k-th neighbour and its local reachability density.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.tabular.base import TabularDetector


class LOF(TabularDetector):
    """Local outlier factor, as scikit-learn's novelty mode scores new rows.

    Parameters
    ----------
    n_neighbors : int, default 20
        k, the neighbourhood size; with fewer training rows than k + 1, k is the number of
        training rows less one (as in scikit-learn).
    """

    name = "lof"

    def __init__(self, n_neighbors: int = 20):
        self.n_neighbors = n_neighbors

    def _check_params(self):
        if not (isinstance(self.n_neighbors, numbers.Integral) and not isinstance(self.n_neighbors, bool)
                and self.n_neighbors >= 1):
            raise DataError(f"LOF: n_neighbors must be a positive integer, got {self.n_neighbors!r}")

    def _fit_encoded(self, Z):
        # scikit-learn's own cap on k, without its warning.
        k = min(self.n_neighbors, len(Z) - 1)
        lof = LocalOutlierFactor(n_neighbors=k, novelty=True).fit(Z)
        self.train_ = Z.copy()
        self.k_distance_ = lof._distances_fit_X_[:, lof.n_neighbors_ - 1].copy()
        self.lrd_ = lof._lrd.copy()
        self._neighbors = None

    def _score_encoded(self, Z):
        self._check_fitted("train_")
        k = min(self.n_neighbors, len(self.train_) - 1)  # scikit-learn's n_neighbors_
        if self._neighbors is None:
            self._neighbors = NearestNeighbors(n_neighbors=k).fit(self.train_)
        distances, neighbours = self._neighbors.kneighbors(Z, n_neighbors=k)
        reach = np.maximum(distances, self.k_distance_[neighbours])
        lrd = 1.0 / (reach.mean(axis=1) + 1e-10)  # scikit-learn's guard against duplicates
        return (self.lrd_[neighbours] / lrd[:, None]).mean(axis=1)

    def _own_state(self):
        self._check_fitted("train_")
        return {"lof.train": self.train_, "lof.k_distance": self.k_distance_, "lof.lrd": self.lrd_}, {}

    def _set_own_state(self, arrays, meta, n_features):
        expect_arrays(arrays, {"lof.train": (None, n_features), "lof.k_distance": (None,), "lof.lrd": (None,)})
        n = len(arrays["lof.train"])
        if n < 2 or len(arrays["lof.k_distance"]) != n or len(arrays["lof.lrd"]) != n:
            raise ModelFileError("model state: LOF arrays disagree on the number of training rows")
        self.train_, self.k_distance_, self.lrd_ = arrays["lof.train"], arrays["lof.k_distance"], arrays["lof.lrd"]
        self._neighbors = None
