"""ECOD (Li et al., "ECOD: Unsupervised Outlier Detection Using Empirical Cumulative
Distribution Functions", TKDE 2022), Algorithm 1.

Per column j, a value's left and right tail probabilities come from the training data's
empirical CDF; their negative logs add up over columns in three ways: left tails only, right
tails only, and the tail each column's skewness points to (left when skewness < 0). A row's
score is the largest of the three sums; its attribution is that sum's per-column terms.

Inductive scoring: the paper (and PyOD) recompute the ECDF over training and test rows
together; here it is the training ECDF with the scored value added, (1 + #{x_train <= x}) /
(n + 1), so that a row's score does not depend on which other rows are scored with it and a
value beyond the training range gets a finite score.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import skew

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import ModelFileError
from normalcy.tabular.base import TabularDetector


class ECOD(TabularDetector):
    explains = True

    def _fit_matrix(self, Z):
        self.sorted_ = np.sort(Z, axis=0)
        with np.errstate(all="ignore"):
            # A constant column has no skewness (NaN): it then uses the right tail, as 0 would.
            self.skewness_ = np.nan_to_num(skew(Z, axis=0), nan=0.0)

    def _score_matrix(self, Z):
        return self._tail_sums(Z)[0]

    def _explain_matrix(self, Z):
        return self._tail_sums(Z)[1]

    def _tail_sums(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores, and the per-column terms of the sum that gave each score."""
        self._check_fitted("sorted_")
        n = len(self.sorted_)
        at_or_below = np.empty(Z.shape)
        at_or_above = np.empty(Z.shape)
        for j in range(Z.shape[1]):
            column = self.sorted_[:, j]
            at_or_below[:, j] = np.searchsorted(column, Z[:, j], side="right")
            at_or_above[:, j] = n - np.searchsorted(column, Z[:, j], side="left")
        left = np.log((n + 1) / (at_or_below + 1))  # -log(tail probability), never -0.0
        right = np.log((n + 1) / (at_or_above + 1))
        auto = np.where(self.skewness_ < 0, left, right)
        terms = np.stack([left, right, auto])
        best = terms.sum(axis=2).argmax(axis=0)
        chosen = terms[best, np.arange(len(Z))]
        return chosen.sum(axis=1), chosen

    def _matrix_state(self):
        self._check_fitted("sorted_")
        return {"ecdf.sorted": self.sorted_, "ecdf.skewness": self.skewness_}, {}

    def _set_matrix_state(self, arrays, meta, n_features):
        expect_arrays(arrays, {"ecdf.sorted": (None, n_features), "ecdf.skewness": (n_features,)})
        if len(arrays["ecdf.sorted"]) == 0 or np.any(np.diff(arrays["ecdf.sorted"], axis=0) < 0):
            raise ModelFileError("model state: the ECDF's training values are empty or not sorted")
        self.sorted_, self.skewness_ = arrays["ecdf.sorted"], arrays["ecdf.skewness"]
