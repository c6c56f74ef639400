"""What every event detector shares: reading events, the vocabularies saved with the model, and
the explanation that names each event's least compatible pair of entities.

A subclass learns from and scores the n x m code matrix (`_fit_codes`, `_score_codes`) and gives
one compatibility term per pair of entity types (`_pair_terms`, n x pairs, lower = less
compatible), which the explanation compares with its training average; its own arrays go through `_codes_state` / `_set_codes_state`.
"""

from __future__ import annotations

from abc import abstractmethod
from itertools import combinations

import numpy as np
import pandas as pd

from normalcy.core.detector import Detector, expect_arrays
from normalcy.core.errors import ModelFileError
from normalcy.events.data import EventEncoder, read_events


class EventDetector(Detector):
    columns: list[str] | None = None
    min_count: int = 0
    allow_missing: bool = False

    # --- public contract ---------------------------------------------------------------
    def fit(self, X, y=None) -> "EventDetector":
        return self.fit_frame(*read_events(X))

    def fit_frame(self, frame: pd.DataFrame, name: str = "data") -> "EventDetector":
        """`fit` on a frame already read; `name` (e.g. its file) is what errors name."""
        columns = [self.columns] if isinstance(self.columns, str) else self.columns
        encoder = EventEncoder(columns, self.min_count, self.allow_missing).fit(frame, name)
        codes = encoder.transform(frame, name)
        self._fit_codes(codes, encoder)
        # Pair types differ in their typical term (an unrelated pair of types sits well below a
        # tied one), so the explanation compares each term with its type's training average.
        self.pair_center_ = self._pair_terms(codes).mean(axis=0)
        self.encoder_ = encoder
        return self

    def score(self, X) -> np.ndarray:
        return self.score_frame(*read_events(X))

    def explain(self, X) -> pd.DataFrame:
        """Per event, the pair of entities that fits least well together: columns type_a,
        entity_a, type_b, entity_b and pair_term, the pair's compatibility term minus that pair
        of types' average over the training events (lower = less compatible than usual); the
        event's least compatible pair is the one with the lowest."""
        return self.explain_frame(*read_events(X))

    def score_frame(self, frame: pd.DataFrame, name: str = "data") -> np.ndarray:
        """`score` of a frame already read; `name` (e.g. its file) is what errors name."""
        self._check_fitted("encoder_")
        return self._score_codes(self.encoder_.transform(frame, name))

    def explain_frame(self, frame: pd.DataFrame, name: str = "data") -> pd.DataFrame:
        """`explain` of a frame already read; `name` (e.g. its file) is what errors name."""
        self._check_fitted("encoder_")
        terms = self._pair_terms(self.encoder_.transform(frame, name)) - self.pair_center_
        entities = self.encoder_.entities(frame, name)
        worst = np.argmin(terms, axis=1)
        pairs = np.array(self.pairs_)[worst]
        rows = np.arange(len(frame))
        columns = np.array(self.encoder_.columns_, dtype=object)
        return pd.DataFrame({
            "type_a": columns[pairs[:, 0]], "entity_a": entities[rows, pairs[:, 0]],
            "type_b": columns[pairs[:, 1]], "entity_b": entities[rows, pairs[:, 1]],
            "pair_term": terms[rows, worst],
        })

    @property
    def columns_(self) -> list[str]:
        """The entity columns the detector was fitted on."""
        self._check_fitted("encoder_")
        return list(self.encoder_.columns_)

    @property
    def pairs_(self) -> list[tuple[int, int]]:
        """Column index pairs (i < j), in the order of `_pair_terms`' columns."""
        return type_pairs(len(self.columns_))

    # --- hooks (abstract, so that only concrete detectors can be named in a model file) ------
    @abstractmethod
    def _fit_codes(self, codes: np.ndarray, encoder: EventEncoder) -> None:
        """Learn from the training events' codes (the encoder gives vocabularies and counts)."""

    @abstractmethod
    def _score_codes(self, codes: np.ndarray) -> np.ndarray:
        """One anomaly score per event, higher = more anomalous."""

    @abstractmethod
    def _pair_terms(self, codes: np.ndarray) -> np.ndarray:
        """n x pairs compatibility terms, lower = the pair fits less well."""

    @abstractmethod
    def _codes_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """The detector's own arrays (names unique across the model) and JSON metadata."""

    @abstractmethod
    def _set_codes_state(self, arrays: dict[str, np.ndarray], meta: dict, encoder: EventEncoder) -> None:
        """Restore `_codes_state`; raise ModelFileError on anything unexpected."""

    # --- model file ----------------------------------------------------------------------
    def _get_state(self):
        self._check_fitted("encoder_")
        arrays, meta = self.encoder_.get_state()
        own_arrays, own_meta = self._codes_state()
        return {**arrays, **own_arrays, "pair_center": self.pair_center_}, {"encoder": meta, "detector": own_meta}

    def _set_state(self, arrays, meta):
        if not isinstance(meta.get("encoder"), dict) or not isinstance(meta.get("detector"), dict):
            raise ModelFileError("model state: the event encoder or detector state is missing")
        encoder = EventEncoder.from_state(arrays, meta["encoder"], self.min_count, self.allow_missing)
        m = len(encoder.columns_)
        expect_arrays(arrays, {"pair_center": (m * (m - 1) // 2,)})
        self._set_codes_state(arrays, meta["detector"], encoder)
        self.pair_center_ = arrays["pair_center"]
        self.encoder_ = encoder


def type_pairs(m: int) -> list[tuple[int, int]]:
    """Every pair (i, j), i < j, of m entity types, in a fixed order."""
    return list(combinations(range(m), 2))
