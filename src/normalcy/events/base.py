"""What every event detector shares: reading events, the vocabularies saved with the model, and
the explanation that names each event's least compatible pair of entities.

A subclass learns from and scores the n x m code matrix (`_fit_encoded`, `_score_encoded`) and
gives one compatibility term per pair of entity types (`_explain_encoded`, n x pairs, lower =
less compatible), which the explanation compares with its training average; its own arrays go
through `_own_state` / `_set_own_state`.
"""

from __future__ import annotations

from abc import abstractmethod
from itertools import combinations

import numpy as np
import pandas as pd

from normalcy.core.detector import Detector, expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.results import Explanation
from normalcy.events.data import EventEncoder, read_events


class EventDetector(Detector):
    modality = "events"
    explains = True

    columns: list[str] | None = None
    min_count: int = 0
    allow_missing: bool = False

    # --- public contract ---------------------------------------------------------------
    def fit(self, X, y=None) -> "EventDetector":
        return self.fit_frame(*read_events(X))

    def decision_function(self, X) -> np.ndarray:
        return self.decision_frame(*read_events(X))

    def explain(self, X) -> Explanation:
        """Per event: `parts` are the pairs of entity types ("user~host"); `contributions` say
        how much less compatible than usual each pair is (its term's training average minus
        its term, larger = more to blame); `evidence` names the least compatible pair with its
        entities ("user=ana | host=db1")."""
        return self.explain_frame(*read_events(X))

    def fit_frame(self, frame: pd.DataFrame, name: str = "data") -> "EventDetector":
        """`fit` on a frame already read; `name` (e.g. its file) is what errors name."""
        self._check_params()
        encoder = EventEncoder(self._columns(), self.min_count, self.allow_missing).fit(frame, name)
        codes = encoder.transform(frame, name)
        self._fit_encoded(codes, encoder)
        # Pair types differ in their typical term (an unrelated pair of types sits well below a
        # tied one), so the explanation compares each term with its type's training average.
        self.pair_center_ = self._explain_encoded(codes).mean(axis=0)
        self.encoder_ = encoder
        return self

    def decision_frame(self, frame: pd.DataFrame, name: str = "data") -> np.ndarray:
        """`decision_function` of a frame already read; `name` is what errors name."""
        self._check_fitted("encoder_")
        return self._score_encoded(self.encoder_.transform(frame, name))

    def explain_frame(self, frame: pd.DataFrame, name: str = "data") -> Explanation:
        """`explain` of a frame already read; `name` is what errors name."""
        self._check_fitted("encoder_")
        codes = self.encoder_.transform(frame, name)
        blame = self.pair_center_ - self._explain_encoded(codes)
        entities = self.encoder_.entities(frame, name)
        columns = self.encoder_.columns_
        worst = np.argmax(blame, axis=1)
        evidence = []
        for row, p in zip(entities, worst):
            i, j = self.pairs_[p]
            evidence.append([f"{columns[i]}={row[i]} | {columns[j]}={row[j]}"])
        return Explanation(self._score_encoded(codes), self.parts_, blame, evidence)

    @property
    def columns_(self) -> list[str]:
        """The entity columns the detector was fitted on."""
        self._check_fitted("encoder_")
        return list(self.encoder_.columns_)

    @property
    def pairs_(self) -> list[tuple[int, int]]:
        """Column index pairs (i < j), in the order of `_explain_encoded`'s columns."""
        return type_pairs(len(self.columns_))

    @property
    def parts_(self) -> tuple[str, ...]:
        """The pairs of entity types by name, "user~host", as `explain` names its parts."""
        columns = self.columns_
        return tuple(f"{columns[i]}~{columns[j]}" for i, j in self.pairs_)

    def _check_params(self) -> None:
        columns = self.columns
        if columns is not None and not isinstance(columns, str) and not (
                isinstance(columns, (list, tuple)) and all(isinstance(c, str) for c in columns)):
            raise DataError(f"{type(self).__name__} columns must be a list of column names or None, got {columns!r}")
        if isinstance(self.min_count, bool) or not isinstance(self.min_count, (int, np.integer)) or self.min_count < 0:
            raise DataError(f"{type(self).__name__} min_count must be a whole number >= 0, got {self.min_count!r}")
        if not isinstance(self.allow_missing, (bool, np.bool_)):
            raise DataError(f"{type(self).__name__} allow_missing must be true or false, got {self.allow_missing!r}")

    def _columns(self) -> list[str] | None:
        return [self.columns] if isinstance(self.columns, str) else None if self.columns is None else list(self.columns)

    # --- hooks (abstract, so that only concrete detectors can be named in a model file) ------
    @abstractmethod
    def _fit_encoded(self, codes: np.ndarray, encoder: EventEncoder) -> None:
        """Learn from the training events' codes (the encoder gives vocabularies and counts)."""

    @abstractmethod
    def _score_encoded(self, codes: np.ndarray) -> np.ndarray:
        """One anomaly score per event, higher = more anomalous."""

    @abstractmethod
    def _explain_encoded(self, codes: np.ndarray) -> np.ndarray:
        """n x pairs compatibility terms, lower = the pair fits less well."""

    @abstractmethod
    def _own_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """The detector's own arrays (names unique across the model) and JSON metadata."""

    @abstractmethod
    def _set_own_state(self, arrays: dict[str, np.ndarray], meta: dict, encoder: EventEncoder) -> None:
        """Restore `_own_state`; raise ModelFileError on anything unexpected."""

    # --- model file ----------------------------------------------------------------------
    def _get_state(self):
        self._check_fitted("encoder_")
        arrays, meta = self.encoder_.get_state()
        own_arrays, own_meta = self._own_state()
        return {**arrays, **own_arrays, "pair_center": self.pair_center_}, {"encoder": meta, "detector": own_meta}

    def _set_state(self, arrays, meta):
        if not isinstance(meta.get("encoder"), dict) or not isinstance(meta.get("detector"), dict):
            raise ModelFileError("model state: the event encoder or detector state is missing")
        encoder = EventEncoder.from_state(arrays, meta["encoder"], self.min_count, self.allow_missing)
        m = len(encoder.columns_)
        expect_arrays(arrays, {"pair_center": (m * (m - 1) // 2,)})
        self._set_own_state(arrays, meta["detector"], encoder)
        self.pair_center_ = arrays["pair_center"]
        self.encoder_ = encoder


def type_pairs(m: int) -> list[tuple[int, int]]:
    """Every pair (i, j), i < j, of m entity types, in a fixed order."""
    return list(combinations(range(m), 2))
