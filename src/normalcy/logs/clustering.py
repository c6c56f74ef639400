"""LogClustering (Lin et al., ICSE 2016, offline phase as in loglizer): groups become
TF-IDF weighted count vectors; the distinct training vectors are clustered agglomeratively
(average linkage, cosine distance, cut at `max_dist`), and each cluster is represented by
its centroid, the mean of its members weighted by how often each occurs. A group's score
is its cosine distance to the nearest centroid; it is anomalous beyond `anomaly_threshold`
(0.3 as in loglizer), so no labels are needed.

The IDF is smoothed (sklearn's log((1 + N) / (1 + df)) + 1) rather than loglizer's
log(N / df), which is zero for events that every group holds and leaves groups made only of
such events with a zero vector and no defined cosine distance.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError
from normalcy.logs.base import Evidence, SequenceDetector, tfidf_weights


class LogClustering(SequenceDetector):
    def __init__(self, max_dist: float = 0.3, anomaly_threshold: float = 0.3, max_distinct: int = 5000,
                 seed: int = 0):
        self.max_dist = max_dist
        self.anomaly_threshold = anomaly_threshold
        self.max_distinct = max_distinct
        self.seed = seed

    def _fit_sequences(self, seqs):
        if not 0.0 < self.max_dist < 1.0:
            raise DataError(f"LogClustering: max_dist must be in (0, 1), got {self.max_dist}")
        counts = self._counts(seqs)
        self.idf_ = tfidf_weights(counts, smooth=True)
        rows, weights = np.unique(counts * self.idf_, axis=0, return_counts=True)
        if len(rows) > self.max_distinct:  # linkage is quadratic in memory: cluster a sample
            keep = np.random.default_rng(self.seed).choice(len(rows), self.max_distinct, replace=False)
            rows, weights = rows[keep], weights[keep]
        if len(rows) == 1:
            labels = np.ones(1, dtype=int)
        else:
            labels = fcluster(linkage(_unit(rows), method="average", metric="cosine"), self.max_dist,
                              criterion="distance")
        centroids = [np.average(rows[labels == k], axis=0, weights=weights[labels == k]) for k in np.unique(labels)]
        self.centroids_ = np.array(centroids)
        self.threshold_ = float(self.anomaly_threshold)

    def _nearest(self, seqs):
        x = _unit(self._counts(seqs) * self.idf_)
        sims = x @ _unit(self.centroids_).T
        best = sims.argmax(axis=1)
        return np.clip(1.0 - sims[np.arange(len(x)), best], 0.0, 2.0), best, x

    def _score_sequences(self, seqs):
        self._check_fitted("centroids_")
        return self._nearest(seqs)[0]

    def _explain_sequences(self, seqs, max_events):
        dist, best, x = self._nearest(seqs)
        excess = x - _unit(self.centroids_)[best]
        out = []
        for seq, row, d in zip(seqs, excess, dist):
            # Events the group holds more of than its nearest normal cluster.
            cols = [int(c) for c in np.argsort(-row)[:max_events] if row[c] > 1e-9]
            out.append(Evidence([self._event_name(c) for c in cols], self._positions_of(seq, cols),
                                [f"cosine distance {d:.3f} to the nearest normal cluster"]))
        return out

    def _own_state(self):
        self._check_fitted("centroids_")
        return {"clustering.idf": self.idf_, "clustering.centroids": self.centroids_}, {}

    def _set_own_state(self, arrays, meta):
        d = len(self.vocab_) + 1
        expect_arrays(arrays, {"clustering.idf": (d,), "clustering.centroids": (None, d)})
        self.idf_, self.centroids_ = arrays["clustering.idf"], arrays["clustering.centroids"]


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)
