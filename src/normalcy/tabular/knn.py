"""k-nearest-neighbour distance (Ramaswamy, Rastogi & Shim, SIGMOD 2000): a row far from its
k-th nearest training row is anomalous. Exact search with faiss over the encoded rows.

Scoring the training rows themselves finds each row as its own first neighbour, so their
scores are the (k-1)-th distance to the others; rows never seen get the k-th.
"""

from __future__ import annotations

import numbers

import numpy as np

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.tabular.base import MIN_ROWS, TabularDetector

ROWS_PER_BLOCK = 1024


class KNN(TabularDetector):
    """Distance to the k-th nearest training row (exact, faiss): for training rows that may
    hold some anomalies, which a k above 1 outvotes.

    Parameters
    ----------
    n_neighbors : int, default 5
        k: the score is the distance to the k-th nearest training row. Needs at least k
        training rows (and at least 2).
    """

    name = "knn"
    explains = True

    def __init__(self, n_neighbors: int = 5):
        self.n_neighbors = n_neighbors

    def _check_params(self):
        if not (isinstance(self.n_neighbors, numbers.Integral) and not isinstance(self.n_neighbors, bool)
                and self.n_neighbors >= 1):
            raise DataError(f"{type(self).__name__}: n_neighbors must be a positive integer, got {self.n_neighbors!r}")

    def _min_rows(self):
        return max(MIN_ROWS, self.n_neighbors)

    def _fit_encoded(self, Z):
        self.train_ = np.ascontiguousarray(Z, dtype=np.float32)
        self._index = None

    def neighbours(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Squared distances to, and indices of, each row's k nearest training rows (matrix API)."""
        return self._search(np.asarray(Z, dtype=np.float64))

    def _score_encoded(self, Z):
        distances, _ = self._search(Z)
        return np.sqrt(distances[:, -1]).astype(np.float64)

    def _explain_encoded(self, Z):
        # Each column's part of the squared distance, averaged over the k neighbours; in blocks
        # of rows, as the differences take rows x k x columns.
        _, neighbours = self._search(Z)
        out = np.empty(Z.shape)
        for start in range(0, len(Z), ROWS_PER_BLOCK):
            block = slice(start, start + ROWS_PER_BLOCK)
            diff = Z[block, None, :] - self.train_[neighbours[block]].astype(np.float64)
            out[block] = (diff ** 2).mean(axis=1)
        return out

    def _search(self, Z):
        self._check_fitted("train_")
        if Z.ndim != 2 or Z.shape[1] != self.train_.shape[1]:
            raise DataError(f"expected rows of {self.train_.shape[1]} features, got shape {Z.shape}")
        if self._index is None:
            import faiss

            self._index = faiss.IndexFlatL2(self.train_.shape[1])
            self._index.add(self.train_)
        distances, neighbours = self._index.search(np.ascontiguousarray(Z, dtype=np.float32), self.n_neighbors)
        return np.maximum(distances, 0.0), neighbours

    def _own_state(self):
        self._check_fitted("train_")
        return {"knn.train": self.train_}, {}

    def _set_own_state(self, arrays, meta, n_features):
        expect_arrays(arrays, {"knn.train": (None, n_features)})
        if not self.n_neighbors <= len(arrays["knn.train"]):
            raise ModelFileError(f"model state: n_neighbors {self.n_neighbors!r} does not fit "
                                 f"{len(arrays['knn.train'])} training rows")
        self.train_ = np.ascontiguousarray(arrays["knn.train"], dtype=np.float32)
        self._index = None


class Nearest(KNN):
    """The distance to the nearest training row: the default when every training row is known
    to be normal (novelty detection; PatchCore's rule for images). A larger k only guards
    against anomalies among the training rows; with clean ones, on ADBench, k = 1 beat k = 5
    and every ensemble we tried (docs/tabular.md).

    Parameters
    ----------
    n_neighbors : int, default 1
        k, as in `KNN`; 1 is the distance to the nearest training row.
    """

    name = "nearest"

    def __init__(self, n_neighbors: int = 1):
        super().__init__(n_neighbors)
