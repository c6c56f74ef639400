"""The frequency baseline: an event is as anomalous as its entities (or entity pairs) are rare.

With `pairs=False` (the default, "frequency"), entity types are taken as independent:

    score(e) = -sum_t log p_t(a_t),   p_t(a) = (count_t(a) + alpha) / (N + alpha * (V_t + 1))

with additive smoothing alpha and V_t seen entities plus the unseen slot, so an unseen entity is
rarer than any seen one. This is what a rule "alert on rare users, hosts, ports" computes.

With `pairs=True` (the benchmark's "frequency-pairs"), the same smoothed estimate is taken of every pair of
types' joint counts: score(e) = -sum_{i<j} log p_ij(a_i, a_j). It sees pairs never observed
together, at the cost of one count table per pair of types.

The explanation's pair term is log p_i(a_i) + log p_j(a_j) (pairs=False) or log p_ij(a_i, a_j)
(pairs=True), less its average over the training events.
"""

from __future__ import annotations

import numpy as np

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.events.base import EventDetector, type_pairs


class Frequency(EventDetector):
    """The frequency baseline: an event is as anomalous as its entities (or, with pairs, its
    pairs of entities) are rare in training.

    Parameters:
        columns: the entity columns (default None: every column of the training table).
        pairs: score the joint counts of every pair of entity types instead of each entity's
            own count, so never-seen combinations count (False).
        smoothing: additive smoothing alpha of the counts, > 0 (1.0).
        min_count: training entities seen at most this often share the "unseen" slot (0).
        allow_missing: an empty cell is the entity "<missing>" instead of an error (False).
    """

    name = "frequency"

    def __init__(self, columns: list[str] | None = None, pairs: bool = False, smoothing: float = 1.0,
                 min_count: int = 0, allow_missing: bool = False):
        self.columns = columns
        self.pairs = pairs
        self.smoothing = smoothing
        self.min_count = min_count
        self.allow_missing = allow_missing

    def _check_params(self):
        super()._check_params()
        if (isinstance(self.smoothing, bool) or not isinstance(self.smoothing, (int, float))
                or not 0 < self.smoothing < np.inf):
            raise DataError(f"frequency smoothing must be a finite number > 0, got {self.smoothing!r}")
        if not isinstance(self.pairs, (bool, np.bool_)):
            raise DataError(f"frequency pairs must be true or false, got {self.pairs!r}")

    def _fit_encoded(self, codes, encoder):
        self.counts_ = [c.copy() for c in encoder.counts_]
        self.n_events_ = len(codes)
        self.pair_keys_, self.pair_counts_ = [], []
        if self.pairs:
            for i, j in type_pairs(codes.shape[1]):
                keys, counts = np.unique(codes[:, i] * len(self.counts_[j]) + codes[:, j], return_counts=True)
                self.pair_keys_.append(keys)
                self.pair_counts_.append(counts.astype(np.float64))

    def _log_marginals(self, codes) -> np.ndarray:
        a = self.smoothing
        return np.stack([np.log((c[codes[:, t]] + a) / (self.n_events_ + a * len(c)))
                         for t, c in enumerate(self.counts_)], axis=1)

    def _log_pairs(self, codes) -> np.ndarray:
        a = self.smoothing
        out = []
        for p, (i, j) in enumerate(type_pairs(codes.shape[1])):
            keys, counts = self.pair_keys_[p], self.pair_counts_[p]
            query = codes[:, i] * len(self.counts_[j]) + codes[:, j]
            at = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
            found = np.where(keys[at] == query, counts[at], 0.0)
            cells = len(self.counts_[i]) * len(self.counts_[j])
            out.append(np.log((found + a) / (self.n_events_ + a * cells)))
        return np.stack(out, axis=1)

    def _explain_encoded(self, codes):
        self._check_fitted("counts_")
        if self.pairs:
            return self._log_pairs(codes)
        logp = self._log_marginals(codes)
        return np.stack([logp[:, i] + logp[:, j] for i, j in type_pairs(codes.shape[1])], axis=1)

    def _score_encoded(self, codes):
        self._check_fitted("counts_")
        terms = self._log_pairs(codes) if self.pairs else self._log_marginals(codes)
        return -terms.sum(axis=1)

    # --- model file ----------------------------------------------------------------------
    def _own_state(self):
        self._check_fitted("counts_")
        arrays = {}
        for p, (keys, counts) in enumerate(zip(self.pair_keys_, self.pair_counts_)):
            arrays[f"frequency.pair_keys.{p}"] = keys
            arrays[f"frequency.pair_counts.{p}"] = counts
        return arrays, {"n_events": self.n_events_}

    def _set_own_state(self, arrays, meta, encoder):
        n_events = meta.get("n_events")
        if isinstance(n_events, bool) or not isinstance(n_events, int) or n_events < 1:
            raise ModelFileError("model state: the frequency baseline's event count is missing")
        m = len(encoder.columns_)
        n_pairs = len(type_pairs(m)) if self.pairs else 0
        shapes = {}
        for p in range(n_pairs):
            shapes[f"frequency.pair_keys.{p}"] = (None,)
            shapes[f"frequency.pair_counts.{p}"] = (None,)
        expect_arrays(arrays, shapes)
        keys = [arrays[f"frequency.pair_keys.{p}"] for p in range(n_pairs)]
        counts = [arrays[f"frequency.pair_counts.{p}"] for p in range(n_pairs)]
        if any(len(k) != len(c) or len(k) == 0 for k, c in zip(keys, counts)):
            raise ModelFileError("model state: the frequency baseline's pair keys and counts do not match")
        self.counts_ = list(encoder.counts_)
        self.n_events_ = n_events
        self.pair_keys_, self.pair_counts_ = keys, counts
