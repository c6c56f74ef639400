"""PCA on event counts (Xu et al., SOSP 2009, as in loglizer): groups are TF-IDF weighted,
centred count vectors; normal ones lie close to the principal subspace that explains
`variance` of the training variance. The score is the squared prediction error (SPE), the
squared distance from that subspace, and the threshold is the Q-statistic (Jackson and
Mudholkar 1979) at confidence `c_alpha` (3.2905: 99.95 %), computed from the training
eigenvalues alone, so it needs no labels.
"""

from __future__ import annotations

import numpy as np

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import ModelFileError
from normalcy.logs.base import Blame, SequenceDetector, check_number, tfidf_weights


class PCA(SequenceDetector):
    """PCA on TF-IDF weighted event counts (Xu et al. 2009): the score is a group's squared
    distance from the principal subspace of normal groups, the threshold the Q-statistic.

    Parameters:
        variance: share of the training variance the principal subspace keeps, in (0, 1) (0.95).
        c_alpha: the normal quantile of the Q-statistic's confidence, > 0 (3.2905: 99.95 %).
    """

    name = "pca"
    min_groups = 2  # a covariance needs two groups

    def __init__(self, variance: float = 0.95, c_alpha: float = 3.2905):
        self.variance = variance
        self.c_alpha = c_alpha

    def _check_params(self):
        check_number("PCA", "variance", self.variance, 0.0, 1.0, low_open=True, high_open=True)
        check_number("PCA", "c_alpha", self.c_alpha, 0.0, 50.0, low_open=True)

    def _fit_encoded(self, seqs):
        counts = self._counts(seqs)
        self.idf_ = tfidf_weights(counts, smooth=False)
        # The unseen column never varies in training; weight it like the rarest event.
        self.idf_[-1] = np.log(len(seqs))
        weighted = counts * self.idf_
        self.mean_ = weighted.mean(axis=0)
        centred = weighted - self.mean_
        eigvals, eigvecs = np.linalg.eigh(centred.T @ centred / len(seqs))
        eigvals, eigvecs = np.clip(eigvals[::-1], 0.0, None), eigvecs[:, ::-1]
        total = eigvals.sum()
        k = 0 if total <= 0 else int(np.searchsorted(np.cumsum(eigvals) / total, self.variance) + 1)
        k = min(k, counts.shape[1] - 1)
        self.components_ = eigvecs[:, :k].T
        threshold = q_statistic(eigvals[k:], self.c_alpha)
        if threshold is not None and np.isfinite(threshold):
            self.set_threshold(threshold, f"Q-statistic at c_alpha {self.c_alpha:g}")
        else:  # no residual variance at all: anything off the training points
            self.set_threshold(float(self._spe(weighted).max()) + 1e-9, "above every training group (no residual variance)")

    def _residual(self, weighted):
        centred = weighted - self.mean_
        return centred - (centred @ self.components_.T) @ self.components_

    def _spe(self, weighted):
        return (self._residual(weighted) ** 2).sum(axis=1)

    def _score_encoded(self, seqs):
        self._check_fitted("components_")
        return self._spe(self._counts(seqs) * self.idf_)

    def _explain_encoded(self, seqs, max_events):
        terms = self._residual(self._counts(seqs) * self.idf_)
        out = []
        for seq, row in zip(seqs, terms):
            # Events that occur more than the normal subspace expects are the ones to blame.
            cols = [int(c) for c in np.argsort(-row)[:max_events] if row[c] > 0]
            out.append(Blame([self._event_name(c) for c in cols], self._positions_of(seq, cols),
                             [f"event {self._event_name(c)} residual {row[c]:.3g}" for c in cols]))
        # The squared residuals add up to the score, the squared prediction error.
        return terms ** 2, out

    def _own_state(self):
        self._check_fitted("components_")
        return {"pca.idf": self.idf_, "pca.mean": self.mean_, "pca.components": self.components_}, {}

    def _set_own_state(self, arrays, meta):
        d = len(self.vocab_) + 1
        expect_arrays(arrays, {"pca.idf": (d,), "pca.mean": (d,), "pca.components": (None, d)})
        if arrays["pca.components"].shape[0] >= d:
            raise ModelFileError("model state: PCA keeps every dimension, so nothing is left to score")
        self.idf_, self.mean_, self.components_ = arrays["pca.idf"], arrays["pca.mean"], arrays["pca.components"]


def q_statistic(residual_eigvals: np.ndarray, c_alpha: float) -> float | None:
    """The SPE threshold of Jackson and Mudholkar from the residual subspace's eigenvalues;
    None when they are all zero."""
    phi = [float(np.sum(residual_eigvals ** (i + 1))) for i in range(3)]
    if phi[0] <= 0 or phi[1] <= 0:
        return None
    h0 = 1.0 - 2.0 * phi[0] * phi[2] / (3.0 * phi[1] ** 2)
    return float(phi[0] * (c_alpha * np.sqrt(2.0 * phi[1] * h0 ** 2) / phi[0] + 1.0
                           + phi[1] * h0 * (h0 - 1.0) / phi[0] ** 2) ** (1.0 / h0))
