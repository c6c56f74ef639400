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
from normalcy.core.errors import DataError, ModelFileError
from normalcy.logs.base import Evidence, SequenceDetector, tfidf_weights


class PCA(SequenceDetector):
    def __init__(self, variance: float = 0.95, c_alpha: float = 3.2905):
        self.variance = variance
        self.c_alpha = c_alpha

    def _fit_sequences(self, seqs):
        if not 0.0 < self.variance < 1.0:
            raise DataError(f"PCA: variance must be in (0, 1), got {self.variance}")
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
        residual = eigvals[k:]
        self.threshold_ = q_statistic(residual, self.c_alpha)
        if self.threshold_ is None:  # no residual variance at all: anything off the training points
            self.threshold_ = float(self._spe(weighted).max()) + 1e-9

    def _residual(self, weighted):
        centred = weighted - self.mean_
        return centred - (centred @ self.components_.T) @ self.components_

    def _spe(self, weighted):
        return (self._residual(weighted) ** 2).sum(axis=1)

    def _score_sequences(self, seqs):
        return self._spe(self._counts(seqs) * self.idf_)

    def _explain_sequences(self, seqs, max_events):
        terms = self._residual(self._counts(seqs) * self.idf_)
        out = []
        for seq, row in zip(seqs, terms):
            # Events that occur more than the normal subspace expects are the ones to blame.
            cols = [int(c) for c in np.argsort(-row)[:max_events] if row[c] > 0]
            out.append(Evidence([self._event_name(c) for c in cols], self._positions_of(seq, cols),
                                [f"event {self._event_name(c)} residual {row[c]:.3g}" for c in cols]))
        return out

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
