"""What every table detector shares: reading and encoding the table, checking the training
rows, saving the encoder with the model, and per-column explanations.

A subclass learns from and scores the encoded n x d matrix (`_fit_encoded`, `_score_encoded`),
and where it can (`explains = True`), says how much each column added to a row's score
(`_explain_encoded`, rows x columns). Its own arrays go through `_own_state` /
`_set_own_state`; the encoder's are added here. `_min_rows` says how many training rows it
needs, `_check_params` which parameter values it can work with.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod

import numpy as np

from normalcy.core.detector import Detector
from normalcy.core.errors import DataError
from normalcy.core.results import Explanation
from normalcy.tabular.data import TableEncoder, read_table

MIN_ROWS = 2  # one row says nothing about how rows vary


class ConstantDataWarning(UserWarning):
    """Every training item is the same: the model can only tell copies from the rest."""


class TabularDetector(Detector):
    modality = "tabular"

    # --- public contract ---------------------------------------------------------------
    def fit(self, X, y=None) -> "TabularDetector":
        self._check_params()
        frame, name = read_table(X)
        encoder = TableEncoder().fit(frame, name)
        Z = encoder.transform(frame, name)
        self._check_training(Z, "rows", f"{name}: ")
        self._fit_encoded(Z)
        self.encoder_ = encoder
        return self

    def decision_function(self, X) -> np.ndarray:
        return self._score_encoded(self._encode(X))

    def explain(self, X) -> Explanation:
        """Scores, and how much each input column added to each row's score (`contributions`,
        rows x columns, larger = more to blame; `parts` are the column names). Not every
        detector can say; see `explains`."""
        if not self.explains:
            from normalcy.core.registry import detectors

            able = [name for name, cls in detectors(self.modality).items() if cls.explains]
            raise DataError(f"{type(self).__name__} gives no per-column attributions; use one of {', '.join(able)}")
        Z = self._encode(X)
        return Explanation(self._score_encoded(Z), tuple(self.encoder_.columns_),
                           np.asarray(self._explain_encoded(Z), dtype=np.float64))

    @property
    def columns(self) -> list[str]:
        """The input columns the detector was fitted on."""
        self._check_fitted("encoder_")
        return list(self.encoder_.columns_)

    # --- matrix API: for features that are already numbers (e.g. text embeddings) -------------
    def fit_matrix(self, Z: np.ndarray, unit: str = "rows") -> "TabularDetector":
        """Learn from a numeric rows x features matrix as it is, with no table encoder; `unit`
        names the rows in messages (e.g. "texts")."""
        self._check_params()
        Z = _matrix(Z)
        self._check_training(Z, unit)
        self._fit_encoded(Z)
        return self

    def score_matrix(self, Z: np.ndarray) -> np.ndarray:
        """One score per row of a matrix laid out as the one given to `fit_matrix`."""
        return self._score_encoded(_matrix(Z))

    def matrix_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """The learned arrays and metadata of a `fit_matrix` fit, for a caller's model file."""
        return self._own_state()

    def set_matrix_state(self, arrays: dict[str, np.ndarray], meta: dict, n_features: int) -> "TabularDetector":
        """Restore what `matrix_state` returned; ModelFileError on anything unexpected."""
        self._set_own_state(arrays, meta, n_features)
        return self

    # --- hooks (abstract, so that only concrete detectors can be named in a model file) ------
    @abstractmethod
    def _fit_encoded(self, Z: np.ndarray) -> None:
        """Learn from the encoded training rows (finite, C-ordered float64)."""

    @abstractmethod
    def _score_encoded(self, Z: np.ndarray) -> np.ndarray:
        """One score per encoded row."""

    def _explain_encoded(self, Z: np.ndarray) -> np.ndarray:
        """Rows x columns: what each column added to each row's score (where `explains`)."""
        raise DataError(f"{type(self).__name__} gives no per-column attributions")

    @abstractmethod
    def _own_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """The detector's own arrays (names unique across the model) and JSON metadata."""

    @abstractmethod
    def _set_own_state(self, arrays: dict[str, np.ndarray], meta: dict, n_features: int) -> None:
        """Restore `_own_state`; raise ModelFileError on anything unexpected."""

    def _min_rows(self) -> int:
        """The fewest training rows this detector, with its parameters, can learn from."""
        return MIN_ROWS

    # --- model file ----------------------------------------------------------------------
    def _get_state(self):
        self._check_fitted("encoder_")
        arrays, meta = self.encoder_.get_state()
        own_arrays, own_meta = self._own_state()
        return {**arrays, **own_arrays}, {"encoder": meta, "detector": own_meta}

    def _set_state(self, arrays, meta):
        encoder = TableEncoder.from_state(arrays, meta.get("encoder", {}))
        self._set_own_state(arrays, meta.get("detector", {}), len(encoder.columns_))
        self.encoder_ = encoder

    def _encode(self, X) -> np.ndarray:
        self._check_fitted("encoder_")
        frame, name = read_table(X)
        return self.encoder_.transform(frame, name)

    def _check_training(self, Z: np.ndarray, unit: str, where: str = "") -> None:
        minimum = self._min_rows()
        if len(Z) < minimum:
            raise DataError(f"{where}{getattr(self, 'name', type(self).__name__)} needs at least {minimum} "
                            f"training {unit}, got {len(Z)}")
        if (Z == Z[0]).all():
            warnings.warn(f"{where}all {len(Z)} training {unit} are the same, so the model can only tell an exact "
                          f"copy of them from anything else, and scores every copy alike; fit on varied normal "
                          f"{unit}", ConstantDataWarning, stacklevel=3)


def _matrix(Z) -> np.ndarray:
    """A finite 2-D float64 matrix in C order (the order a reloaded model's arrays have)."""
    try:
        Z = np.ascontiguousarray(Z, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"expected a numeric rows x features matrix, got {type(Z).__name__}") from None
    if Z.ndim != 2 or Z.shape[0] == 0 or Z.shape[1] == 0:
        raise DataError(f"expected a non-empty rows x features matrix, got shape {Z.shape}")
    if not np.isfinite(Z).all():
        raise DataError("the matrix holds NaN or infinity")
    return Z
