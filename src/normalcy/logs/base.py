"""What every log detector shares: it learns from and scores groups of lines given as event
sequences (one integer array of event ids per session or window), and says for each group
which events made it anomalous.

The vocabulary is the set of event ids seen in training; any other id (a template the parser
had not seen, or one that was only in anomalous data) counts as *unseen*. Count-based
detectors give unseen events their own column, so an unseen event always weighs against a
group.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field

import numpy as np

from normalcy.core.detector import Detector, expect_arrays
from normalcy.core.errors import DataError
from normalcy.logs.sessions import count_matrix, encode


@dataclass
class Evidence:
    """Why a group scored as it did: the events to blame, where they sit in the group's
    sequence (positions), and readable reasons."""

    events: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


class SequenceDetector(Detector):
    # --- public contract -----------------------------------------------------------------
    def fit(self, X, y=None) -> "SequenceDetector":
        seqs = as_sequences(X)
        self.vocab_ = np.unique(np.concatenate(seqs))
        self._fit_sequences(seqs)
        return self

    def score(self, X) -> np.ndarray:
        self._check_fitted("vocab_")
        return np.asarray(self._score_sequences(as_sequences(X)), dtype=np.float64)

    def explain(self, X, max_events: int = 3) -> list[Evidence]:
        """Per group, the events and positions that weigh most towards an anomaly."""
        self._check_fitted("vocab_")
        return self._explain_sequences(as_sequences(X), max_events)

    # --- hooks ---------------------------------------------------------------------------
    @abstractmethod
    def _fit_sequences(self, seqs: list[np.ndarray]) -> None:
        """Learn from the training groups; may set `threshold_` (a threshold needing no labels)."""

    @abstractmethod
    def _score_sequences(self, seqs: list[np.ndarray]) -> np.ndarray:
        """One score per group."""

    @abstractmethod
    def _explain_sequences(self, seqs: list[np.ndarray], max_events: int) -> list[Evidence]:
        """One Evidence per group."""

    @abstractmethod
    def _own_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """The detector's arrays and JSON metadata, besides the vocabulary."""

    @abstractmethod
    def _set_own_state(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Restore `_own_state`; `vocab_` is already set."""

    # --- helpers -------------------------------------------------------------------------
    def _counts(self, seqs: list[np.ndarray]) -> np.ndarray:
        return count_matrix(seqs, self.vocab_)

    def _event_name(self, column: int) -> int:
        """The event id of a count column; the unseen column is reported as id -1."""
        return int(self.vocab_[column]) if column < len(self.vocab_) else -1

    def _unseen_positions(self, seq: np.ndarray) -> list[int]:
        return np.flatnonzero(encode(seq, self.vocab_) == len(self.vocab_)).tolist()

    def _positions_of(self, seq: np.ndarray, columns: list[int]) -> list[int]:
        return np.flatnonzero(np.isin(encode(seq, self.vocab_), columns)).tolist()

    def _get_state(self):
        self._check_fitted("vocab_")
        arrays, meta = self._own_state()
        return {"vocab": self.vocab_, **arrays}, meta

    def _set_state(self, arrays, meta):
        expect_arrays(arrays, {"vocab": (None,)})
        self.vocab_ = arrays["vocab"].astype(np.int64)
        self._set_own_state(arrays, meta)


def as_sequences(X) -> list[np.ndarray]:
    """A list of non-empty integer event-id sequences, checked."""
    if isinstance(X, np.ndarray) and X.ndim == 2:
        X = list(X)
    try:
        seqs = [np.asarray(s, dtype=np.int64).reshape(-1) for s in X]
    except (TypeError, ValueError) as exc:
        raise DataError(f"log detectors take a list of event-id sequences (lists of integers): {exc}") from None
    if not seqs:
        raise DataError("no sequences given: a log detector needs at least one session or window")
    empty = [i for i, s in enumerate(seqs) if s.size == 0]
    if empty:
        raise DataError(f"sequence {empty[0]} is empty; every session or window needs at least one event")
    return seqs


def tfidf_weights(counts: np.ndarray, smooth: bool) -> np.ndarray:
    """Inverse document frequency per count column, fitted on training counts.

    Unsmoothed (loglizer): log(N / df), 0 for an event present in every group. Smoothed
    (sklearn): log((1 + N) / (1 + df)) + 1, never 0. The last column, unseen events, has
    df = 0 in training and gets the largest weight, log(N) (or log(1 + N) + 1).
    """
    n = counts.shape[0]
    df = np.count_nonzero(counts > 0, axis=0).astype(np.float64)
    if smooth:
        return np.log((1.0 + n) / (1.0 + df)) + 1.0
    return np.log(n / np.maximum(df, 1.0))
