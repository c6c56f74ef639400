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
from normalcy.logs.base import Blame, SequenceDetector, check_number, tfidf_weights


class LogClustering(SequenceDetector):
    """LogClustering (Lin et al. 2016): clusters of normal groups' TF-IDF count vectors; a
    group's score is its cosine distance to the nearest cluster centroid.

    Parameters:
        max_dist: cosine distance at which the average-linkage clustering is cut, in (0, 1) (0.3).
        anomaly_threshold: the distance from which a group is anomalous, in (0, 2] (0.3).
        max_distinct: distinct training vectors clustered at most (a random sample beyond:
            linkage needs memory quadratic in them) (5000).
        seed: seed of that sample (0).
    """

    name = "clustering"
    min_groups = 2  # one group is one cluster: every other distance would be an anomaly

    def __init__(self, max_dist: float = 0.3, anomaly_threshold: float = 0.3, max_distinct: int = 5000,
                 seed: int = 0):
        self.max_dist = max_dist
        self.anomaly_threshold = anomaly_threshold
        self.max_distinct = max_distinct
        self.seed = seed

    def _check_params(self):
        check_number("LogClustering", "max_dist", self.max_dist, 0.0, 1.0, low_open=True, high_open=True)
        check_number("LogClustering", "anomaly_threshold", self.anomaly_threshold, 0.0, 2.0, low_open=True)
        check_number("LogClustering", "max_distinct", self.max_distinct, 2, 100_000, integer=True)
        check_number("LogClustering", "seed", self.seed, 0, 2 ** 63 - 1, integer=True)

    def _fit_encoded(self, seqs):
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
        self.set_threshold(float(self.anomaly_threshold), f"cosine distance {self.anomaly_threshold:g}")

    def _nearest(self, seqs):
        x = _unit(self._counts(seqs) * self.idf_)
        sims = x @ _unit(self.centroids_).T
        best = sims.argmax(axis=1)
        return np.clip(1.0 - sims[np.arange(len(x)), best], 0.0, 2.0), best, x

    def _score_encoded(self, seqs):
        self._check_fitted("centroids_")
        return self._nearest(seqs)[0]

    def _explain_encoded(self, seqs, max_events):
        self._check_fitted("centroids_")
        dist, best, x = self._nearest(seqs)
        excess = x - _unit(self.centroids_)[best]
        out = []
        for seq, row, d in zip(seqs, excess, dist):
            # Events the group holds more of than its nearest normal cluster.
            cols = [int(c) for c in np.argsort(-row)[:max_events] if row[c] > 1e-9]
            out.append(Blame([self._event_name(c) for c in cols], self._positions_of(seq, cols),
                             [f"cosine distance {d:.3f} to the nearest normal cluster"]))
        # For unit vectors, 1 - x.c = sum_j x_j (x_j - c_j): each event's share of the distance.
        return x * excess, out

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
