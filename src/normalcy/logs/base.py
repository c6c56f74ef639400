"""What every log detector shares: it learns from and scores groups of lines given as event
sequences (one integer array of event ids per session or window), and says for each group
which events made it anomalous.

The vocabulary is the set of event ids seen in training; any other id (a template the parser
had not seen, or one that was only in anomalous data) counts as *unseen*. Count-based
detectors give unseen events their own column, so an unseen event always weighs against a
group. `explain` names these columns as its parts: "E<id>" per event of the vocabulary, and
"unseen".

A subclass implements `_fit_encoded`, `_score_encoded` and `_explain_encoded` on the checked
sequences (`vocab_` is set before `_fit_encoded`), and `_own_state` / `_set_own_state` for its
arrays. One that sets its own label-free threshold in `_fit_encoded` does so with
`set_threshold(value, rule)`.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from normalcy.core.detector import Detector, expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.results import Explanation
from normalcy.logs.sessions import count_matrix, encode


@dataclass
class Blame:
    """Why one group scored as it did: the events to blame, where they sit in the group's
    sequence (positions, which the CLI turns into file:line evidence) and readable reasons."""

    events: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


class SequenceDetector(Detector):
    modality = "logs"
    explains = True
    # The fewest training groups (sessions or windows) the detector can learn anything from.
    min_groups: ClassVar[int] = 1

    # --- public contract -----------------------------------------------------------------
    def fit(self, X, y=None) -> "SequenceDetector":
        self._check_params()
        seqs = as_sequences(X)
        if len(seqs) < self.min_groups:
            raise DataError(f"{self.name} needs at least {self.min_groups} sessions or windows to learn from, "
                            f"got {len(seqs)}")
        self.vocab_ = np.unique(np.concatenate(seqs))
        self._fit_encoded(seqs)
        return self

    def decision_function(self, X) -> np.ndarray:
        self._check_fitted("vocab_")
        return np.asarray(self._score_encoded(as_sequences(X)), dtype=np.float64)

    def explain(self, X, max_events: int = 3) -> Explanation:
        """Per group: `parts` are the events ("E<id>", and "unseen"), `contributions` what each
        added to the score where the detector can split it (larger = more to blame, None for
        DeepLog), `evidence` the readable reasons (at most `max_events` events named)."""
        return self.explain_blame(X, max_events)[0]

    def explain_blame(self, X, max_events: int = 3) -> tuple[Explanation, list[Blame]]:
        """`explain`, and per group the events and their positions in the sequence behind the
        score (what `LogModel` turns into file:line evidence)."""
        self._check_fitted("vocab_")
        seqs = as_sequences(X)
        contributions, blame = self._explain_encoded(seqs, max_events)
        scores = np.asarray(self._score_encoded(seqs), dtype=np.float64)
        return Explanation(scores, self.parts_, contributions, [b.reasons for b in blame]), blame

    @property
    def parts_(self) -> tuple[str, ...]:
        self._check_fitted("vocab_")
        return (*(f"E{e}" for e in self.vocab_), "unseen")

    # --- hooks ---------------------------------------------------------------------------
    @abstractmethod
    def _fit_encoded(self, seqs: list[np.ndarray]) -> None:
        """Learn from the training groups; may set a label-free threshold (`set_threshold`)."""

    @abstractmethod
    def _score_encoded(self, seqs: list[np.ndarray]) -> np.ndarray:
        """One score per group."""

    @abstractmethod
    def _explain_encoded(self, seqs: list[np.ndarray], max_events: int) -> tuple[np.ndarray | None, list[Blame]]:
        """Per-event contributions (groups x (len(vocab_) + 1), or None) and one Blame per group."""

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
        vocab = arrays["vocab"]
        if vocab.dtype.kind not in "iu" or vocab.size == 0 or np.any(np.diff(vocab) <= 0):
            raise ModelFileError("model state: the vocabulary must be a non-empty increasing array of integer "
                                 "event ids")
        self.vocab_ = vocab.astype(np.int64)
        self._set_own_state(arrays, meta)


def check_number(owner: str, name: str, value, low: float, high: float, integer: bool = False,
                 low_open: bool = False, high_open: bool = False) -> None:
    """DataError unless `value` is a (whole, if `integer`) number in [low, high] (ends open
    where asked); for `_check_params`."""
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    ok = (isinstance(value, kinds) and not isinstance(value, (bool, np.bool_)) and np.isfinite(value)
          and (value > low if low_open else value >= low) and (value < high if high_open else value <= high))
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise DataError(f"{owner} {name} must be a {'whole ' if integer else ''}number in {interval}, got {value!r}")


def as_sequences(X) -> list[np.ndarray]:
    """A list of non-empty integer event-id sequences, checked."""
    if isinstance(X, (str, bytes)) or not hasattr(X, "__iter__"):
        raise DataError(f"log detectors take a list of event-id sequences (lists of integers), got "
                        f"{type(X).__name__}")
    seqs = []
    for i, s in enumerate(X):
        if isinstance(s, (str, bytes)):
            raise DataError(f"sequence {i} is text; a sequence is a list of integer event ids")
        try:
            a = np.asarray(s).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise DataError(f"sequence {i} is not a list of integer event ids: {exc}") from None
        if a.size and a.dtype.kind not in "iu":
            whole = a.dtype.kind == "f" and np.isfinite(a).all() and (a == np.round(a)).all() \
                and np.abs(a).max() < 2.0 ** 63
            if not whole:
                raise DataError(f"sequence {i} holds {a.dtype} values that are not whole event ids "
                                f"(e.g. {a.reshape(-1)[0]!r})")
        if a.dtype.kind == "u" and a.size and a.max() >= 2 ** 63:
            raise DataError(f"sequence {i} holds an event id over the 64-bit range")
        if a.size == 0:
            raise DataError(f"sequence {i} is empty; every session or window needs at least one event")
        seqs.append(a.astype(np.int64))
    if not seqs:
        raise DataError("no sequences given: a log detector needs at least one session or window")
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
