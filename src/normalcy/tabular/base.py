"""What every table detector shares: reading and encoding the table, saving the encoder with
the model, and per-column attributions.

A subclass learns from and scores the encoded n x d matrix (`_fit_matrix`, `_score_matrix`),
and where it can (`explains = True`), says how much each column added to a row's score
(`_explain_matrix`, rows x columns).
Its own arrays go through `_matrix_state` / `_set_matrix_state`; the encoder's are added here.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
import pandas as pd

from normalcy.core.detector import Detector
from normalcy.core.errors import DataError
from normalcy.tabular.data import TableEncoder, read_table


class TabularDetector(Detector):
    # Whether `_explain_matrix` gives per-column attributions.
    explains: bool = False

    # --- public contract ---------------------------------------------------------------
    def fit(self, X, y=None) -> "TabularDetector":
        frame, name = read_table(X)
        encoder = TableEncoder().fit(frame, name)
        self._fit_matrix(encoder.transform(frame, name))
        self.encoder_ = encoder
        return self

    def score(self, X) -> np.ndarray:
        return self._score_matrix(self._encode(X))

    def explain(self, X) -> pd.DataFrame:
        """How much each input column adds to each row's score: a rows x columns frame, larger
        = more to blame. Not every detector can say; see `explains`."""
        if not self.explains:
            raise DataError(f"{type(self).__name__} gives no per-column attributions; use ECOD, COPOD, "
                            "HBOS, PCA reconstruction, kNN or an Ensemble with one of them")
        return pd.DataFrame(self._explain_matrix(self._encode(X)), columns=self.encoder_.columns_)

    @property
    def columns(self) -> list[str]:
        """The input columns the detector was fitted on."""
        self._check_fitted("encoder_")
        return list(self.encoder_.columns_)

    # --- matrix API: for features that are already numbers (e.g. text embeddings) -------------
    def fit_matrix(self, Z: np.ndarray) -> "TabularDetector":
        """Learn from a numeric rows x features matrix as it is, with no table encoder."""
        self._fit_matrix(np.asarray(Z, dtype=np.float64))
        return self

    def score_matrix(self, Z: np.ndarray) -> np.ndarray:
        """One score per row of a matrix laid out as the one given to `fit_matrix`."""
        return self._score_matrix(np.asarray(Z, dtype=np.float64))

    def matrix_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """The learned arrays and metadata of a `fit_matrix` fit, for a caller's model file."""
        return self._matrix_state()

    def set_matrix_state(self, arrays: dict[str, np.ndarray], meta: dict, n_features: int) -> "TabularDetector":
        """Restore what `matrix_state` returned; ModelFileError on anything unexpected."""
        self._set_matrix_state(arrays, meta, n_features)
        return self

    # --- hooks (abstract, so that only concrete detectors can be named in a model file) ------
    @abstractmethod
    def _fit_matrix(self, Z: np.ndarray) -> None:
        """Learn from the encoded training rows."""

    @abstractmethod
    def _score_matrix(self, Z: np.ndarray) -> np.ndarray:
        """One score per encoded row."""

    @abstractmethod
    def _matrix_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """The detector's own arrays (names unique across the model) and JSON metadata."""

    @abstractmethod
    def _set_matrix_state(self, arrays: dict[str, np.ndarray], meta: dict, n_features: int) -> None:
        """Restore `_matrix_state`; raise ModelFileError on anything unexpected."""

    # --- model file ----------------------------------------------------------------------
    def _get_state(self):
        self._check_fitted("encoder_")
        arrays, meta = self.encoder_.get_state()
        own_arrays, own_meta = self._matrix_state()
        return {**arrays, **own_arrays}, {"encoder": meta, "detector": own_meta}

    def _set_state(self, arrays, meta):
        encoder = TableEncoder.from_state(arrays, meta.get("encoder", {}))
        self._set_matrix_state(arrays, meta.get("detector", {}), len(encoder.columns_))
        self.encoder_ = encoder

    def _encode(self, X) -> np.ndarray:
        self._check_fitted("encoder_")
        frame, name = read_table(X)
        return self.encoder_.transform(frame, name)
