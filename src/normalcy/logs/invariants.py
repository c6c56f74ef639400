"""Invariants Mining (Lou et al., USENIX ATC 2010, as in loglizer): normal program runs keep
linear relations among event counts, such as count(open) == count(close) or
count(receive) == 3 * count(allocate). Training searches column subsets of up to `max_size`
events, smallest first, for an integer vector w with counts @ w == 0 in at least `support` of
the groups; supersets of a found invariant are skipped, and the search stops once it has as
many invariants as the estimated dimension of the invariant space (the eigenvalues of the
count covariance below `epsilon`). A group's score is the number of invariants it breaks;
breaking one is an anomaly (threshold 1), so no labels are needed.

The unseen-event column is part of the search: it is zero in every training group, so
``count(unseen) == 0`` is found as an invariant of size one.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import ModelFileError
from normalcy.core.progress import progress
from normalcy.logs.base import Blame, SequenceDetector, check_number


class InvariantsMining(SequenceDetector):
    """Invariants Mining (Lou et al. 2010): integer linear relations among event counts that
    normal groups keep; a group's score is the number it breaks, and one is an anomaly.

    Parameters:
        max_size: the most events one invariant relates, 1 to 5 (3).
        support: share of training groups an invariant must hold in, in (0.5, 1] (0.98).
        epsilon: eigenvalue below which the count covariance counts as invariant, > 0 (0.5).
        max_coef: the largest integer coefficient of an invariant, >= 1 (10).
    """

    name = "invariants"
    min_groups = 2  # with one group every relation holds

    def __init__(self, max_size: int = 3, support: float = 0.98, epsilon: float = 0.5, max_coef: int = 10):
        self.max_size = max_size
        self.support = support
        self.epsilon = epsilon
        self.max_coef = max_coef

    def _check_params(self):
        check_number("InvariantsMining", "max_size", self.max_size, 1, 5, integer=True)
        check_number("InvariantsMining", "support", self.support, 0.5, 1.0, low_open=True)
        check_number("InvariantsMining", "epsilon", self.epsilon, 0.0, 1e6, low_open=True)
        check_number("InvariantsMining", "max_coef", self.max_coef, 1, 1000, integer=True)

    def _fit_encoded(self, seqs):
        counts = self._counts(seqs)
        rows, weights = np.unique(counts, axis=0, return_counts=True)
        self.invariants_ = self._search(rows, weights.astype(np.float64))
        self.set_threshold(1.0, "one broken invariant")

    def _search(self, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        d = rows.shape[1]
        total = weights.sum()
        gram = (rows * weights[:, None]).T @ rows / total
        budget = int(np.sum(np.linalg.eigvalsh(gram) < self.epsilon))
        found: list[np.ndarray] = []
        supports: list[tuple[int, ...]] = []
        for size in range(1, self.max_size + 1):
            subsets = list(combinations(range(d), size))
            for cols in progress(subsets, desc=f"invariants of {size} events", unit="subset"):
                if len(found) >= budget:
                    break
                if any(set(s) <= set(cols) for s in supports):
                    continue
                w = self._candidate(gram[np.ix_(cols, cols)])
                if w is None:
                    continue
                holds = np.abs(rows[:, cols] @ w) < 1e-9
                if weights[holds].sum() >= self.support * total:
                    vec = np.zeros(d)
                    vec[list(cols)] = w
                    found.append(vec)
                    supports.append(cols)
        return np.array(found).reshape(-1, d)

    def _candidate(self, sub_gram: np.ndarray) -> np.ndarray | None:
        """The smallest-eigenvalue direction of the subset, as small integers with no zero, or None."""
        vals, vecs = np.linalg.eigh(sub_gram)
        if vals[0] >= self.epsilon:
            return None
        v = vecs[:, 0]
        if np.any(np.abs(v) < 1e-6):
            return None  # a smaller subset carries this relation
        v = v / np.abs(v).min()
        for scale in range(1, self.max_coef + 1):
            w = np.round(v * scale)
            if np.allclose(w, v * scale, atol=1e-3 * scale) and np.abs(w).max() <= self.max_coef:
                return w if w[0] > 0 else -w
        return None

    def _violations(self, seqs) -> np.ndarray:
        counts = self._counts(seqs)
        return np.abs(counts @ self.invariants_.T) > 1e-9

    def _score_encoded(self, seqs):
        self._check_fitted("invariants_")
        return self._violations(seqs).sum(axis=1).astype(np.float64)

    def describe(self, w: np.ndarray) -> str:
        """An invariant as text, e.g. ``count(E5) - 3*count(E22) == 0``."""
        text = ""
        for c in np.flatnonzero(w):
            coef = int(w[c])
            name = "unseen" if c == len(self.vocab_) else f"E{self.vocab_[c]}"
            term = f"count({name})" if abs(coef) == 1 else f"{abs(coef)}*count({name})"
            sign = "-" if coef < 0 else "+"
            text = (f"-{term}" if sign == "-" else term) if not text else f"{text} {sign} {term}"
        return text + " == 0"

    @property
    def invariant_strings(self) -> list[str]:
        self._check_fitted("invariants_")
        return [self.describe(w) for w in self.invariants_]

    def _explain_encoded(self, seqs, max_events):
        self._check_fitted("invariants_")
        broken = self._violations(seqs)
        # Each broken invariant adds 1 to the score, shared equally among its events.
        members = (self.invariants_ != 0).astype(np.float64)
        shares = members / np.maximum(members.sum(axis=1, keepdims=True), 1.0)
        out = []
        for seq, row in zip(seqs, broken):
            ws = self.invariants_[row]
            cols = sorted({int(c) for w in ws for c in np.flatnonzero(w)})
            out.append(Blame([self._event_name(c) for c in cols], self._positions_of(seq, cols),
                             [f"breaks {self.describe(w)}" for w in ws[:max_events]]))
        return broken.astype(np.float64) @ shares, out

    def _own_state(self):
        self._check_fitted("invariants_")
        return {"invariants": self.invariants_}, {}

    def _set_own_state(self, arrays, meta):
        expect_arrays(arrays, {"invariants": (None, len(self.vocab_) + 1)})
        if not np.array_equal(arrays["invariants"], np.round(arrays["invariants"])):
            raise ModelFileError("model state: invariants must have integer coefficients")
        self.invariants_ = arrays["invariants"]
